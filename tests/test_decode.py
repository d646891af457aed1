"""Decoding: every input form, every conversion, every way a file can be bad."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceverify.decode import iter_image_paths, load_image
from faceverify.errors import ImageError


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def rgb() -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))


def test_path_bytes_pil_and_array_decode_to_the_same_pixels(tmp_path: Path, rgb: Image.Image) -> None:
    path = tmp_path / "x.png"
    rgb.save(path)
    forms = [path, str(path), path.read_bytes(), bytearray(path.read_bytes()), rgb, np.asarray(rgb)]
    decoded = [np.asarray(load_image(form)) for form in forms]
    for pixels in decoded:
        assert pixels.shape == (40, 30, 3)
        assert np.array_equal(pixels, decoded[0])


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "LA", "RGBA", "I", "F"])
def test_other_modes_are_converted_to_rgb(rgb: Image.Image, mode: str) -> None:
    image = load_image(rgb.convert(mode))
    assert image.mode == "RGB"
    assert image.size == (30, 40)


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    # PIL's own convert() clips 16-bit values to 255; half of full scale must stay mid-grey.
    array = np.full((20, 20), 32768, dtype=np.uint16)
    image = Image.fromarray(array)
    assert image.mode.startswith("I;16")
    pixels = np.asarray(load_image(_reopen(image)))
    assert pixels.shape == (20, 20, 3)
    assert abs(int(pixels[0, 0, 0]) - 128) <= 1


def _reopen(image: Image.Image) -> Image.Image:
    return Image.open(io.BytesIO(_png_bytes(image)))


def test_transparent_pixels_become_white_and_opaque_ones_keep_colour() -> None:
    array = np.zeros((20, 20, 4), dtype=np.uint8)
    array[:10] = (200, 10, 10, 255)  # opaque red top half, transparent black bottom half
    pixels = np.asarray(load_image(array))
    assert tuple(pixels[0, 0]) == (200, 10, 10)
    assert tuple(pixels[-1, -1]) == (255, 255, 255)


def test_palette_image_with_transparency_is_composited() -> None:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 0
    assert tuple(np.asarray(load_image(image))[0, 0]) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).size == (20, 40)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 20, 20), dtype=np.uint8), "expected H×W"),
        (np.zeros((20, 20, 3), dtype=bool), "dtype bool"),
        (np.zeros((20, 20, 3), dtype=np.int64), "dtype int64"),
        (np.full((20, 20, 3), 2.0, dtype=np.float32), "must be in [0, 1]"),
        (np.full((20, 20, 3), np.nan, dtype=np.float32), "NaN"),
    ],
)
def test_bad_arrays_are_rejected_with_the_reason(array: np.ndarray, message: str) -> None:
    with pytest.raises(ImageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_image(array)


def test_float_uint16_and_single_channel_arrays_are_accepted() -> None:
    assert load_image(np.full((20, 20, 3), 0.5, dtype=np.float32)).getpixel((0, 0)) == (128, 128, 128)
    assert load_image(np.full((20, 20), 65535, dtype=np.uint16)).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(np.zeros((20, 20, 1), dtype=np.uint8)).mode == "RGB"


def test_missing_empty_folder_and_non_image_files(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not a picture")
    cases = {
        tmp_path / "missing.jpg": "file not found",
        tmp_path / "empty.jpg": "file is empty",
        tmp_path: "is a folder",
        tmp_path / "notes.jpg": "not an image file",
    }
    for path, reason in cases.items():
        with pytest.raises(ImageError, match=reason) as info:
            load_image(path)
        assert info.value.source == str(path)
    with pytest.raises(ImageError, match="empty input"):
        load_image(b"")
    with pytest.raises(ImageError, match="unsupported input type"):
        load_image(42)  # type: ignore[arg-type]


def test_truncated_jpeg_is_reported_as_truncated(tmp_path: Path, rgb: Image.Image) -> None:
    path = tmp_path / "cut.jpg"
    rgb.resize((300, 300)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(path)


def test_too_small_images_are_rejected() -> None:
    with pytest.raises(ImageError, match="smaller than the minimum side of 16"):
        load_image(np.zeros((8, 64, 3), dtype=np.uint8))
    assert load_image(np.zeros((8, 8, 3), dtype=np.uint8), min_side=4).size == (8, 8)


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image (the pixels are never there)."""
    data = bytearray(_png_bytes(Image.new("L", (1, 1))))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(ImageError, match="decompression"):
        load_image(_bomb_png(30_000, 30_000))  # beyond Pillow's own hard limit
    with pytest.raises(ImageError, match="8000x8000 = 64,000,000 pixels, above the limit"):
        load_image(_bomb_png(8_000, 8_000))  # below Pillow's, above faceverify's
    with pytest.raises(ImageError, match="above the limit of 100"):
        load_image(np.zeros((20, 20, 3), dtype=np.uint8), max_pixels=100)


def test_folders_expand_recursively_and_named_files_are_kept(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/2.jpg", "a/b/1.PNG", "a/readme.txt", "z.webp"]:
        (tmp_path / name).write_bytes(b"x")
    found = list(iter_image_paths([tmp_path / "a", tmp_path / "missing.jpg", tmp_path / "a" / "readme.txt"]))
    assert found == [
        tmp_path / "a" / "2.jpg",
        tmp_path / "a" / "b" / "1.PNG",
        tmp_path / "missing.jpg",
        tmp_path / "a" / "readme.txt",
    ]
