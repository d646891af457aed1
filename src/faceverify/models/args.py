"""What a model file may say about its architecture: checked before any model factory.

Checkpoints, model folders (``config.json``) and exported ONNX graphs are data that anyone
can hand to faceverify, but timm's ``create_model`` reads some keyword arguments as
instructions: ``checkpoint_path`` opens a file, ``pretrained=True`` downloads weights, a
source prefix in the name (``hf-hub:``, ``local-dir:``) reads or fetches a config and
its arguments, and ``pretrained_cfg_overlay`` points the loader somewhere else. So every
place that reads an architecture from a file passes it through this module first:

* :func:`check_architecture`: a plain registered name (with its tag), never a source;
* :func:`check_model_args`: only the architecture-shaping names of :data:`MODEL_ARGS`,
  with plain values;
* :func:`check_pretrained_cfg`: only the preprocessing and head fields of
  :data:`PRETRAINED_CFG_FIELDS`; where weights live is dropped;
* :func:`check_contract`: the preprocessing contract a checkpoint or a graph records.

Arguments a user passes in Python (``build_model(model_args=...)``) or in a training
config (``model.args``) are the user's own choice and are not checked here. Training
writes them into its checkpoints, though, so they are checked when a checkpoint is read
back: :data:`MODEL_ARGS` holds every name faceverify's configs and architectures use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from faceverify.errors import ConfigError, ModelError
from faceverify.preprocess import PreprocessConfig

#: Architecture-shaping arguments a model file may carry: input shape (``in_chans``,
#: ``img_size``, ``patch_size``, and the dynamic-size switches timm's own configs write),
#: widths and depths (``width`` is face_resnet's), pooling and regularisation rates. No
#: name here makes timm open, fetch or compile anything.
MODEL_ARGS = frozenset(
    {
        "in_chans",
        "img_size",
        "patch_size",
        "dynamic_img_size",
        "dynamic_img_pad",
        "strict_img_size",
        "width",
        "embed_dim",
        "depth",
        "depths",
        "dims",
        "num_heads",
        "mlp_ratio",
        "class_token",
        "reg_tokens",
        "no_embed_class",
        "global_pool",
        "output_stride",
        "num_classes",  # always replaced: faceverify builds networks without a classifier
        "drop_rate",
        "drop_path_rate",
        "drop_block_rate",
        "proj_drop_rate",
        "attn_drop_rate",
        "pos_drop_rate",
        "patch_drop_rate",
        "ls_init_value",
        "layer_scale_init_value",
    }
)

#: timm's loader arguments: named in errors, since a file carrying one is an attack or a
#: mistake worth spelling out (none of them describes an architecture).
LOADER_ARGS = frozenset(
    {
        "pretrained",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "pretrained_model_args",
        "pretrained_strict",
        "checkpoint_path",
        "cache_dir",
        "features_only",
        "scriptable",
        "exportable",
        "no_jit",
        "device",
        "dtype",
    }
)

#: The fields of a folder's ``pretrained_cfg`` that are kept: the preprocessing contract
#: (``PreprocessConfig.from_timm`` reads it through timm's data config), the input-size
#: facts timm turns into ``img_size``/``in_chans``, the head's names (``load_into`` drops
#: the classifier's tensors), the tag (part of the model name faceverify records) and the
#: licence. Every other field is dropped: descriptions, label names, the architecture
#: (timm fills it in itself), and where weights live (``url``, ``file``, ``hf_hub_id``,
#: ``hf_hub_filename``, ``source``, ``state_dict``, ``custom_load``). Locations are
#: dropped, not refused, because timm's own reader adds ``file`` or ``hf_hub_id``, and
#: ``source``, to every config it reads, so refusing them would refuse every folder;
#: faceverify reads the weights itself from the file it found, so it never needs a
#: location, and once dropped nothing the network carries can point timm anywhere.
PRETRAINED_CFG_FIELDS = frozenset(
    {
        "input_size",
        "test_input_size",
        "min_input_size",
        "fixed_input_size",
        "interpolation",
        "crop_pct",
        "test_crop_pct",
        "crop_mode",
        "mean",
        "std",
        "num_classes",
        "pool_size",
        "test_pool_size",
        "first_conv",
        "classifier",
        "tag",
        "license",
    }
)

#: Longest list a value may be (an image size, per-stage depths, per-channel means).
MAX_ITEMS = 16
#: A registered architecture, optionally with a pretrained tag: ``convnext_atto.d2_in1k``.
_NAME = re.compile(r"[A-Za-z0-9_]{1,100}(\.[A-Za-z0-9_.-]{1,100})?")
_TAG = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_SCALARS = (bool, int, float, str, type(None))


def check_architecture(name: object, *, source: str | Path) -> str:
    """``name`` if it is a plain architecture name that timm or faceverify registered.

    A source prefix (``hf-hub:``, ``local-dir:``), an organisation (``timm/...``) or a path
    would make timm read or download a config, and its arguments, that no one checked.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ModelError(
            f"{source}: architecture {name!r:.200} is not a plain model name; a model file may name "
            "only a registered architecture, optionally with its tag (e.g. 'convnext_atto' or "
            "'convnext_atto.d2_in1k'), never a source such as hf-hub:, local-dir:, timm/ or a path"
        )
    try:
        import timm
    except ImportError:  # without timm (no torch extra) a name is only a label: nothing resolves it
        return name
    from faceverify.models.registry import register_architectures

    register_architectures()
    if not timm.is_model(name):
        raise ModelError(
            f"{source}: architecture {name!r} is not registered with timm or faceverify; "
            "`faceverify models` lists the curated names"
        )
    return name


