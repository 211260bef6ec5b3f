import io

import numpy as np
import pytest
from PIL import Image

from conftest import random_rgb, write_png
from lesionlens.data import ImageDecodeError, decode_image


def test_rgb_png_round_trip(tmp_path):
    rgb = random_rgb(0)
    assert np.array_equal(decode_image(write_png(tmp_path / "a.png", rgb)), rgb)


def test_bytes_input_matches_file(tmp_path):
    path = write_png(tmp_path / "a.png", random_rgb(1))
    assert np.array_equal(decode_image(path.read_bytes()), decode_image(path))


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((20, 60, 3), np.uint8)
    rgb[:, :10] = 255  # white band on the left
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=95)
    out = decode_image(path)
    assert out.shape == (60, 20, 3)
    assert out[:10].mean() > 200 and out[-10:].mean() < 50  # left band is now on top


def test_grayscale_palette_and_cmyk_become_rgb(tmp_path):
    gray = Image.fromarray(np.full((16, 16), 77, np.uint8), "L")
    gray.save(tmp_path / "g.png")
    assert np.array_equal(decode_image(tmp_path / "g.png"), np.full((16, 16, 3), 77, np.uint8))
    Image.fromarray(random_rgb(2, 16, 16)).convert("P").save(tmp_path / "p.png")
    assert decode_image(tmp_path / "p.png").shape == (16, 16, 3)
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # pure red in CMYK
    red = decode_image(tmp_path / "c.jpg").reshape(-1, 3).mean(0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_rgba_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:8, :, :] = (200, 10, 10, 255)  # opaque red top half, transparent bottom half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    out = decode_image(tmp_path / "t.png")
    assert tuple(out[0, 0]) == (200, 10, 10)
    assert tuple(out[-1, -1]) == (255, 255, 255)


def test_16_bit_grayscale_scales_full_range(tmp_path):
    arr = np.zeros((16, 16), np.uint16)
    arr[:, :8] = 65535
    arr[:, 8:] = 32768
    Image.fromarray(arr).save(tmp_path / "deep.png")
    out = decode_image(tmp_path / "deep.png")
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, -1].tolist() == [128, 128, 128]


@pytest.mark.parametrize("kind", ["zero", "truncated", "text", "tiny", "missing", "directory"])
def test_bad_files_raise_one_clear_error(tmp_path, kind):
    path = tmp_path / "bad.jpg"
    if kind == "zero":
        path.write_bytes(b"")
    elif kind == "truncated":
        buf = io.BytesIO()
        Image.fromarray(random_rgb(3, 64, 64)).save(buf, "JPEG")
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "tiny":
        Image.new("RGB", (1, 1)).save(path)
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(ImageDecodeError) as info:
        decode_image(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value) and info.value.reason


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    path = write_png(tmp_path / "big.png", random_rgb(4, 64, 64))
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode_image(path, max_pixels=1000)
    # A real bomb: 20000 x 20000 one-bit PNG compresses to a few KB.
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 200_000
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(tmp_path / "bomb.png")
