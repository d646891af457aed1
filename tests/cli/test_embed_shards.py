"""`faceverify embed` sharded under torchrun (2 gloo processes) equals one process; embed-merge."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from faceverify.cli.common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from faceverify.embed import embed_images
from faceverify.embedding_files import Shard, inputs_sha256, shard_path, write_embeddings
from tests.cli.test_cli import Capture, _one_line_error, run

#: What differs between two runs of the same work: when it ran, and how many shards it had.
_RUN_FIELDS = ("created", "shards")


@pytest.fixture(scope="module")
def images(face_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 inputs, one of them broken, so that the two ranks' shares differ in size."""
    folder = tmp_path_factory.mktemp("shards") / "images"
    shutil.copytree(face_dir, folder)
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (70, 50, 3), dtype=np.uint8)).save(folder / f"extra{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def _options(atto_file: Path) -> list[str]:
    return ["--weights", str(atto_file), "--device", "cpu", "--backend", "torch", "--input-size", "64"]


def _same_run(merged: Path, single: Path) -> None:
    """Same rows in the same order, same vectors, same metadata (paths, faces, skipped...)."""
    if merged.suffix == ".npy":
        np.testing.assert_allclose(np.load(merged), np.load(single), rtol=1e-5, atol=1e-6)
    else:
        rows = [[json.loads(line) for line in p.read_text().splitlines()] for p in (merged, single)]
        assert [r["path"] for r in rows[0]] == [r["path"] for r in rows[1]]
        np.testing.assert_allclose(
            [r["embedding"] for r in rows[0]], [r["embedding"] for r in rows[1]], rtol=1e-5, atol=1e-6
        )
    metas = [json.loads(p.with_suffix(".meta.json").read_text()) for p in (merged, single)]
    metas[1]["file"] = merged.name
    assert {k: v for k, v in metas[0].items() if k not in _RUN_FIELDS} == {
        k: v for k, v in metas[1].items() if k not in _RUN_FIELDS
    }


def test_two_gloo_ranks_write_shards_that_rank_0_merges_into_one_process_output(
    capsys: Capture, images: Path, atto_file: Path, tmp_path: Path
) -> None:
    single = tmp_path / "single.jsonl"
    code, _, err = run(
        capsys, "embed", str(images), "--out", str(single), "--normalize", *_options(atto_file)
    )
    assert code == EXIT_PARTIAL, err
    sharded = tmp_path / "sharded.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    command += ["-m", "faceverify", "embed", str(images), "--out", str(sharded), "--normalize"]
    done = subprocess.run(
        [*command, *_options(atto_file)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == EXIT_OK, done.stderr[-3000:]  # skips are in the metadata, not the exit code
    assert "embedded 6 of 7 images (320-dim)" in done.stderr and "on 2 processes; 1 skipped" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sharded.jsonl",
        "sharded.meta.json",
        "single.jsonl",
        "single.meta.json",
    ]  # the shards went once merged
    _same_run(sharded, single)
    meta = json.loads((tmp_path / "sharded.meta.json").read_text())
    assert meta["shards"] == 2
    assert meta["skipped"] == [{"path": str(images / "broken.jpg"), "reason": meta["skipped"][0]["reason"]}]


def _write_shards(model: Any, paths: list[str], out: Path, world_size: int) -> None:
    """What each rank of a sharded run writes (here, one after the other in this process)."""
    for rank in range(world_size):
        positions = list(range(rank, len(paths), world_size))
        result = embed_images(model, [paths[i] for i in positions], normalize=True)
        shard = Shard(rank, world_size, positions, inputs_sha256(paths))
        write_embeddings(out, result, model, normalized=True, shard=shard)


def test_embed_merge_joins_shards_from_elsewhere_and_refuses_incomplete_sets(
    capsys: Capture, images: Path, atto_file: Path, tmp_path: Path
) -> None:
    from faceverify import build_model

    model = build_model(weights=atto_file, device="cpu", input_size=64)
    paths = sorted(str(p) for p in images.rglob("*") if p.is_file())
    single = tmp_path / "single.npy"
    run(capsys, "embed", *paths, "--out", str(single), "--normalize", *_options(atto_file))
    out = tmp_path / "emb.npy"
    _write_shards(model, paths, out, 3)
    code, stdout, err = run(capsys, "embed-merge", str(out))
    assert (code, stdout) == (EXIT_OK, f"{out}\n"), err
    _same_run(out, single)
    assert shard_path(out, 2, 3).is_file()  # kept unless --remove

    shard_path(out, 1, 3).unlink()
    code, _, err = run(capsys, "embed-merge", str(out))
    assert code == EXIT_ERROR
    assert f"1 of 3 shards of '{out}' are missing, first {shard_path(out, 1, 3)}" in _one_line_error(err)
    _write_shards(model, paths, out, 2)  # a later run with 2 ranks, beside the stale 3-rank shards
    code, _, err = run(capsys, "embed-merge", str(out))
    assert "from runs of 2, 3 ranks lie side by side" in _one_line_error(err)
    for rank in range(3):
        shard_path(out, rank, 3).unlink(missing_ok=True)
        shard_path(out, rank, 3).with_suffix(".meta.json").unlink()
    code, _, err = run(capsys, "embed-merge", str(out), "--remove")
    assert code == EXIT_OK, err
    _same_run(out, single)
    assert sorted(p.name for p in tmp_path.glob("emb*")) == ["emb.meta.json", "emb.npy"]
