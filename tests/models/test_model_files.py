"""Model files are data, never code: what a file says about its architecture is checked.

Each malicious input is a real file (a training checkpoint, a model folder, an ONNX
graph) that asks timm to open another file, fetch from the hub or take loader
arguments. Each must be refused with a ModelError naming the bad key and the file, and
without timm ever opening the trap file: Python's audit hook records every ``open``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
import yaml
from safetensors.torch import save_file

import faceverify as fv
from faceverify.errors import ModelError
from faceverify.models.args import MODEL_ARGS, check_model_args, check_pretrained_cfg
from faceverify.models.checkpoint import FORMAT
from faceverify.models.neck import EmbeddingNetwork
from faceverify.models.registry import register_architectures
from faceverify.preprocess import PreprocessConfig

WIDTH = 8  # the course ResNet at width 8: a 64-dim backbone, built in milliseconds
CONTRACT = PreprocessConfig(
    input_size=(32, 32), interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0
)

_watched: set[str] = set()
_opened: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _watched and isinstance(args[0], (str, bytes, Path)):
        path = str(Path(args[0].decode() if isinstance(args[0], bytes) else args[0]).resolve())
        if path in _watched:
            _opened.append(path)


sys.addaudithook(_audit)  # hooks cannot be removed: it records only while a test watches


@contextlib.contextmanager
def _watching(trap: Path) -> Iterator[list[str]]:
    """The opens of ``trap`` that happen inside the block."""
    _watched.add(str(trap.resolve()))
    _opened.clear()
    try:
        yield _opened
    finally:
        _watched.clear()


@pytest.fixture
def trap(tmp_path: Path) -> Path:
    """A file no model file may make anyone open (bytes that are not a checkpoint)."""
    path = tmp_path / "secret" / "trap.pth"
    path.parent.mkdir()
    path.write_bytes(b"not a checkpoint: opening this file is the attack")
    return path


def _network(embedding_dim: int | None = 16) -> EmbeddingNetwork:
    torch.manual_seed(0)
    backbone = timm.create_model("face_resnet", pretrained=False, num_classes=0, width=WIDTH)
    return EmbeddingNetwork(backbone, embedding_dim)


def _checkpoint(folder: Path, **changes: Any) -> Path:
    """A training checkpoint in faceverify's format (random weights), with ``changes``."""
    state = {
        "format": FORMAT,
        "architecture": "face_resnet",
        "model_args": {"width": WIDTH},
        "embedding_dim": 16,
        "neck": True,
        "preprocess": CONTRACT.to_dict(),
        "model": _network().state_dict(),
        **changes,
    }
    path = folder / "run" / "best.pt"
    path.parent.mkdir(exist_ok=True)
    torch.save(state, path)
    return path


def _model_folder(folder: Path, **changes: Any) -> Path:
    """A model folder in the hub's timm layout: config.json beside model.safetensors."""
    backbone = _network(None).backbone
    target = folder / "model"
    target.mkdir(exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in backbone.state_dict().items()}, str(target / "model.safetensors")
    )
    config = {
        "architecture": "face_resnet",
        "num_classes": 0,
        "model_args": {"width": WIDTH},
        "pretrained_cfg": {
            **CONTRACT.to_timm(),
            "input_size": [3, 32, 32],
            "tag": "course",
            "classifier": "fc",
        },
        **changes,
    }
    (target / "config.json").write_text(json.dumps(config))
    return target


def _refused(weights: Path, key: str, name: str | None = None) -> str:
    """The ModelError building from ``weights`` raises; it must name ``key`` and the file."""
    with pytest.raises(ModelError) as info:
        fv.build_model(name, weights=weights, device="cpu")
    message = str(info.value)
    file = weights / "config.json" if weights.is_dir() else weights
    assert key in message and str(file) in message, message
    return message


BAD_ARGS = {
    "pretrained": True,
    "pretrained_cfg_overlay": {"url": "https://example.invalid/evil.pth"},
    "features_only": True,
    "scriptable": True,
    "cache_dir": "/tmp/elsewhere",
}


