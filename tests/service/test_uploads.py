"""Uploads: the format allow-list, the pixel caps and the decoding budget, over HTTP.

:class:`PhotoReader` is tested on its own where the app adds nothing (reservations,
their release); the app is used for what a client sees: status, code, headers.
"""

from __future__ import annotations

import gc
import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.datastructures import UploadFile

from faceverify.decode import ALLOWED_NAMES, BYTES_PER_PIXEL
from faceverify.errors import (
    ConfigError,
    DecodeBudgetError,
    ImageError,
    PayloadTooLargeError,
    UnsupportedFormatError,
)
from faceverify.photos import FaceOptions
from faceverify.service.settings import Limits, ServiceSettings
from faceverify.service.uploads import PhotoReader
from tests.service.helpers import error_of, png

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 48 48\nnewpath 0 0 moveto 48 48 lineto stroke\n%%EOF\n"
#: Pixels of one ``png(seed)`` image (48x48) and what decoding it reserves.
PIXELS = 48 * 48
RESERVED = PIXELS * BYTES_PER_PIXEL
#: Two test images per request at most, and a budget that holds exactly one such request.
SMALL = Limits(max_pixels=PIXELS, max_request_pixels=2 * PIXELS, max_decoded_bytes=2 * RESERVED)


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels and holds none (a decompression bomb)."""
    data = bytearray(png(0, (1, 1)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def _upload(data: bytes, name: str = "x.png") -> UploadFile:
    return UploadFile(io.BytesIO(data), size=len(data), filename=name)


def _reader(limits: Limits) -> PhotoReader:
    return PhotoReader(limits, decoders=2, faces=FaceOptions(detect=False))


def _reader_of(client: TestClient) -> PhotoReader:
    reader: PhotoReader = client.app.state.service.photos  # type: ignore[attr-defined]
    return reader


# -- formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "shown"),
    [("drawing.eps", EPS, "EPS"), ("icon.png", _encoded(Image.new("RGB", (48, 48)), "ICO"), "ICO")],
)
def test_a_format_outside_the_allow_list_is_415_and_nothing_is_enrolled(
    client: TestClient, name: str, data: bytes, shown: str
) -> None:
    detect = client.post("/v1/detect", files={"images": (name, data)})
    error = error_of(detect)
    assert (detect.status_code, error["code"]) == (415, "unsupported_format"), error
    assert f"images[0] ({name!r}): looks like {shown}" in error["message"]
    assert ALLOWED_NAMES in error["message"]

    assert client.post("/v1/galleries", json={"name": "staff"}).status_code == 201
    files = [("images", ("good.png", png(1))), ("images", (name, data))]
    enrol = client.post("/v1/galleries/staff/people", data={"name": "ann"}, files=files)
    assert (enrol.status_code, error_of(enrol)["code"]) == (415, "unsupported_format")
    assert client.get("/v1/galleries/staff/people").json() == []


def test_every_allowed_format_passes_through_the_service(client: TestClient) -> None:
    rgb = Image.open(io.BytesIO(png(1)))
    images = {fmt: _encoded(rgb, fmt) for fmt in ("JPEG", "PNG", "WEBP", "BMP", "GIF", "PPM")}
    images["TIFF"] = _encoded(rgb, "TIFF", compression="tiff_lzw")  # read by libtiff, from a file
    images["PNG 16-bit grey"] = _encoded(Image.fromarray(np.full((48, 48), 40_000, dtype=np.uint16)), "PNG")
    images["large PNG"] = png(2, (800, 800))  # over a megabyte: spooled to disk by the server
    for name, data in images.items():
        response = client.post("/v1/detect", files={"images": ("x", data)})
        assert response.status_code == 200, (name, response.text)
        assert response.json()["images"][0]["width"] in (48, 800), name
    assert _reader_of(client).budget.used == 0


def test_an_image_that_is_no_known_format_stays_422(client: TestClient) -> None:
    response = client.post("/v1/detect", files={"images": ("notes.png", b"just some text, no image")})
    error = error_of(response)
    assert (response.status_code, error["code"]) == (422, "invalid_image")
    assert ALLOWED_NAMES in error["message"]
    empty = client.post("/v1/detect", files={"images": ("empty.png", b"")})
    assert (empty.status_code, error_of(empty)["message"]) == (
        422,
        "images[0] ('empty.png'): no bytes given (empty input)",
    )


# -- pixel caps ----------------------------------------------------------------------


def test_an_image_above_the_megapixel_cap_gets_the_invalid_image_error(
    settings: ServiceSettings, open_client: Callable[..., TestClient]
) -> None:
    client = open_client(settings, limits=SMALL)
    response = client.post("/v1/detect", files={"images": ("big.png", png(1, (49, 48)))})
    error = error_of(response)
    assert (response.status_code, error["code"]) == (422, "invalid_image")
    assert f"49x48 = 2,352 pixels, above the limit of {PIXELS:,}" in error["message"]


def test_a_request_above_the_total_pixel_cap_is_413_before_decoding(
    settings: ServiceSettings, open_client: Callable[..., TestClient]
) -> None:
    client = open_client(settings, limits=SMALL)
    two = [("images", (f"{i}.png", png(i))) for i in range(2)]
    assert client.post("/v1/detect", files=two).status_code == 200
    three = [*two, ("images", ("2.png", png(2)))]
    response = client.post("/v1/detect", files=three)
    error = error_of(response)
    assert (response.status_code, error["code"]) == (413, "too_many_pixels")
    assert (
        f"3 images of {3 * PIXELS:,} pixels in all; the limit per request is {2 * PIXELS:,}"
        in (error["message"])
    )
    assert _reader_of(client).budget.used == 0


def test_a_decompression_bomb_is_refused_from_its_header(client: TestClient) -> None:
    for width, words in [
        (8_000, "8000x8000 = 64,000,000 pixels, above the limit"),
        (30_000, "decompression"),
    ]:
        response = client.post("/v1/detect", files={"images": ("bomb.png", _png_header(width, width))})
        error = error_of(response)
        assert (response.status_code, error["code"]) == (422, "invalid_image")
        assert words in error["message"]  # decoded, it would have been "truncated"
    assert _reader_of(client).budget.used == 0


def test_the_default_caps_pass_phone_and_camera_photos() -> None:
    limits = Limits()
    for width, height in [(4032, 3024), (6000, 4000), (6016, 4016)]:
        assert width * height <= limits.max_pixels
    assert limits.max_request_pixels >= 8 * 4032 * 3024  # eight phone photos
    assert limits.max_request_pixels * BYTES_PER_PIXEL <= limits.max_decoded_bytes


def test_limits_that_could_never_be_met_are_refused_naming_the_flags() -> None:
    with pytest.raises(ConfigError, match="--max-request-megapixels"):
        Limits(max_pixels=200_000_000)
    with pytest.raises(ConfigError, match=r"--max-decoded-mb\) to at least 763 MB"):
        Limits(max_decoded_bytes=100 << 20)


# -- the decoding budget ------------------------------------------------------------


def test_a_full_budget_is_503_with_retry_after_and_comes_back(
    settings: ServiceSettings, open_client: Callable[..., TestClient]
) -> None:
    client = open_client(settings, limits=SMALL)
    budget = _reader_of(client).budget
    [held] = budget.reserve([budget.capacity - RESERVED + 1])  # another request's images
    response = client.post("/v1/detect", files={"images": ("a.png", png(1))})
    error = error_of(response)
    assert (response.status_code, error["code"]) == (503, "decode_budget_full"), error
    assert response.headers["Retry-After"] == "1"
    held.release()
    held.release()  # once only
    assert budget.used == 0
    assert client.post("/v1/detect", files={"images": ("a.png", png(1))}).status_code == 200
    assert budget.used == 0


def test_every_request_gives_its_budget_back_whatever_it_answers(
    settings: ServiceSettings, open_client: Callable[..., TestClient]
) -> None:
    """The budget holds one request's images: a share kept by any answer would block the next."""
    client = open_client(settings, limits=SMALL)
    budget = _reader_of(client).budget
    cut = png(3)[:60]  # a PNG header and no pixels: fails while decoding
    requests = [
        ("/v1/embed", [("images", ("a.png", png(1))), ("images", ("b.png", png(2)))], 200),
        ("/v1/detect", [("images", ("a.png", png(1))), ("images", ("cut.png", cut))], 422),
        ("/v1/verify", [("a", ("a.png", png(1))), ("b", ("cut.png", cut))], 422),
        ("/v1/verify", [("a", ("a.png", png(1))), ("b", ("b.eps", EPS))], 415),
        ("/v1/verify", [("a", ("a.png", png(1))), ("b", ("b.png", png(2)))], 200),
    ]
    for path, files, status in requests * 2:
        assert client.post(path, files=files).status_code == status, path
        assert budget.used == 0, path  # at once: no garbage collection needed


