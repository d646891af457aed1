"""Where a model's weights come from, and loading them without silent surprises.

Three sources, one loading path:

* the published weights (the default): on the Hugging Face hub, through
  ``huggingface_hub`` and its standard cache, so ``HF_HUB_OFFLINE=1`` works after one
  download; or wherever an architecture registered as publishing its own
  (:mod:`~faceverify.models.custom_weights`, e.g. dlib's network, whose file comes in the
  ``face-recognition-models`` package);
* a local ``.safetensors`` (or ``.pth``) file, used with the named architecture, or a file
  in the architecture's own format when it registered a reader for one;
* a local folder in the hub's timm layout (``config.json`` + ``model.safetensors``),
  whose config names the architecture and carries the preprocessing contract.

A config.json (a folder's or a hub repo's) is data: the architecture, arguments and
preprocessing fields it names pass :mod:`faceverify.models.args` before timm sees them.

Whatever the source, the state dict is loaded strictly: timm's own loader turns
strictness off whenever the classifier is dropped, which would let weights of another
architecture load as a silently random model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from faceverify.errors import ModelError, WeightsNotFoundError
from faceverify.models.custom_weights import CustomWeights, registered

if TYPE_CHECKING:
    import torch

WeightsLike = Union[str, "os.PathLike[str]", None]

#: Pass as ``weights`` for random initialisation (training from scratch, tests).
RANDOM = "random"
WEIGHT_FILENAMES = ("model.safetensors", "pytorch_model.bin")
HUB_DOCS = "https://huggingface.co/{repo}"


def custom_weights(name: str) -> CustomWeights | None:
    """What model ``name`` (with or without its tag) registered about its own weights."""
    from timm.models import split_model_name_tag

    from faceverify.models.registry import register_architectures

    register_architectures()
    return registered(split_model_name_tag(name)[0])


@dataclass(frozen=True)
class WeightsPlan:
    """Everything needed to build a backbone and fill it.

    Attributes:
        model_name: the timm name to create (architecture, with its pretrained tag if any).
        pretrained_cfg: a config dict from a folder or the hub, or None to use the tag's.
        model_args: extra architecture arguments saved with the weights.
        file: the weights file, or None for random initialisation.
        source: a human-readable origin, recorded in every artifact.
    """

    model_name: str
    pretrained_cfg: dict[str, Any] | None
    model_args: dict[str, Any] = field(default_factory=dict)
    file: Path | None = None
    source: str = RANDOM


def plan_weights(
    name: str, weights: WeightsLike, *, name_given: bool, cache_dir: str | None = None
) -> WeightsPlan:
    """Decide architecture, config and weights file for ``build_model``.

    Args:
        name: the model name (a timm name, ``hf-hub:org/repo`` or ``local-dir:PATH``).
        weights: None for the hub, ``"random"``, or a local file or folder.
        name_given: whether the user chose ``name`` (a folder's own config then must agree).
        cache_dir: Hugging Face cache folder; None for the standard one.
    """
    if name.startswith("local-dir:"):
        return _plan_folder(Path(name.partition(":")[2]), name=None, chosen=False)
    if name.startswith("hf-hub:"):
        return _plan_hub_repo(name.partition(":")[2], weights, cache_dir)
    _check_known(name)
    if weights is None:
        return _plan_published(name, cache_dir)
    if isinstance(weights, str) and weights == RANDOM:
        return WeightsPlan(model_name=name, pretrained_cfg=None)
    path = Path(weights).expanduser().resolve()  # artifacts record where weights really are
    if not path.exists():
        raise WeightsNotFoundError(
            f"weights path '{path}' does not exist; give a .safetensors file, a folder holding "
            "model.safetensors, or omit it to download from the Hugging Face hub"
        )
    if path.is_dir():
        return _plan_folder(path, name=name, chosen=name_given)
    return WeightsPlan(model_name=name, pretrained_cfg=None, file=path, source=str(path))


def _plan_published(name: str, cache_dir: str | None) -> WeightsPlan:
    """The weights ``name`` is published with: its own registered file, else the hub's."""
    custom = custom_weights(name)
    if custom is None:
        return _plan_hub_name(name, cache_dir)
    path = custom.default_file()
    return WeightsPlan(model_name=name, pretrained_cfg=None, file=path, source=str(path))


def _check_known(name: str) -> None:
    import difflib

    import timm
    from timm.models import split_model_name_tag

    from faceverify.models.registry import register_architectures

    register_architectures()
    architecture, _ = split_model_name_tag(name)
    if timm.is_model(architecture):
        return
    close = difflib.get_close_matches(name, timm.list_models(pretrained=True), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ModelError(
        f"unknown model {name!r}.{hint} `faceverify models` lists the curated names; "
        "any timm architecture name also works."
    )


def _plan_hub_name(name: str, cache_dir: str | None) -> WeightsPlan:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name, allow_unregistered=False)
    repo = cfg.hf_hub_id if cfg is not None else None
    if cfg is None or not repo:
        raise ModelError(
            f"no pretrained weights for {name!r} are published on the Hugging Face hub; "
            "pass weights=PATH (--weights PATH) or weights='random' to train from scratch"
        )
    filename = getattr(cfg, "hf_hub_filename", None) or WEIGHT_FILENAMES[0]
    file = download(repo, filename, cache_dir=cache_dir, model=name)
    return WeightsPlan(model_name=name, pretrained_cfg=None, file=file, source=f"hf-hub:{repo}")


def _plan_hub_repo(repo: str, weights: WeightsLike, cache_dir: str | None) -> WeightsPlan:
    from timm.models import load_model_config_from_hf

    if weights is not None:
        raise ModelError("hf-hub: names bring their own weights; drop the weights argument")
    try:
        cfg, architecture, model_args = load_model_config_from_hf(repo, cache_dir=cache_dir)
    except Exception as exc:  # any hub failure becomes one actionable message
        raise WeightsNotFoundError(_offline_help(repo, "config.json", exc, model=repo)) from exc
    plan = _checked_plan(cfg, architecture, model_args, config=f"hf-hub:{repo} config.json")
    file = download(repo, WEIGHT_FILENAMES[0], cache_dir=cache_dir, model=repo)
    return replace(plan, file=file, source=f"hf-hub:{repo}")


def _plan_folder(folder: Path, *, name: str | None, chosen: bool) -> WeightsPlan:
    """A folder: its config.json names the architecture, else ``name`` (default or chosen)."""
    file = next((folder / f for f in WEIGHT_FILENAMES if (folder / f).is_file()), None)
    if file is None:
        raise WeightsNotFoundError(
            f"folder '{folder}' holds no weights; expected one of {', '.join(WEIGHT_FILENAMES)}"
        )
    if not (folder / "config.json").is_file():
        if name is None:
            raise ModelError(
                f"folder '{folder}' has no config.json naming its architecture; pass the "
                "model name too (--model NAME)"
            )
        return WeightsPlan(model_name=name, pretrained_cfg=None, file=file, source=str(folder))
    from timm.models._hub import load_model_config_from_path

    try:
        cfg, architecture, model_args = load_model_config_from_path(folder)
    except (KeyError, ValueError, OSError, TypeError, AttributeError) as exc:  # any malformed JSON
        raise ModelError(f"config.json in '{folder}' is not a timm model config ({exc})") from exc
    plan = _checked_plan(cfg, architecture, model_args, config=str(folder / "config.json"))
    if chosen and name is not None and name.split(".")[0] != plan.model_name:
        raise ModelError(
            f"folder '{folder}' holds a {plan.model_name!r} model, but model {name!r} was asked "
            f"for; drop --model or use --model {plan.model_name}"
        )
    return replace(plan, file=file, source=str(folder))


def _checked_plan(cfg: Any, architecture: Any, model_args: Any, *, config: str) -> WeightsPlan:
    """A plan from a timm ``config.json``: its contents are data, checked before any factory
    sees them (see :mod:`faceverify.models.args`)."""
    from faceverify.models.args import check_architecture, check_model_args, check_pretrained_cfg

    return WeightsPlan(
        model_name=check_architecture(architecture, source=config),
        pretrained_cfg=check_pretrained_cfg(cfg, source=config),
        model_args=check_model_args(model_args, source=config),
    )


def download(repo: str, filename: str, *, cache_dir: str | None, model: str) -> Path:
    """Fetch one file of a hub repo through the standard HF cache (offline-aware)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, cache_dir=cache_dir))
    except Exception as exc:  # connection, offline cache miss, missing repo: one message
        raise WeightsNotFoundError(_offline_help(repo, filename, exc, model=model)) from exc


def _offline_help(repo: str, filename: str, exc: BaseException, *, model: str) -> str:
    cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return (
        f"could not get weights for {model!r} from the Hugging Face hub ({repo}, {filename}): "
        f"{cause}. To work without the hub, either pass a local weights file or folder with "
        f"--weights PATH (weights=PATH in Python), e.g. the {filename} from "
        f"{HUB_DOCS.format(repo=repo)}; or fill the Hugging Face cache on a connected machine "
        f"(`hf download {repo}`), copy it to this one (~/.cache/huggingface, or set HF_HOME) "
        "and set HF_HUB_OFFLINE=1"
    )


def read_state_dict(path: Path, model_name: str | None = None) -> dict[str, torch.Tensor]:
    """Read tensors from a ``.safetensors`` file or a PyTorch checkpoint (safely), or from a
    file in the format ``model_name`` registered as its own (:class:`CustomWeights`)."""
    import torch

    custom = custom_weights(model_name) if model_name is not None else None
    if custom is not None and path.name.endswith(custom.suffixes):
        return custom.read(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a checkpoint at all
        raise ModelError(f"weights file '{path}' cannot be read ({exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"weights file '{path}' does not hold a state dict of tensors")
    # Checkpoints saved from DistributedDataParallel prefix every key with "module.".
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into a headless model, requiring every backbone tensor to match."""
    pretrained_cfg: dict[str, Any] = getattr(model, "pretrained_cfg", None) or {}
    classifier = pretrained_cfg.get("classifier")
    for prefix in (classifier,) if isinstance(classifier, str) else tuple(classifier or ()):
        state.pop(f"{prefix}.weight", None)
        state.pop(f"{prefix}.bias", None)
    architecture = type(model).__name__
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when not strict
        first = str(exc).strip().splitlines()[-1].strip()
        raise ModelError(
            f"weights from {source} do not fit the {architecture} architecture ({first}); "
            "were they saved from another model? Pass the matching --model"
        ) from exc
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ModelError(
            f"weights from {source} do not fit the {architecture} architecture: "
            f"{len(missing)} tensors missing (e.g. {missing[:2]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:2]}); "
            "were they saved from another model? Pass the matching --model"
        )
