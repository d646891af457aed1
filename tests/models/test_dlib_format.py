"""Reading dlib's face network file: the real file parses, damaged copies fail clearly."""

from __future__ import annotations

import bz2
from pathlib import Path

import pytest

from faceverify.dlib_format import parse_dlib_net, read_dlib_bytes
from faceverify.errors import ModelError
from faceverify.models.dlib_resnet import dlib_layer_list


@pytest.fixture(scope="module")
def dat_bytes(dat_file: Path) -> bytes:
    return read_dlib_bytes(dat_file)


def test_real_file_has_the_declared_layers(dat_file: Path, dat_bytes: bytes) -> None:
    net = parse_dlib_net(dat_bytes, dlib_layer_list(), name=str(dat_file))
    kinds = [layer.kind for layer in net.layers]
    assert kinds.count("con") == 29 and kinds.count("add_prev") == 14 and kinds[-1] == "fc"
    assert net.layers[0].params["weight"].shape == (32, 3, 7, 7)
    assert net.layers[-1].params["weight"].shape == (128, 256)
    assert net.input.attrs["rows"] == 150
    assert net.loss.attrs["distance_threshold"] == pytest.approx(0.6)


def test_bz2_download_reads_like_the_raw_file(tmp_path: Path, dat_bytes: bytes) -> None:
    head = dat_bytes[:65536]  # the whole file takes seconds to compress
    packed = tmp_path / "model.dat.bz2"
    packed.write_bytes(bz2.compress(head, compresslevel=1))
    assert read_dlib_bytes(packed) == head
    packed.write_bytes(bz2.compress(head)[:-20])
    with pytest.raises(ModelError, match=r"model\.dat\.bz2: bzip2 data is corrupt"):
        read_dlib_bytes(packed)


@pytest.mark.parametrize("keep", [0, 5, 300, 100_000, -1])
def test_truncated_file_names_file_and_offset(tmp_path: Path, dat_bytes: bytes, keep: int) -> None:
    cut = tmp_path / "cut.dat"
    cut.write_bytes(dat_bytes[:keep])
    with pytest.raises(ModelError, match=r"cut\.dat: .*file ends while reading .*byte offset \d+"):
        parse_dlib_net(read_dlib_bytes(cut), dlib_layer_list(), name=str(cut))


def test_altered_layer_name_says_what_was_expected(tmp_path: Path, dat_bytes: bytes) -> None:
    altered = tmp_path / "altered.dat"
    altered.write_bytes(dat_bytes.replace(b"max_pool_2", b"max_poox_2", 1))
    with pytest.raises(ModelError, match=r"altered\.dat: .*'max_poox_2' where a 'max_pool' layer"):
        parse_dlib_net(read_dlib_bytes(altered), dlib_layer_list(), name=str(altered))


def test_altered_version_and_trailing_bytes_are_refused(dat_bytes: bytes) -> None:
    with pytest.raises(ModelError, match="found 9 for the loss layer's version"):
        parse_dlib_net(b"\x01\x09" + dat_bytes[2:], dlib_layer_list(), name="x.dat")
    with pytest.raises(ModelError, match="3 unexpected bytes after"):
        parse_dlib_net(dat_bytes + b"abc", dlib_layer_list(), name="x.dat")


def test_other_network_is_refused(dat_bytes: bytes) -> None:
    layers = dlib_layer_list()
    assert layers[1] == "affine"
    with pytest.raises(ModelError, match="found layer 'affine_' where a 'relu' layer"):
        parse_dlib_net(dat_bytes, [layers[0], "relu", *layers[2:]], name="x.dat")
