"""Counterfactual images for the shortcut test: paste an artifact onto an image that has none,
or remove it from an image that has one. Pixels in, pixels out (uint8 RGB, same size); the
regions are boolean masks at the image's size (a generator mask or the detected dark field)."""

from __future__ import annotations

import cv2
import numpy as np

FEATHER = 0.02  # of the image side: the blur that softens a pasted or filled region's edge


def _feathered(mask: np.ndarray) -> np.ndarray:
    side = mask.shape[0]
    k = max(3, int(side * FEATHER) * 2 + 1)
    return cv2.GaussianBlur(mask.astype(np.float32), (k, k), 0)[..., None]


def paste(target: np.ndarray, donor: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The donor's pixels inside `region` (its artifact) over the target, edges feathered: a
    ring's dark field, a ruler, a colour patch moved onto another photo."""
    alpha = _feathered(region)
    return np.clip(donor * alpha + target * (1 - alpha), 0, 255).astype(np.uint8)


def remove(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The artifact replaced by the photo's own skin: the region is filled with the median colour
    of a band of pixels just outside it (the skin next to a ring's field edge, around a patch),
    the edge feathered. Deliberately plain: it removes the artifact without inventing texture."""
    if not region.any():
        return image.copy()
    side = image.shape[0]
    k = max(3, int(side * 0.06) | 1)
    grown = cv2.dilate(region.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    band = grown & ~region
    source = image[band] if band.any() else image[~region]
    if len(source) == 0:
        return image.copy()
    fill = np.broadcast_to(np.median(source, axis=0), image.shape)
    alpha = _feathered(cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool))
    return np.clip(fill * alpha + image * (1 - alpha), 0, 255).astype(np.uint8)
