"""``build_model``: from a name and a weights source to a ready embedder on a device.

The network comes from :mod:`faceverify.models`; here it is put in a runtime (PyTorch or
ONNX Runtime), moved to its device, and given its threshold
(:mod:`faceverify.runtime.threshold` says which one wins).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify.checks import check_choice
from faceverify.device import DeviceLike, resolve_device, resolve_device_name
from faceverify.errors import ConfigError, ModelError
from faceverify.extras import TORCH, require_torch, torch_installed
from faceverify.models.registry import DEFAULT_MODEL
from faceverify.runtime import BACKENDS
from faceverify.runtime.base import Embedder
from faceverify.runtime.threshold import Threshold, ThresholdSource, given, model_threshold
from faceverify.runtime.tta import with_tta

if TYPE_CHECKING:
    from faceverify.models.factory import LoadedNetwork
    from faceverify.models.spec import ModelSpec
    from faceverify.models.weights import WeightsLike
    from faceverify.runtime.torch_backend import EmbeddingModel

log = logging.getLogger(__name__)


def build_model(
    name: str | None = None,
    *,
    weights: WeightsLike = None,
    device: DeviceLike = None,
    input_size: int | Sequence[int] | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    threshold: float | None = None,
    channels_last: bool = True,
    cache_dir: str | None = None,
    model_args: dict[str, Any] | None = None,
    backend: str | None = None,
    face_template: str | None = None,
    pixel_mean: float | Sequence[float] | None = None,
    pixel_std: float | Sequence[float] | None = None,
    channel_order: str | None = None,
    tta: str | None = None,
) -> Embedder:
    """Build a face-embedding model: a pretrained CNN without its classification layer.

    Args:
        name: a timm model name. The default ``convnext_atto.d2_in1k`` is small and fast
            (320-dim embeddings, not 768: that is ConvNeXt-Tiny). ``faceverify models``
            lists curated choices per family (ResNet, VGG, Inception, DenseNet,
            EfficientNet, MobileNet, ConvNeXt); any timm name works, as do
            ``hf-hub:org/repo`` and ``local-dir:PATH``.
        weights: None downloads from the Hugging Face hub (cached; set HF_HUB_OFFLINE=1
            to stay offline once cached). A path to a ``.safetensors`` file or to a folder
            with ``model.safetensors`` (and optionally timm's ``config.json``) loads
            local weights. ``"random"`` initialises randomly (for training or tests).
        device: None or ``"auto"`` uses the GPU when present; ``"cpu"``, ``"cuda"``,
            ``"cuda:1"``, ``"mps"`` force one.
        input_size: override the network input size, e.g. 112 for small face crops; the
            default is the pretrained size (224 for most models). Smaller is faster.
        crop_pct: fraction of the resized image kept by the centre crop. The pretrained
            value (0.875 for ConvNeXt-Atto) suits photos; use 1.0 for tight face crops.
        interpolation: override the resize filter (``bicubic``, ``bilinear``...).
        threshold: a cosine threshold to carry. None takes the first of: the threshold
            ``faceverify calibrate`` stored for exactly these weights and preprocessing (a
            deliberate recalibration, e.g. on the user's own pairs, so it comes first); the
            threshold a faceverify training checkpoint carries (chosen on held-out pairs
            at the end of each validation); the network's published rule (dlib's); 0.5.
        channels_last: feed the network channels-last tensors (faster on GPUs and most CPUs).
        cache_dir: Hugging Face cache folder; None uses the standard one.
        model_args: extra architecture arguments (e.g. ``{"width": 32}`` for face_resnet).
        backend: ``"torch"`` runs the network in PyTorch (any device; a trainable
            ``nn.Module``; needs ``pip install 'faceverify[torch]'``). ``"onnxruntime"``
            runs its ONNX graph in ONNX Runtime on the CPU, faster than PyTorch there:
            dlib's network is written from dlib's own file, without PyTorch; any other
            network is exported once from PyTorch (cached on disk). ``"auto"`` (what the
            CLI uses) picks ONNX Runtime on a CPU when the network has a graph, PyTorch
            otherwise and on GPUs. None (default): ``"torch"`` when PyTorch is installed,
            else ``"onnxruntime"`` (the base install). A ``.onnx`` file as ``weights``
            always runs in ONNX Runtime.
        face_template, pixel_mean, pixel_std, channel_order: for an ONNX graph faceverify
            did not write (an ArcFace-family model: ``build_model("w600k_r50.onnx")``),
            how faces are cut out and pixels normalised, as it was trained: the default is
            the insightface convention (``arcface112`` chips, RGB, mean and std 127.5 in
            0-255 pixel units). The graph's input layout and size are read from it. Any
            other model carries its own contract and refuses these.
        tta: ``"flip"`` embeds each face with its mirror image (one pass of twice the
            batch) and keeps their normalised sum: steadier vectors for twice the work.
            Galleries and calibrations record it and refuse to mix such vectors with
            plain ones. None (default): no augmentation.

    Returns:
        An :class:`~faceverify.runtime.base.Embedder`: the PyTorch
        :class:`~faceverify.runtime.torch_backend.EmbeddingModel` in eval mode on the chosen
        device, or an :class:`~faceverify.runtime.onnx_backend.OnnxEmbedder`.

    Raises:
        ModelError: unknown name, or weights that do not fit the architecture.
        WeightsNotFoundError: the hub cannot be reached and no local weights were given;
            the message says how to supply them.
        DeviceError: the requested device does not exist here.
    """
    backend = backend or ("torch" if torch_installed() else "onnxruntime")
    check_choice("backend", backend, BACKENDS)
    if weights is None and _is_onnx_file(name):
        name, weights = None, name  # build_model("model.onnx"): the graph is the model
    inputs = {"face_template": face_template, "pixel_mean": pixel_mean, "pixel_std": pixel_std}
    inputs = {
        key: value for key, value in {**inputs, "channel_order": channel_order}.items() if value is not None
    }
    if _is_onnx_file(weights):
        return _onnx_file_embedder(Path(str(weights)), device, (threshold, tta), inputs)
    if inputs:
        raise ConfigError(
            f"{', '.join(inputs)} describe ONNX graphs faceverify did not write; "
            f"{name or 'this model'} carries its own preprocessing contract"
        )
    overrides = (input_size, crop_pct, interpolation, model_args)
    if _dlib_graph_serves(name, weights, backend, device, overrides):
        return _dlib_graph_model(weights, (threshold, tta))
    _require_torch_for(name, backend)
    import torch

    from faceverify.models.factory import load_network
    from faceverify.runtime.onnx_backend import apply_torch_threads

    apply_torch_threads()  # the service's --threads, set before PyTorch was loaded

    target = resolve_device(device)
    loaded = load_network(name, weights=weights, cache_dir=cache_dir, model_args=model_args)
    contract = loaded.contract.override(input_size=input_size, crop_pct=crop_pct, interpolation=interpolation)
    model = embedder_for(replace(loaded, contract=contract), channels_last=channels_last)
    model.eval().to(target)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    log.info("built %s (%d-dim) from %s on %s", model.name, model.embedding_dim, loaded.source, target)
    built = with_tta(_in_runtime(model, backend), tta)
    # resolved on what is returned: a threshold holds for these exact vectors (augmented or not)
    published = getattr(loaded.network, "cosine_threshold", None)
    built.threshold = given(threshold) if threshold is not None else _own_threshold(built, published, loaded)
    return built


def _require_torch_for(name: str | None, backend: str) -> None:
    """One line naming the extra (and dlib's network, which needs none) when torch is absent."""
    from faceverify.errors import MissingDependencyError
    from faceverify.models.dlib_spec import MODEL_NAME

    try:
        require_torch(f"model {name or DEFAULT_MODEL!r}" + (" in PyTorch" if backend == "torch" else ""))
    except MissingDependencyError as exc:
        if name is not None and name == MODEL_NAME:
            raise MissingDependencyError(
                f"{exc}; or drop backend 'torch': {MODEL_NAME} runs without it"
            ) from None
        raise MissingDependencyError(
            f"{exc}; or use dlib's face network, which runs without it: --model {MODEL_NAME} "
            f'(build_model("{MODEL_NAME}"))'
        ) from None


def _dlib_graph_serves(
    name: str | None, weights: WeightsLike, backend: str, device: DeviceLike, overrides: tuple[Any, ...]
) -> bool:
    """Whether dlib's network as a graph written from its own file is what was asked for:
    dlib's name and file, ONNX Runtime (or auto) on the CPU, nothing reshaped."""
    from faceverify.models.dlib_spec import MODEL_NAME
    from faceverify.runtime.dlib_onnx import is_dlib_weights

    if name != MODEL_NAME or not is_dlib_weights(weights) or backend == "torch":
        return False
    if any(value not in (None, {}) for value in overrides):
        if not torch_installed():
            raise ConfigError(
                f"{MODEL_NAME} runs as dlib made it (150-pixel chips, its own architecture); "
                f"input_size, crop_pct, interpolation and model_args need the torch extra: {TORCH.install}"
            )
        return False
    return resolve_device_name(device) == "cpu"


def _dlib_graph_model(weights: WeightsLike, decided: tuple[float | None, str | None]) -> Embedder:
    from faceverify.runtime.dlib_onnx import dlib_onnx_embedder

    threshold, tta = decided
    model = with_tta(dlib_onnx_embedder(None if weights is None else Path(str(weights))), tta)
    published = model.threshold.value
    model.threshold = given(threshold) if threshold is not None else _own_threshold(model, published)
    return model


def check_installed_for(spec: ModelSpec) -> None:
    """Raise now, in one line, when building ``spec`` needs an extra that is not installed:
    what a long-running command (the service) checks before it starts, not at its first request.

    Raises:
        MissingDependencyError: naming the extra to install (and, for PyTorch models, that
            dlib's network needs none).
    """
    name, weights = spec.model, spec.weights
    if _is_onnx_file(weights) or (weights is None and _is_onnx_file(name)):
        return
    backend = spec.backend or ("torch" if torch_installed() else "onnxruntime")
    overrides = (spec.input_size, spec.crop_pct, spec.interpolation, spec.model_args)
    if not _dlib_graph_serves(name, weights, backend, spec.device, overrides):
        _require_torch_for(name, backend)


def build_from_spec(spec: ModelSpec) -> Embedder:
    """The embedder ``spec`` describes: :func:`build_model` with the spec's fields."""
    options = spec.to_dict()
    return build_model(options.pop("model"), **options)


def _in_runtime(model: EmbeddingModel, backend: str) -> Embedder:
    """The model in the runtime asked for; ``auto`` falls back to PyTorch with one warning."""
    from faceverify.runtime import onnx_export

    if backend == "torch" or (backend == "auto" and model.device != "cpu"):
        return model
    if model.device != "cpu":
        raise ModelError(
            f"backend 'onnxruntime' runs on the CPU only, not on {model.device}; "
            "use backend='torch' for GPUs, or device='cpu'"
        )
    try:
        return onnx_export.onnx_embedder_for(model)
    except ModelError as exc:
        if backend == "onnxruntime":
            raise
        log.warning("%s; running it in PyTorch instead", exc)
        return model


def _is_onnx_file(weights: object) -> bool:
    return isinstance(weights, (str, Path)) and str(weights).endswith(".onnx")


def _onnx_file_embedder(
    path: Path, device: DeviceLike, decided: tuple[float | None, str | None], inputs: dict[str, Any]
) -> Embedder:
    """An ``.onnx`` file's embedder: faceverify's own graphs carry their contract, others
    get one from ``inputs`` (:mod:`faceverify.runtime.foreign_onnx`)."""
    from faceverify.compare.calibration import load_calibration
    from faceverify.runtime.foreign_onnx import foreign_embedder, input_options, is_foreign
    from faceverify.runtime.onnx_backend import load_onnx_embedder

    target = resolve_device_name(device if device is not None else "cpu")
    if target != "cpu":
        raise ModelError(f"an ONNX graph runs on the CPU only, not on {target}; use device='cpu'")
    if not path.is_file():
        raise ModelError(f"ONNX graph {path} not found")
    if is_foreign(path):
        graph = foreign_embedder(path, input_options(**inputs))
    elif inputs:
        raise ConfigError(
            f"{path} was written by faceverify and carries its own preprocessing contract; "
            f"drop {', '.join(inputs)}"
        )
    else:
        graph = load_onnx_embedder(path)
    threshold, tta = decided
    model = with_tta(graph, tta)
    sidecar = load_calibration(model)  # `faceverify calibrate` on the graph: beside it
    if threshold is not None:
        model.threshold = given(threshold)
    elif sidecar is not None:
        model.threshold = sidecar.as_threshold(ThresholdSource.CALIBRATED)
    return model


def embedder_for(
    loaded: LoadedNetwork, *, threshold: Threshold | None = None, channels_last: bool = True
) -> EmbeddingModel:
    """The PyTorch embedder running ``loaded.network`` where it is and as it is.

    ``build_model`` then moves it to its device for inference; training validates through
    it while the network keeps training.

    Args:
        loaded: the network and what the embedder reports about it (name, contract, weights).
        threshold: the threshold to carry (None: the default until one is resolved).
        channels_last: feed the network channels-last tensors.
    """
    from faceverify.runtime.torch_backend import EmbeddingModel

    return EmbeddingModel(
        loaded.network,
        name=loaded.name,
        preprocess=loaded.contract,
        weights_source=loaded.source,
        weights_file=loaded.file,
        threshold=threshold,
        channels_last=channels_last,
    )


def _own_threshold(
    model: Embedder, published: float | None, loaded: LoadedNetwork | None = None
) -> Threshold:
    """The model's threshold by :func:`~faceverify.runtime.threshold.model_threshold`'s
    precedence: a calibration for these weights, the checkpoint's, the published rule."""
    from faceverify.compare.calibration import carried_calibration, load_calibration

    sidecar = load_calibration(model)
    carried = carried_calibration(model, loaded.calibration) if loaded is not None else None
    chosen = model_threshold(
        calibrated=sidecar.as_threshold(ThresholdSource.CALIBRATED) if sidecar else None,
        checkpoint=carried.as_threshold(ThresholdSource.CHECKPOINT) if carried else None,
        published=published,
    )
    if chosen.source in (ThresholdSource.CALIBRATED, ThresholdSource.CHECKPOINT):
        log.info("using the threshold %s", chosen.describe())
    return chosen
