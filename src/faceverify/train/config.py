"""Training configuration: typed dataclasses, read from YAML plus ``key=value`` overrides.

Unknown keys are errors that list the valid ones, values are checked against the field
types, and the resolved configuration is written into every run folder and checkpoint.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceverify.checks import check_choice
from faceverify.errors import ConfigError


@dataclass
class AugmentConfig:
    """Training-time augmentation (validation images only get the model's contract)."""

    random_resized_crop: tuple[float, float] | None = (0.8, 1.0)  # area range; None: off
    hflip: float = 0.5  # probability
    color_jitter: float = 0.2  # brightness/contrast/saturation strength; 0: off
    random_erasing: float = 0.0  # probability of erasing a random rectangle (occlusion); 0: off


@dataclass
class DataConfig:
    root: str = "."  # the folders and files below are relative to it
    train_dir: str = "classification_train"
    val_dir: str | None = "classification_val"
    pairs: str | None = "verification_pairs_val.txt"  # verification AUC every epoch
    workers: int = 2
    pin_memory: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    """The network to train: an architecture, the weights it starts from, and the neck.

    Not a :class:`~faceverify.models.spec.ModelSpec`: a spec describes a ready embedder to
    build (device, runtime, threshold, crop: what inference needs), this the trainable
    network (``faceverify.models.factory.load_network`` plus a neck). The device is the
    run's (``TrainConfig.device``); the trained checkpoint, as ``weights`` of a spec, is
    what inference builds afterwards.
    """

    # any timm name; face_resnet is the course's ResNet; dlib_resnet_v1 is dlib's face
    # network (with weights: null its real weights, 150 px aligned chips: finetune_dlib.yaml)
    name: str = "face_resnet"
    weights: str | None = "random"  # None: ImageNet weights from the hub (transfer learning)
    args: dict[str, Any] = field(default_factory=dict)  # architecture arguments, e.g. {width: 32}
    input_size: int | None = None  # None: the architecture's (64 for face_resnet)
    embedding_dim: int | None = None  # add a Linear+BatchNorm neck to this size

    def __post_init__(self) -> None:
        # checked now, not when the checkpoint is read back: a run whose args no model file
        # may carry would train for hours and leave a checkpoint that refuses to load
        from faceverify.errors import ModelError
        from faceverify.models.args import check_model_args

        try:
            check_model_args(self.args, source="model.args")
        except ModelError as exc:
            raise ConfigError(str(exc)) from None


@dataclass
class LossConfig:
    head: str = "softmax"  # softmax (cross-entropy), arcface or cosface
    label_smoothing: float = 0.0
    # arcface/cosface logit scale; None: sqrt(2)·ln(classes - 1) (AdaCos's fixed scale; at
    # least 4), which grows with the identities: 4.5 for 25, 13 for 10^4, 16 for 85k. A fixed
    # 16 left ArcFace 0.15 AUC below softmax on 25 synthetic identities in 4 epochs, 4.5 within
    # 0.04 (see tests/train/test_margin_heads.py); the papers' 30-64 need far longer training
    scale: float | None = None
    margin: float | None = None  # None: 0.5 for arcface, 0.35 for cosface
    center_weight: float = 0.0  # λ of center loss; 0 turns it off
    center_lr: float = 0.5  # the centres' own learning rate
    # arcface/cosface: the margin grows linearly from 0 to `margin` over these (fractional)
    # epochs; 0 applies the full margin from the first step (which small sets may not survive)
    margin_warmup_epochs: float = 2.0


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd (with Nesterov momentum) or adamw
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clip_grad: float | None = None  # max gradient norm
    # fine-tuning a pretrained network: the backbone learns at lr × this (the new neck and
    # head at lr); 0.1 or less keeps what the weights know while the head catches up
    backbone_lr_scale: float = 1.0
    freeze_backbone_epochs: int = 0  # the backbone does not move during the first N epochs


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine, step, plateau or none
    warmup_epochs: int = 0
    step_epochs: int = 10  # step: decay every N epochs
    gamma: float = 0.1  # step/plateau: multiply the rate by this
    patience: int = 2  # plateau: epochs without a better validation AUC


@dataclass
class CalibrateConfig:
    """How every checkpoint gets its verification threshold (see :mod:`faceverify.train.calibrate`).

    The threshold is chosen on ``data.pairs`` when the run has a labelled pairs file, else on
    all pairs of images of identities held out from training (never classifier classes).

    The default holds out 10% of the identities, at least 5 and at most 100, and uses up to
    10 images of each: 5 people give 225 genuine and 1,000 impostor pairs, the fewest with
    which a FAR of 1e-3 can be measured at all; 100 people (about 495,000 impostor pairs)
    measure FAR down to 1e-5 while costing a set of 10^4 identities only 1% of its classes.
    A set too small to spare ``holdout_min`` identities and still train on at least as many
    is not held out from (a warning says so): give it a ``data.pairs`` file instead.
    ``holdout_identities`` names them outright (kept out of training even with a pairs
    file); the run writes the ones it drew there, in its ``config.yaml`` and checkpoints.
    """

    far: float | None = 1e-3  # target FAR; None: the EER point (also used when too few impostors)
    holdout: float = 0.1  # share of identities held out when there is no data.pairs; 0: none
    holdout_min: int = 5
    holdout_max: int = 100
    images_per_identity: int = 10  # images of each held-out identity paired up
    holdout_identities: list[str] | None = None  # None: chosen by seed; the run records its choice

    def __post_init__(self) -> None:
        if self.far is not None and not 0.0 < self.far < 1.0:
            raise ConfigError(
                f"calibrate.far {self.far!r} must lie between 0 and 1 (exclusive), e.g. 1e-3; "
                "null chooses the equal error rate point"
            )
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"calibrate.holdout {self.holdout!r} must be a share in [0, 1), e.g. 0.1")
        for name, least in (("holdout_min", 1), ("holdout_max", 1), ("images_per_identity", 2)):
            if getattr(self, name) < least:
                raise ConfigError(f"calibrate.{name} {getattr(self, name)!r} must be at least {least}")
        if self.holdout_max < self.holdout_min:
            raise ConfigError(
                f"calibrate.holdout_max {self.holdout_max} is below calibrate.holdout_min {self.holdout_min}"
            )