def test_reservations_are_all_or_nothing_and_follow_the_image() -> None:
    reader = _reader(SMALL)
    photo = reader.read("a", _upload(png(1)))
    assert reader.budget.used == RESERVED
    with pytest.raises(DecodeBudgetError, match=r"hold 18 KB of the 36 KB .* these need 36 KB"):
        reader.read_all("images", [_upload(png(2)), _upload(png(3))])  # one fits, two do not
    assert reader.budget.used == RESERVED
    del photo
    assert reader.budget.used == 0
    photos = reader.read_all("images", [_upload(png(2)), _upload(png(3))])
    assert reader.budget.used == 2 * RESERVED
    photos.pop()
    assert reader.budget.used == RESERVED
    photos.clear()
    assert reader.budget.used == 0


def test_a_failure_part_way_gives_back_every_share() -> None:
    reader = _reader(SMALL)
    with pytest.raises(ImageError, match=r"images\[1\] \('cut.png'\): file is truncated"):
        reader.read_all("images", [_upload(png(1)), _upload(png(2)[:60], "cut.png")])
    assert reader.budget.used == 0


def test_a_share_kept_by_a_reference_cycle_is_collected_when_the_budget_is_full() -> None:
    reader = _reader(SMALL)
    cycle: list[object] = [reader.read("a", _upload(png(1)))]
    cycle.append(cycle)
    del cycle
    assert reader.budget.used == RESERVED
    assert len(reader.read_all("images", [_upload(png(2)), _upload(png(3))])) == 2
    gc.collect()
    assert reader.budget.used == 0


