"""Image files in, RGB uint8 arrays out.

One decoder for the whole package (training, export validation, runtime, sidecar), so that an
image means the same pixels everywhere. Pillow does the decoding because it reports truncated
files as errors (OpenCV silently returns a partial image) and knows EXIF orientation, CMYK,
palettes and 16-bit modes. No torch here: the runtime imports this module.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# ~ 16k x 16k pixels. Whole-slide scans are larger, but no dermoscopy photo is; anything past
# this is far more likely a decompression bomb than a lesion.
DEFAULT_MAX_PIXELS = 16384 * 16384
MIN_SIDE = 8  # smaller images carry no lesion information (a 1x1 "image" is a broken export)

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview]


class ImageDecodeError(ValueError):
    """An image could not be turned into pixels. `source` names the file, `reason` says why."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


def _describe(source: ImageSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return str(source)


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) grayscale: scale the full range down to 8 bits instead of
        # letting Pillow clip everything above 255 to white.
        arr = np.asarray(img, dtype=np.uint32 if mode == "I" else np.uint16)
        if mode == "I":
            arr = np.clip(arr, 0, 65535).astype(np.uint16)
        gray = (arr >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        gray = np.nan_to_num((arr - lo) * scale).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Composite transparent pixels on white: a transparent background is "no skin", and
        # black would look like the dark dermatoscope ring the audit looks for.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def decode_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a file path or encoded bytes into an RGB uint8 array of shape (H, W, 3).

    EXIF orientation is applied, so the array is upright as a viewer shows it. Grayscale,
    palette, RGBA (composited on white), CMYK and 16-bit images all come back as RGB uint8.
    Raises ImageDecodeError naming the source and the reason for anything unreadable: missing,
    zero bytes, not an image, truncated, too small, or larger than `max_pixels` (checked from
    the header before any pixel is decoded).
    """
    name = _describe(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageDecodeError(name, "empty input (zero bytes)")
        fp = io.BytesIO(data)
    else:
        path = Path(source)
        if not path.exists():
            raise ImageDecodeError(name, "file not found")
        if path.is_dir():
            raise ImageDecodeError(name, "is a directory, not an image file")
        if path.stat().st_size == 0:
            raise ImageDecodeError(name, "empty file (zero bytes)")
        fp = path
    try:
        with warnings.catch_warnings():
            # Pillow warns before its own bomb limit; we enforce ours explicitly below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageDecodeError(
                        name,
                        f"image is {width}x{height} = {width * height} pixels, over the limit of "
                        f"{max_pixels} (possible decompression bomb)",
                    )
                if min(width, height) < MIN_SIDE:
                    raise ImageDecodeError(
                        name, f"image is only {width}x{height} pixels (minimum side {MIN_SIDE})"
                    )
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(name, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(name, f"decompression bomb refused: {exc}") from None
    except OSError as exc:
        # Pillow reports truncated and corrupt data as OSError ("image file is truncated").
        raise ImageDecodeError(name, f"corrupt or truncated image data ({exc})") from None
    except (ValueError, SyntaxError, MemoryError) as exc:
        raise ImageDecodeError(name, f"could not decode image ({exc})") from None
    return np.ascontiguousarray(rgb, dtype=np.uint8)
