"""Embedding files: written whole and owner-only, shards merged as one process writes them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceverify.embed import embed_images
from faceverify.embedding_files import (
    Shard,
    check_destination,
    inputs_sha256,
    merge_shards,
    shard_path,
    write_embeddings,
)
from faceverify.errors import ConfigError
from tests.test_layout import _imports, _layer, _modules


def test_the_module_stands_where_embed_does_in_the_flow() -> None:
    """A top-level module outside tests/test_layout.py's LAYERS: checked here instead."""
    modules = _modules()
    own = _layer("faceverify.embed")
    assert own is not None
    imported = _imports(modules["faceverify.embedding_files"], modules)
    assert {m for m in imported if (_layer(m) or 0) > own} == set()


def test_unknown_formats_and_missing_folders_are_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'e\.csv' has an unknown format; valid suffixes: \.npy, \.jsonl"):
        check_destination("e.csv")
    with pytest.raises(ConfigError, match=r"folder .* does not exist"):
        check_destination(tmp_path / "absent" / "e.npy")


@pytest.mark.parametrize("suffix", [".npy", ".jsonl"])
def test_files_are_owner_only_and_replace_a_planted_link(
    suffix: str, tmp_path: Path, atto_model: Any, face_dir: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep me")
    out = tmp_path / f"emb{suffix}"
    out.symlink_to(elsewhere)
    result = embed_images(atto_model, sorted(face_dir.glob("*.png")))
    assert write_embeddings(out, result, atto_model, normalized=False) == out
    assert elsewhere.read_text() == "keep me" and not out.is_symlink()
    for path in (out, out.with_suffix(".meta.json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["elsewhere.txt", "emb.meta.json", out.name])
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert meta["count"] == 3 and meta["file"] == out.name and meta["model"] == atto_model.name


def test_shards_merge_into_what_one_process_writes(tmp_path: Path, atto_model: Any, face_dir: Path) -> None:
    paths = sorted(str(p) for p in face_dir.rglob("*") if p.is_file())
    single = write_embeddings(
        tmp_path / "single.npy", embed_images(atto_model, paths), atto_model, normalized=False
    )
    out = tmp_path / "emb.npy"
    for rank in range(2):
        positions = list(range(rank, len(paths), 2))
        result = embed_images(atto_model, [paths[i] for i in positions])
        shard = Shard(rank, 2, positions, inputs_sha256(paths))
        assert write_embeddings(out, result, atto_model, normalized=False, shard=shard) == shard_path(
            out, rank, 2
        )
    merged = merge_shards(out, remove=True)
    np.testing.assert_allclose(np.load(out), np.load(single), rtol=1e-5, atol=1e-6)
    assert merged["paths"] == paths and merged["shards"] == 2
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.glob("emb*")) == ["emb.meta.json", "emb.npy"]