def test_images_that_could_never_fit_the_budget_are_413() -> None:
    reader = _reader(SMALL)
    rgba = _encoded(Image.fromarray(np.zeros((48, 48, 4), dtype=np.uint8)), "PNG")  # 3x the memory
    with pytest.raises(PayloadTooLargeError, match="needs 108 KB, more than the 36 KB") as info:
        reader.read_all("images", [_upload(rgba), _upload(rgba)])
    assert info.value.code == "too_many_pixels"
    assert reader.budget.used == 0


def test_an_unsupported_upload_is_refused_from_its_first_bytes() -> None:
    reader = _reader(SMALL)
    with pytest.raises(UnsupportedFormatError, match=r"a \('x.eps'\): looks like EPS"):
        reader.read("a", _upload(EPS, "x.eps"))
    assert reader.budget.used == 0


# -- fuzz ----------------------------------------------------------------------------


def test_damaged_uploads_get_a_4xx_and_give_their_memory_back(client: TestClient) -> None:
    """Truncated, bit-flipped and spliced images of every allowed format: an answer of the
    API's own kind (200 or a 4xx naming the upload), never a 5xx, and no memory kept."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    rgb = Image.open(io.BytesIO(png(1)))
    seeds = [_encoded(rgb, fmt) for fmt in ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")] + [EPS]

    @hypothesis.settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @hypothesis.given(
        st.sampled_from(seeds),
        st.integers(0, 400),
        st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
        st.sampled_from(["cut", "flip", "cut+flip"]),
    )
    def damaged(seed: bytes, cut: int, flips: list[tuple[int, int]], how: str) -> None:
        data = bytearray(seed[: max(cut, 1)] if "cut" in how else seed)
        if "flip" in how:
            for position, value in flips:
                data[position % len(data)] = value
        response = client.post("/v1/detect", files={"images": ("fuzz.png", bytes(data))})
        assert response.status_code in (200, 413, 415, 422), (response.status_code, response.text)
        if response.status_code != 200:
            assert error_of(response)["message"].startswith("images[0] ('fuzz.png')")
        assert _reader_of(client).budget.used == 0

    damaged()
