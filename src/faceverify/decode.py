"""Decoding: every image input becomes an RGB ``PIL.Image`` here, and only here.

Files, bytes, PIL images and numpy arrays all pass through :func:`load_image`, which
applies the same limits (minimum side, maximum pixel count) and the same conversions
(EXIF orientation, grey/palette/alpha/16-bit to 8-bit RGB) whatever the source.

Encoded images are opened by an allow-list of formats (:data:`ALLOWED_FORMATS`): Pillow
knows some forty formats, and each parser is code an upload can reach (EPS even runs
Ghostscript). Only the parsers of the allowed formats ever see the bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceverify.errors import ImageError, UnsupportedFormatError

#: What :func:`load_image` accepts (torch tensors are turned into arrays by ``embed``).
ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, Image.Image, np.ndarray]
#: What :func:`open_image` accepts: an encoded image, by path, bytes or open binary file.
EncodedSource = Union[str, "os.PathLike[str]", bytes, bytearray, IO[bytes]]

#: Images smaller than this on either side carry too little of a face to embed.
DEFAULT_MIN_SIDE = 16
#: Decompression-bomb guard: a 50-megapixel photo is large; a face crop never is.
DEFAULT_MAX_PIXELS = 50_000_000
#: The formats decoded (Pillow's names), with the file suffixes folder scans pick up.
#: Photos come as JPEG (a camera's multi-picture JPEG, MPO, opens as JPEG too), PNG,
#: WebP, BMP or TIFF. GIF and PPM/PGM/PBM stay because well-known face sets ship in them
#: (Yale faces: GIF; AT&T/ORL: PGM; Color FERET: PPM) and their parsers are small.
_FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "BMP": (".bmp",),
    "TIFF": (".tif", ".tiff"),
    "GIF": (".gif",),
    "PPM": (".ppm", ".pgm", ".pbm"),
}
ALLOWED_FORMATS = tuple(_FORMATS)
#: The allowed formats as messages name them.
ALLOWED_NAMES = "JPEG, PNG, WebP, BMP, TIFF, GIF and PPM/PGM/PBM"
#: File suffixes picked up when a folder is given; explicitly named files are always tried.
#: Derived from the allow-list, so that a folder scan never picks up a file that the
#: decoder refuses for its format, nor skips one it would decode.
IMAGE_SUFFIXES = frozenset(suffix for suffixes in _FORMATS.values() for suffix in suffixes)
#: Peak memory :func:`load_image` needs per pixel of an 8-bit image without alpha: Pillow
#: keeps RGB in 4 bytes a pixel, and the file's pixels live while the upright copy is made.
#: Compositing alpha on white needs 3x that, 16-bit and float images (scaled in float64) 4x.
BYTES_PER_PIXEL = 8
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def describe_source(source: object) -> str:
    """A short printable name for an input, used in every error message."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.width}x{source.height}>"
    if isinstance(source, np.ndarray):
        return f"<array {source.dtype} {tuple(source.shape)}>"
    return f"<{type(source).__name__}>"


