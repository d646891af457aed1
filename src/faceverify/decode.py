"""Decoding: every image input becomes an RGB ``PIL.Image`` here, and only here.

Files, bytes, PIL images and numpy arrays all pass through :func:`load_image`, which
applies the same limits (minimum side, maximum pixel count) and the same conversions
(EXIF orientation, grey/palette/alpha/16-bit to 8-bit RGB) whatever the source.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceverify.errors import ImageError

#: What :func:`load_image` accepts (torch tensors are turned into arrays by ``embed``).
ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, Image.Image, np.ndarray]

#: Images smaller than this on either side carry too little of a face to embed.
DEFAULT_MIN_SIDE = 16
#: Decompression-bomb guard: a 50-megapixel photo is large; a face crop never is.
DEFAULT_MAX_PIXELS = 50_000_000
#: File suffixes picked up when a folder is given; explicitly named files are always tried.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


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
        min_side: reject images whose width or height is below this many pixels.
        max_pixels: reject images with more pixels than this before decoding them,
            which protects against decompression bombs. Raise it for genuine huge scans.

    Returns:
        An RGB image, upright according to its EXIF orientation.

    Raises:
        ImageError: naming the source and the reason.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        image = _image_from_array(source, name)
    elif isinstance(source, Image.Image):
        image = source
    else:
        image = _open_encoded(source, name)
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


def _open_encoded(source: Any, name: str) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError(name, "no bytes given (empty input)")
        stream: Any = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        stream = _checked_path(Path(source), name)
    else:
        raise ImageError(
            name,
            "unsupported input type; expected a file path, bytes, a PIL image, "
            "a numpy array or a torch tensor",
        )
    try:
        return Image.open(stream)
    except UnidentifiedImageError:
        raise ImageError(name, "not an image file, or a format Pillow cannot read") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(name, f"refused as a decompression bomb ({exc})") from None
    except OSError as exc:
        raise ImageError(name, f"cannot be read ({exc.strerror or exc})") from None


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
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(name, f"file is truncated or corrupt ({exc})") from None
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(image)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
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
