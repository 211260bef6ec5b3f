"""Image files in, RGB uint8 arrays out.

One decoder for the whole package (training, export validation, runtime, sidecar), so that an
image means the same pixels everywhere. Pillow does the decoding because it reports truncated
files as errors (OpenCV silently returns a partial image) and knows EXIF orientation, CMYK,
palettes and 16-bit modes. No torch here: the runtime imports this module.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageDecodeError, display_path
from .memory import decode_budget
from .readers import UNSUPPORTED_IMAGE_EXTENSIONS

# Sized for dermoscopy: the largest ISIC images are ~25 MP (6000 x 4000). 36 MP leaves room for
# any camera a clinic uses; past it a file is far more likely a decompression bomb than a lesion
# (a 13000 x 13000 RGBA PNG of 657 KB would need ~4-5 GB to decode). Checked from the header.
DEFAULT_MAX_PIXELS = 36_000_000
MIN_SIDE = 8  # smaller images carry no lesion information (a 1x1 "image" is a broken export)

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

__all__ = ["DEFAULT_MAX_PIXELS", "ImageDecodeError", "decode_image", "check_readable_path"]


def _describe(source: ImageSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return display_path(source)


def check_readable_path(path: Path) -> None:
    """Raise ImageDecodeError saying exactly why `path` cannot be read: missing, a dangling or
    looping symlink, a directory, permission denied, or empty."""
    name = display_path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageDecodeError(name, "symbolic link loop") from None
        if exc.errno == errno.EACCES:
            raise ImageDecodeError(name, "permission denied") from None
        if os.path.islink(path):
            raise ImageDecodeError(name, f"dangling symbolic link (to {display_path(os.readlink(path))})") from None
        if exc.errno == errno.ENOENT:
            raise ImageDecodeError(name, "file not found") from None
        raise ImageDecodeError(name, f"cannot read file ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageDecodeError(name, "is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageDecodeError(name, "not a regular file")
    if info.st_size == 0:
        raise ImageDecodeError(name, "empty file (zero bytes)")
    if not os.access(path, os.R_OK):
        raise ImageDecodeError(name, "permission denied")


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
        if not np.isfinite(arr).all():
            raise ValueError("non-finite pixel values (NaN or infinity)")
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


# Modes Image.reduce averages correctly; the others are converted first (a palette index or a
# bit cannot be averaged), to the mode _to_rgb would have made of them anyway.
_REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F"}
_CONVERT_BEFORE_REDUCING = {"1": "L", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}


def _decode_bytes(img: Image.Image, reduce_to: Optional[int]) -> int:
    """What decoding `img` (its size after any JPEG draft) to RGB may hold at its peak: the
    decoded image (4 bytes a pixel in Pillow) and one full-size copy when it must be converted
    before shrinking (alpha is premultiplied, a palette expanded); without shrinking, the
    conversions to RGB and the array (measured: ~6x the decoded size for RGBA)."""
    decoded = img.size[0] * img.size[1] * 4
    if reduce_to and min(img.size) // reduce_to >= 2:
        return decoded * (1 if img.mode in ("RGB", "L", "CMYK", "YCbCr") else 2)
    return decoded * (2 if img.mode in ("RGB", "L") else 6)


def _reduced(img: Image.Image, reduce_to: Optional[int]) -> Image.Image:
    """`img` shrunk by the largest whole factor that keeps its shorter side >= reduce_to (box
    filter, in Pillow's C code), or `img` itself when that factor is 1."""
    factor = min(img.size) // reduce_to if reduce_to else 1
    if factor < 2:
        return img
    if img.mode not in _REDUCIBLE_MODES:
        transparent = img.mode in ("PA",) or (img.mode == "P" and "transparency" in img.info)
        img = img.convert(_CONVERT_BEFORE_REDUCING.get(img.mode, "RGBA" if transparent else "RGB"))
    reduced = img.reduce(factor)
    reduced.info = dict(img.info)  # EXIF orientation is applied after this
    return reduced


def decode_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS,
                 reduce_to: Optional[int] = None) -> np.ndarray:
    """Decode a file path or encoded bytes into an RGB uint8 array of shape (H, W, 3).

    EXIF orientation is applied, so the array is upright as a viewer shows it. Grayscale,
    palette, RGBA (composited on white), CMYK and 16-bit images all come back as RGB uint8.
    `reduce_to`: the caller needs no more than this many pixels on the shorter side, so a JPEG
    may be decoded at 1/2, 1/4 or 1/8 scale (DCT scaling in the decoder: a 24 MP photo for a
    224-px model costs a sixty-fourth of the memory and time), and any other format is shrunk
    by a whole factor right after decoding. Never below `reduce_to`. A large image first
    reserves the memory it will need from a process-wide budget (lesionlens.data.memory), so a
    burst of large uploads is decoded a few at a time, and its memory is handed back after.
    Raises ImageDecodeError naming the source and the reason for anything unreadable: missing,
    zero bytes, a symlink loop, permission denied, not an image, truncated, too small,
    non-finite pixels, or larger than `max_pixels` (checked from the header before any pixel
    is decoded).
    """
    name = _describe(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageDecodeError(name, "empty input (zero bytes)")
        fp = io.BytesIO(data)
    else:
        fp = Path(source)
        check_readable_path(fp)
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
                if reduce_to and img.format == "JPEG" and min(width, height) >= 2 * reduce_to:
                    # draft keeps each side >= the requested size; scale so the shorter one stays >= reduce_to
                    scale = min(width, height) / reduce_to
                    img.draft("RGB", (int(np.ceil(width / scale)), int(np.ceil(height / scale))))
                with decode_budget.reserve(_decode_bytes(img, reduce_to)):
                    img.load()
                    # every other format: shrink right after decoding, before the conversions
                    # below make copies of a full-size image
                    img = _reduced(img, reduce_to)
                    img = ImageOps.exif_transpose(img)
                    rgb = _to_rgb(img)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        suffix = "" if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).suffix.lower()
        if suffix in UNSUPPORTED_IMAGE_EXTENSIONS:
            raise ImageDecodeError(name, f"{suffix[1:].upper()} images cannot be decoded here (no codec); "
                                         "convert to JPEG or PNG") from None
        raise ImageDecodeError(name, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(name, f"decompression bomb refused: {exc}") from None
    except PermissionError:
        raise ImageDecodeError(name, "permission denied") from None
    except OSError as exc:
        # Pillow reports truncated and corrupt data as OSError ("image file is truncated").
        raise ImageDecodeError(name, f"corrupt or truncated image data ({exc})") from None
    except (ValueError, SyntaxError, MemoryError) as exc:
        raise ImageDecodeError(name, f"could not decode image ({exc})") from None
    return np.ascontiguousarray(rgb, dtype=np.uint8)
