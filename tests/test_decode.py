"""Decoding: every input form, every conversion, every way a file can be bad."""

from __future__ import annotations

import io
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, TgaImagePlugin, features

from faceverify.decode import (
    ALLOWED_FORMATS,
    ALLOWED_NAMES,
    BYTES_PER_PIXEL,
    IMAGE_SUFFIXES,
    decoding_bytes,
    iter_image_paths,
    load_image,
    open_image,
)
from faceverify.errors import ImageError, UnsupportedFormatError

#: A real Encapsulated PostScript file: Pillow reads its header, Ghostscript would draw it.
EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 20 20\n"
    b"newpath 0 0 moveto 20 20 lineto stroke showpage\n%%EOF\n"
)


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


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _functions_run(module: ModuleType, action: Callable[[], object]) -> set[str]:
    """The functions of ``module`` that ran during ``action``, traced by the interpreter."""
    ran: set[str] = set()

    def profile(frame: object, event: str, arg: object) -> None:
        code = frame.f_code  # type: ignore[attr-defined]
        if event == "call" and code.co_filename == module.__file__:
            ran.add(code.co_name)

    sys.setprofile(profile)
    try:
        action()
    except ImageError:
        pass
    finally:
        sys.setprofile(None)
    return ran


ALLOWED_CASES = [
    ("JPEG", "RGB", {}),
    ("JPEG", "L", {}),
    ("PNG", "RGB", {}),
    ("PNG", "L", {}),
    ("PNG", "I;16", {}),
    ("PNG", "P", {}),
    ("PNG", "RGBA", {}),
    ("WEBP", "RGB", {}),
    ("BMP", "RGB", {}),
    ("TIFF", "RGB", {"compression": "tiff_lzw"}),
    ("TIFF", "I;16", {}),
    ("GIF", "P", {}),
    ("PPM", "RGB", {}),
    ("PPM", "L", {}),
    ("MPO", "RGB", {"save_all": True}),  # a camera's multi-picture JPEG (two frames below)
]


@pytest.mark.parametrize(
    ("fmt", "mode", "options"), ALLOWED_CASES, ids=[f"{c[0]}-{c[1]}" for c in ALLOWED_CASES]
)
def test_every_allowed_format_decodes(rgb: Image.Image, fmt: str, mode: str, options: dict) -> None:
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow was built without WebP")
    source = rgb.convert("L").convert(mode) if mode == "I;16" else rgb.convert(mode)
    data = _encoded(source, fmt, **options, **({"append_images": [source]} if fmt == "MPO" else {}))
    assert Image.open(io.BytesIO(data)).format == fmt
    image = load_image(data)
    assert (image.mode, image.size) == ("RGB", (30, 40))


def test_16_bit_png_keeps_its_scale() -> None:
    data = _encoded(Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16)), "PNG")
    assert load_image(data).getpixel((0, 0)) == (255, 255, 255)


def test_eps_is_refused_without_running_its_parser() -> None:
    # Pillow left to itself recognises the file and runs the EPS parser (and Ghostscript on load)
    assert Image.open(io.BytesIO(EPS)).format == "EPS"
    assert "_open" in _functions_run(EpsImagePlugin, lambda: Image.open(io.BytesIO(EPS)))
    with pytest.raises(UnsupportedFormatError) as info:
        load_image(EPS)
    assert "looks like EPS" in info.value.reason and ALLOWED_NAMES in info.value.reason
    # only the signature check ran: a comparison of the first bytes that names the format
    assert _functions_run(EpsImagePlugin, lambda: load_image(EPS)) <= {"_accept"}


def test_tga_without_a_signature_is_refused_without_running_its_parser() -> None:
    data = _encoded(Image.new("RGB", (20, 20), (1, 2, 3)), "TGA")
    assert Image.open(io.BytesIO(data)).format == "TGA"  # Pillow tries TGA on anything unknown
    with pytest.raises(ImageError, match=ALLOWED_NAMES):
        load_image(data)
    assert _functions_run(TgaImagePlugin, lambda: load_image(data)) == set()


REFUSED = ["ICO", "PCX", "SGI", "DDS", "JPEG2000"]


@pytest.mark.parametrize("fmt", REFUSED)
def test_recognised_formats_outside_the_allow_list_are_refused_by_name(
    tmp_path: Path, rgb: Image.Image, fmt: str
) -> None:
    if fmt == "JPEG2000" and not features.check("jpg_2000"):
        pytest.skip("Pillow was built without OpenJPEG")
    data = _encoded(rgb.resize((32, 32)), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt
    path = tmp_path / "disguised.png"  # the name does not matter: the bytes do
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(UnsupportedFormatError, match=f"looks like {fmt}, a format not accepted") as info:
            load_image(source)
        assert info.value.reason.endswith(f"the allowed formats are {ALLOWED_NAMES}")


def test_a_corrupt_header_of_an_allowed_format_is_named() -> None:
    data = bytearray(_png_bytes(Image.new("L", (20, 20))))
    data[12:16] = b"XXXX"  # the IHDR chunk's name
    with pytest.raises(ImageError, match="looks like PNG but its header cannot be read") as info:
        load_image(bytes(data))
    assert not isinstance(info.value, UnsupportedFormatError)


def test_folder_scans_pick_exactly_the_allowed_formats() -> None:
    by_suffix = Image.registered_extensions()
    assert {by_suffix[suffix] for suffix in IMAGE_SUFFIXES} == set(ALLOWED_FORMATS)


def test_open_image_reads_the_header_only_and_weighs_the_decoding() -> None:
    bomb = open_image(_bomb_png(8_000, 8_000), max_pixels=100_000_000)  # no pixels in the file
    assert bomb.size == (8_000, 8_000)
    assert decoding_bytes(bomb) == 64_000_000 * BYTES_PER_PIXEL
    weights = {
        mode: decoding_bytes(Image.open(io.BytesIO(_png_bytes(Image.new(mode, (10, 10))))))
        for mode in ("RGB", "L", "RGBA", "I;16")
    }
    assert weights == {"RGB": 800, "L": 800, "RGBA": 2400, "I;16": 3200}
    with pytest.raises(ImageError, match="above the limit of 1,000"):
        open_image(_bomb_png(8_000, 8_000), max_pixels=1_000)