def test_the_trap_works_timm_opens_checkpoint_path_when_asked(trap: Path) -> None:
    # the threat, and proof that the audit hook sees it: timm itself opens the file
    register_architectures()
    with _watching(trap) as opened, contextlib.suppress(Exception):
        timm.create_model(
            "face_resnet", pretrained=False, num_classes=0, width=WIDTH, checkpoint_path=str(trap)
        )
    assert opened


def test_a_benign_checkpoint_still_loads(tmp_path: Path) -> None:
    model = fv.build_model(weights=_checkpoint(tmp_path), device="cpu")
    assert model.name == "face_resnet"
    assert model.embedding_dim == 16
    assert model.preprocess == CONTRACT


def test_checkpoint_path_in_a_checkpoint_is_refused_and_never_opened(tmp_path: Path, trap: Path) -> None:
    file = _checkpoint(tmp_path, model_args={"width": WIDTH, "checkpoint_path": str(trap)})
    with _watching(trap) as opened:
        message = _refused(file, "checkpoint_path")
    assert opened == []
    assert "allowed: " in message and "width" in message and "drop_path_rate" in message


@pytest.mark.parametrize("key", sorted(BAD_ARGS))
def test_loader_arguments_in_a_checkpoint_are_refused(tmp_path: Path, key: str) -> None:
    file = _checkpoint(tmp_path, model_args={"width": WIDTH, key: BAD_ARGS[key]})
    assert "loader argument" in _refused(file, key)


@pytest.mark.parametrize(
    "architecture",
    [
        "hf-hub:evil/face_resnet",
        "local-dir:/tmp/evil",
        "timm/face_resnet",
        "../face_resnet",
        "/abs/net",
        None,
    ],
)
def test_a_checkpoint_may_name_only_a_plain_architecture(tmp_path: Path, architecture: Any) -> None:
    message = _refused(_checkpoint(tmp_path, architecture=architecture), repr(architecture))
    assert "not a plain model name" in message


def test_unregistered_architectures_are_refused(tmp_path: Path) -> None:
    message = _refused(_checkpoint(tmp_path, architecture="no_such_net"), "no_such_net")
    assert "not registered" in message


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"model_args": {"width": {"nested": WIDTH}}}, "width"),
        ({"model_args": {"img_size": list(range(100))}}, "img_size"),
        ({"model_args": ["width", WIDTH]}, "model_args"),
        ({"embedding_dim": "16"}, "embedding_dim"),
        ({"neck": "yes"}, "neck"),
        ({"preprocess": {**CONTRACT.to_dict(), "checkpoint_path": "x"}}, "checkpoint_path"),
        ({"preprocess": {**CONTRACT.to_dict(), "mean": {"r": 0.5}}}, "mean"),
    ],
)
def test_values_a_checkpoint_carries_must_be_plain(tmp_path: Path, changes: dict[str, Any], key: str) -> None:
    _refused(_checkpoint(tmp_path, **changes), key)


