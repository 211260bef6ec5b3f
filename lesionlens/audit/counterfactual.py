"""Counterfactual images for the shortcut test: paste an artifact onto an image that has none,
or remove it from an image that has one. Pixels in, pixels out (uint8 RGB, same size); the
regions are boolean masks at the image's size (a generator mask or the detected dark field)."""

from __future__ import annotations

import numpy as np

from ..data.frame_removal import feathered, fill_with_skin


def paste(target: np.ndarray, donor: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The donor's pixels inside `region` (its artifact) over the target, edges feathered: a
    ring's dark field, a ruler, a colour patch moved onto another photo."""
    alpha = feathered(region)
    return np.clip(donor * alpha + target * (1 - alpha), 0, 255).astype(np.uint8)


def remove(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The artifact replaced by the photo's own skin (data.frame_removal.fill_with_skin: the
    median colour just outside the region, edge feathered). Deliberately plain: it removes the
    artifact without inventing texture; frame removal at preprocessing fills the same way."""
    return fill_with_skin(image, region)