def check_model_args(args: object, *, source: str | Path) -> dict[str, Any]:
    """The architecture arguments a file carries, if each is allowed and plain; else an error."""
    if not isinstance(args, Mapping):
        raise ModelError(f"{source}: model_args must be a mapping of names to values, not {args!r:.200}")
    for key, value in args.items():
        if key not in MODEL_ARGS:
            why = " (a loader argument: it makes timm load or fetch something)" if key in LOADER_ARGS else ""
            raise ModelError(
                f"{source}: model argument {key!r} is not allowed in a model file{why}; "
                f"allowed: {', '.join(sorted(MODEL_ARGS))}"
            )
        _check_value(f"model argument {key!r}", value, source=source)
    return dict(args)


def check_pretrained_cfg(cfg: object, *, source: str | Path) -> dict[str, Any]:
    """The kept fields (:data:`PRETRAINED_CFG_FIELDS`) of a file's ``pretrained_cfg``."""
    if not isinstance(cfg, Mapping):
        raise ModelError(f"{source}: pretrained_cfg must be a mapping of fields to values, not {cfg!r:.200}")
    kept = {key: value for key, value in cfg.items() if key in PRETRAINED_CFG_FIELDS}
    for key, value in kept.items():
        _check_value(f"pretrained_cfg field {key!r}", value, source=source)
    tag = kept.get("tag")  # part of the model name faceverify records, and reads back
    if tag is not None and not (isinstance(tag, str) and _TAG.fullmatch(tag)):
        raise ModelError(
            f"{source}: pretrained_cfg field 'tag' = {tag!r:.200} is not a plain tag "
            "(letters, digits, '_', '.', '-')"
        )
    return kept


def check_contract(data: object, *, source: str | Path) -> PreprocessConfig:
    """The preprocessing contract a file records, or an error naming the file and the field."""
    if not isinstance(data, Mapping):
        raise ModelError(f"{source}: the preprocessing contract must be a mapping, not {data!r:.200}")
    for key, value in data.items():
        _check_value(f"preprocessing field {key!r}", value, source=source)
    try:
        return PreprocessConfig.from_dict(data)
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{source}: its preprocessing contract cannot be used ({exc})") from exc


def _check_value(what: str, value: object, *, source: str | Path) -> None:
    """Plain values only: a scalar, or a short list of scalars (an image size, a mean)."""
    if isinstance(value, _SCALARS):
        return
    if (
        isinstance(value, (list, tuple))
        and len(value) <= MAX_ITEMS
        and all(isinstance(item, _SCALARS) for item in value)
    ):
        return
    raise ModelError(
        f"{source}: {what} = {value!r:.200} is not a plain value; allowed: a bool, number, "
        f"string or None, or a list of at most {MAX_ITEMS} of them"
    )
