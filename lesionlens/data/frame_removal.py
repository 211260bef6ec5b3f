"""Frame removal: a dermatoscope frame the dark-field detector finds is filled with the photo's
own skin before the photo is resized for the model (PreprocessSpec.unframe, `lesionlens revise
--method unframe`). A frame then looks the same in every photo, whatever its style (a black
circle, dark corners, side bands, a grey or soft surround): not there. Unlike frame normalisation
(PreprocessSpec.frame), a photo without a frame is left as it is, so no lesion loses its border.

The fill is deliberately plain (the median colour of the skin just inside the field, edges
feathered): it removes the frame without inventing texture. A model must still be fine-tuned
with fills on photos of every class (revise does), or the fill itself marks the framed ones.
Torch-free: the runtime applies it before the ONNX model, as training did."""

from __future__ import annotations

import cv2
import numpy as np

from .dark_field import detect_dark_field

FEATHER = 0.02  # of the image side: the blur that softens a pasted or filled region's edge
# of the shorter side: how far inside a frame's dark surround its blurred edge and bright rim
# reach (lens blur; light scattered off the contact plate)
FRAME_EDGE = 0.08


def feathered(mask: np.ndarray) -> np.ndarray:
    """(H, W, 1) float32 alpha: the mask with its edge blurred by FEATHER of the image side."""
    side = mask.shape[0]
    k = max(3, int(side * FEATHER) * 2 + 1)
    return cv2.GaussianBlur(mask.astype(np.float32), (k, k), 0)[..., None]


def fill_with_skin(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """`region` (bool, the image's size) replaced by the photo's own skin: the median colour of a
    band of pixels just outside it (the skin next to a ring's field edge, around a patch), the
    edge feathered. uint8 RGB in, uint8 RGB out (a new array)."""
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
    alpha = feathered(cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool))
    return np.clip(fill * alpha + image * (1 - alpha), 0, 255).astype(np.uint8)


def with_frame_edge(region: np.ndarray) -> np.ndarray:
    """A frame's dark region grown into the field by FRAME_EDGE of the shorter side. A mask (or
    the detector's circle) marks where the surround is dark; a real frame also darkens the
    field's edge and may brighten a rim just inside it. Moving only the dark part left the rim
    on the photo: the main job's ResNet50, fine-tuned so, still flagged 39% of benign held-out
    photos newly with a soft, rimmed frame painted on, and 12% with a circle or grey one (with
    the edge: 20%, 6% and 9%)."""
    k = 2 * max(1, int(round(FRAME_EDGE * min(region.shape[:2])))) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    return cv2.dilate(region.astype(np.uint8), kernel).astype(bool)


def frame_region(rgb: np.ndarray) -> np.ndarray | None:
    """The detected frame with its edge (bool, the photo's size), or None when there is none."""
    found = detect_dark_field(rgb)
    if not found.is_ring:
        return None
    # the circle drawn FRAME_EDGE further in: what with_frame_edge's dilation gives for a circle's
    # outside, without a kernel of 8% of the side (4.8 s on a 2000x1500 photo, against 0.1 s)
    h, w = rgb.shape[:2]
    return found.region(h, w, inset=max(1, int(round(FRAME_EDGE * min(h, w)))))


def remove_frame(rgb: np.ndarray) -> np.ndarray:
    """The photo with a detected frame filled with its skin; the photo itself when none is found."""
    region = frame_region(rgb)
    return rgb if region is None else fill_with_skin(rgb, region)