@dataclass
class EarlyStopConfig:
    """Stop when the validation score (pair AUC, else val accuracy) stops improving."""

    patience: int | None = None  # epochs without an improvement of min_delta; None: never stop
    min_delta: float = 0.001  # smaller gains count as no improvement


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    calibrate: CalibrateConfig = field(default_factory=CalibrateConfig)
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    epochs: int = 10
    batch_size: int = 128  # per process
    precision: str = "auto"  # auto (fp16 on CUDA, bf16 where supported, else fp32), fp32, bf16, fp16
    channels_last: bool = True
    compile: bool = False  # torch.compile the model (worth it for long GPU runs)
    seed: int = 0
    device: str = "auto"
    out: str = "runs/face"  # the run folder
    tensorboard: bool = False

    def __post_init__(self) -> None:
        check_choice("loss.head", self.loss.head, ("softmax", "arcface", "cosface"))
        check_choice("optim.name", self.optim.name, ("sgd", "adamw"))
        check_choice("schedule.name", self.schedule.name, ("cosine", "step", "plateau", "none"))
        check_choice("precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        for name, value in (("epochs", self.epochs), ("batch_size", self.batch_size)):
            if value < 1:
                raise ConfigError(f"{name} {value!r} must be at least 1")
        if self.optim.lr <= 0:
            raise ConfigError(f"optim.lr {self.optim.lr!r} must be positive")
        _check_new_sections(self)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _check_new_sections(config: TrainConfig) -> None:
    """Ranges of the margin warm-up, fine-tuning, augmentation and early-stop settings."""
    checks = (
        ("loss.margin_warmup_epochs", config.loss.margin_warmup_epochs, 0.0, None),
        ("loss.scale", config.loss.scale, 1.0, None),
        ("optim.backbone_lr_scale", config.optim.backbone_lr_scale, 0.0, None),
        ("optim.freeze_backbone_epochs", config.optim.freeze_backbone_epochs, 0, config.epochs),
        ("data.augment.random_erasing", config.data.augment.random_erasing, 0.0, 1.0),
        ("early_stop.patience", config.early_stop.patience, 1, None),
        ("early_stop.min_delta", config.early_stop.min_delta, 0.0, None),
    )
    for name, value, low, high in checks:
        if value is not None and (value < low or (high is not None and value > high)):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name} = {value!r} is out of range; use a value {bound}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML file (if any) and apply ``section.key=value`` overrides."""
    import yaml

    data = load_raw(Path(path)) if path is not None else {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. optim.lr=0.05)")
        _set_path(data, key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None)
    return build(TrainConfig, data, "")


def load_raw(file: Path) -> dict[str, Any]:
    """A YAML config as plain data; ``base: other.yaml`` (relative to it) supplies defaults."""
    import yaml

    if not file.is_file():
        raise ConfigError(f"config file '{file}' not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{file}' is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{file}' must hold a mapping of settings")
    base = data.pop("base", None)
    return _merge(load_raw(file.parent / str(base)), data) if base is not None else data


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        both_maps = isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "args"
        merged[key] = _merge(merged[key], value) if both_maps else value
    return merged


def build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """Construct a config dataclass from plain data, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or "the config"
        raise ConfigError(f"unknown key {prefix}{unknown[0]} in {where}; valid keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: _convert(hints[name], value, f"{prefix}{name}") for name, value in data.items()}
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return build(hint, value, f"{where}.")  # type: ignore[arg-type]
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{where} cannot be empty")
    for option in options:
        converted = _as(option, value)
        if converted is not _NO:
            return converted
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    raise ConfigError(f"{where} = {value!r} must be {names}")


_NO = object()


def _as(option: Any, value: Any) -> Any:
    origin = typing.get_origin(option) or option
    if origin is bool:
        return value if isinstance(value, bool) else _NO
    if origin is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if origin is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _NO
    if origin is str:
        return value if isinstance(value, str) else _NO
    if origin is dict:
        return dict(value) if isinstance(value, dict) else _NO
    if origin is list:
        (item,) = typing.get_args(option)
        parts = [_as(item, v) for v in value] if isinstance(value, (list, tuple)) else [_NO]
        return _NO if any(p is _NO for p in parts) else parts
    if origin is tuple:
        items = typing.get_args(option)
        if isinstance(value, (list, tuple)) and len(value) == len(items):
            parts = [_as(t, v) for t, v in zip(items, value)]
            return _NO if any(p is _NO for p in parts) else tuple(parts)
        return _NO
    return _NO


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {'.'.join(keys)}: {key} is not a section")
    node[keys[-1]] = value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