def test_a_benign_folder_loads_and_its_locations_are_dropped(tmp_path: Path, trap: Path) -> None:
    locations = {"file": str(trap), "url": "https://example.invalid/w.pth", "hf_hub_id": "evil/repo"}
    folder = _model_folder(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["pretrained_cfg"].update(locations, hf_hub_filename="w.bin", source="hf-hub", notes=["n"])
    (folder / "config.json").write_text(json.dumps(cfg))
    with _watching(trap) as opened:
        model = fv.build_model(weights=folder, device="cpu")
    assert opened == []
    assert model.name == "face_resnet.course"
    assert model.embedding_dim == 8 * WIDTH
    assert model.preprocess.input_size == (32, 32)
    assert model.preprocess.interpolation == "bilinear"
    kept = model.backbone.pretrained_cfg
    assert not {"file", "url", "hf_hub_id", "hf_hub_filename", "notes"} & {k for k, v in kept.items() if v}


def test_checkpoint_path_in_a_folder_config_is_refused_and_never_opened(tmp_path: Path, trap: Path) -> None:
    folder = _model_folder(tmp_path, model_args={"width": WIDTH, "checkpoint_path": str(trap)})
    with _watching(trap) as opened:
        message = _refused(folder, "checkpoint_path")
        _refused(folder, "checkpoint_path", name=f"local-dir:{folder}")
    assert opened == []
    assert "allowed: " in message and "width" in message


@pytest.mark.parametrize("key", sorted(BAD_ARGS))
def test_loader_arguments_in_a_folder_config_are_refused(tmp_path: Path, key: str) -> None:
    _refused(_model_folder(tmp_path, model_args={key: BAD_ARGS[key]}), key)


@pytest.mark.parametrize("architecture", ["hf-hub:evil/repo", "local-dir:/tmp/x", "timm/resnet18"])
def test_a_folder_may_name_only_a_plain_architecture(tmp_path: Path, architecture: str) -> None:
    _refused(_model_folder(tmp_path, architecture=architecture), architecture)


@pytest.mark.parametrize(
    ("pretrained_cfg", "key"),
    [
        ({"input_size": {"c": 3}}, "input_size"),
        ({"mean": [[0.5]] * 3}, "mean"),
        ({"tag": "../../elsewhere"}, "tag"),
        ({"tag": "hf-hub:evil/repo"}, "tag"),
    ],
)
def test_a_folders_pretrained_cfg_holds_plain_values(
    tmp_path: Path, pretrained_cfg: dict[str, Any], key: str
) -> None:
    _refused(_model_folder(tmp_path, pretrained_cfg={**CONTRACT.to_timm(), **pretrained_cfg}), key)


def test_every_argument_faceverifys_configs_write_is_allowed() -> None:
    configs = Path(__file__).resolve().parents[2] / "configs"
    for path in configs.glob("*.yaml"):
        args = (yaml.safe_load(path.read_text()).get("model") or {}).get("args") or {}
        assert check_model_args(args, source=path) == args
    assert {"width", "in_chans", "img_size", "drop_rate", "drop_path_rate", "global_pool"} <= MODEL_ARGS


def test_pretrained_cfg_keeps_the_contract_and_drops_what_it_does_not_use() -> None:
    cfg = {**CONTRACT.to_timm(), "crop_mode": "center", "file": "/x", "label_names": ["a"] * 1000}
    kept = check_pretrained_cfg(cfg, source="config.json")
    assert set(kept) == {"input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode"}


# ONNX graphs: the metadata an embedder is rebuilt from


def _graph(folder: Path, **changes: Any) -> Path:
    """A tiny real graph (the identity) with faceverify metadata, plus ``changes``."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from faceverify.runtime.onnx_backend import METADATA_KEY

    shape = ["batch", 3, 32, 32]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["embedding"])],
        "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    facts = {
        "model": "face_resnet",
        "weights": "random",
        "embedding_dim": 64,
        "preprocess": CONTRACT.to_dict(),
        "threshold": 0.5,
        "weights_sha256": "",
        "precision": "fp32",
        "format": 1,
        **changes,
    }
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(facts)
    path = folder / "graph.onnx"
    onnx.save(model, str(path))
    return path


def test_a_benign_graph_loads(tmp_path: Path) -> None:
    model = fv.build_model(weights=_graph(tmp_path), device="cpu")
    assert (model.name, model.embedding_dim, model.preprocess) == ("face_resnet", 64, CONTRACT)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"model": "hf-hub:evil/repo"}, "hf-hub:evil/repo"),
        ({"model": ["face_resnet"]}, "['face_resnet']"),
        ({"embedding_dim": "64"}, "embedding_dim"),
        ({"preprocess": {**CONTRACT.to_dict(), "checkpoint_path": "/x"}}, "checkpoint_path"),
        ({"preprocess": {**CONTRACT.to_dict(), "input_size": {"h": 32}}}, "input_size"),
        ({"threshold": "0.5"}, "threshold"),
        ({"precision": "pickle"}, "precision"),
        ({"weights": {"path": "/x"}}, "weights"),
    ],
)
def test_a_graphs_metadata_must_be_plain_and_valid(tmp_path: Path, changes: dict[str, Any], key: str) -> None:
    _refused(_graph(tmp_path, **changes), key)