def load_image(
    source: ImageSource,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode any supported input into an 8-bit RGB image.

    Args:
        source: a file path, the bytes of an encoded image, a PIL image, or a numpy
            array in RGB channel order (H×W, H×W×1, H×W×3 or H×W×4; uint8, uint16, or
            float in [0, 1]). Arrays from OpenCV are BGR: reverse them with ``a[..., ::-1]``.
            Files and bytes must hold one of :data:`ALLOWED_FORMATS`; a PIL image is taken
            as it is (whoever opened it chose its parser).
        min_side: reject images whose width or height is below this many pixels.
        max_pixels: reject images with more pixels than this before decoding them,
            which protects against decompression bombs. Raise it for genuine huge scans.

    Returns:
        An RGB image, upright according to its EXIF orientation.

    Raises:
        UnsupportedFormatError: a file in a recognised format that is not allowed.
        ImageError: naming the source and the reason.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        image = _image_from_array(source, name)
    elif isinstance(source, Image.Image):
        image = source
    else:
        image = open_image(source, max_pixels=max_pixels)
    _check_pixels(image, name, max_pixels)
    image = _decode_pixels(image, name)
    image = _to_rgb(ImageOps.exif_transpose(image) or image)
    if min(image.size) < min_side:
        raise ImageError(
            name,
            f"image is {image.width}x{image.height} pixels, smaller than the minimum side of "
            f"{min_side}; use a larger face crop",
        )
    return image


def open_image(source: EncodedSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read only the header of an encoded image: its format and size, no pixels yet.

    The format must be one of :data:`ALLOWED_FORMATS` (no other parser runs) and the size
    within ``max_pixels``; :func:`load_image` decodes the returned image. This lets a
    caller weigh images (see :func:`decoding_bytes`) before any of them costs memory.

    Args:
        source: a file path, the bytes of an encoded image, or a binary file open for reading.
        max_pixels: as for :func:`load_image`.

    Raises:
        UnsupportedFormatError: a recognised image format that is not allowed.
        ImageError: anything else that is not a readable image of an allowed format.
    """
    name = describe_source(source)
    stream = _stream_of(source, name)
    try:
        image = Image.open(stream, formats=_allowed_formats())
    except UnidentifiedImageError:
        raise _unidentified(stream, name) from None
    except Image.DecompressionBombError as exc:
        raise ImageError(name, f"refused as a decompression bomb ({exc})") from None
    except OSError as exc:
        raise ImageError(name, f"cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # a header parser choking on a damaged file (PPM: ValueError)
        raise ImageError(name, f"header is corrupt ({type(exc).__name__}: {exc})") from None
    _check_pixels(image, name, max_pixels)
    return image


def decoding_bytes(image: Image.Image) -> int:
    """Memory :func:`load_image` needs at its peak to decode an opened image (an upper bound).

    Read from the header: width, height and mode (see :data:`BYTES_PER_PIXEL`).
    """
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        factor = 4
    elif mode in _ALPHA_MODES or "transparency" in image.info:
        factor = 3
    else:
        factor = 1
    return image.width * image.height * BYTES_PER_PIXEL * factor


def _allowed_formats() -> tuple[str, ...]:
    # Pillow lacks a plugin when built without its library (WebP); asking for it fails.
    Image.init()
    return tuple(name for name in ALLOWED_FORMATS if name in Image.OPEN)


def _stream_of(source: Any, name: str) -> Any:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError(name, "no bytes given (empty input)")
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        return _checked_path(Path(source), name)
    if hasattr(source, "read") and hasattr(source, "seek"):
        return source
    raise ImageError(
        name,
        "unsupported input type; expected a file path, bytes, a PIL image, a numpy array or a torch tensor",
    )


def _unidentified(stream: Any, name: str) -> ImageError:
    """Why no allowed parser took the file, naming the format its first bytes show."""
    prefix = _prefix(stream)
    if not prefix:
        return ImageError(name, "no bytes given (empty input)")
    found = _sniff(prefix)
    if found is None:
        return ImageError(name, f"not an image file in an allowed format ({ALLOWED_NAMES})")
    if found in ALLOWED_FORMATS:
        return ImageError(name, f"looks like {found} but its header cannot be read (corrupt file)")
    return UnsupportedFormatError(
        name, f"looks like {found}, a format not accepted; the allowed formats are {ALLOWED_NAMES}"
    )


def _prefix(stream: Any) -> bytes:
    if isinstance(stream, Path):
        with stream.open("rb") as file:
            return file.read(16)
    stream.seek(0)
    return bytes(stream.read(16))


def _sniff(prefix: bytes) -> str | None:
    """The format whose signature starts ``prefix`` (Pillow's name), or None.

    Only Pillow's signature checks run (a comparison of the first bytes), never a parser.
    A format without a signature (TGA) is not named, or named after one whose signature
    its first bytes happen to match (an uncompressed TGA starts like a CUR icon).
    """
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        try:
            found = accept is not None and accept(prefix)
        except Exception:  # a signature check that needs more bytes than a short file has
            continue
        if found and not isinstance(found, str):
            return name
    return None


def _checked_path(path: Path, name: str) -> Path:
    if not path.exists():
        raise ImageError(name, "file not found")
    if path.is_dir():
        raise ImageError(name, "is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(name, "file is empty (0 bytes)")
    return path


def _check_pixels(image: Image.Image, name: str, max_pixels: int) -> None:
    # The header is read but the pixels are not: a bomb is refused before it costs memory.
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise ImageError(
            name,
            f"image is {image.width}x{image.height} = {pixels:,} pixels, above the limit of "
            f"{max_pixels:,} (a decompression-bomb guard); pass max_pixels to raise it",
        )


def _decode_pixels(image: Image.Image, name: str) -> Image.Image:
    try:
        image.load()
    except Exception as exc:  # whatever a parser raises on a damaged file, never a crash
        raise ImageError(name, f"file is truncated or corrupt ({exc})") from None
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(image)
    has_alpha = mode in _ALPHA_MODES or "transparency" in image.info
    if has_alpha:
        # Transparent areas have undefined colour; show them on white as viewers do.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey images: scale to 8 bits instead of clipping (PIL clips)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0
    else:
        top = 65535.0 if values.size and values.max() > 255 else 255.0
    scaled = np.clip(np.nan_to_num(values) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled).convert("RGB")


def _image_from_array(array: np.ndarray, name: str) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageError(
            name,
            f"array shape {tuple(array.shape)} is not an image; expected H×W (grey), "
            "H×W×3 (RGB) or H×W×4 (RGBA), channels last",
        )
    # uint8 H×W, H×W×3 and H×W×4 map to L, RGB and RGBA by shape alone.
    return Image.fromarray(np.ascontiguousarray(_array_to_uint8(array, name)))


def _array_to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError(name, "float array holds NaN or infinite values")
        low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        if low < 0.0 or high > 1.0:
            raise ImageError(
                name,
                f"float array values span [{low:g}, {high:g}]; float images must be in [0, 1] "
                "(or pass uint8 pixels in [0, 255])",
            )
        return (array * 255.0 + 0.5).astype(np.uint8)
    raise ImageError(
        name, f"array dtype {array.dtype} is not supported; use uint8, uint16 or float in [0, 1]"
    )


def iter_image_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Expand folders (recursively, sorted) into image files; keep named files as given.

    Named files are yielded even when missing or oddly suffixed so that the decoder
    reports them, rather than having them vanish from a batch silently.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            yield from found
        else:
            yield path
