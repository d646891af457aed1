"""Embedding: inputs of any supported kind to float32 ``[N, D]`` embeddings, in batches.

Images (paths, bytes, PIL, arrays, uint8 tensors) are decoded and prepared (the
embedder's preprocessing contract) in a small thread pool while the previous batch runs
through the embedder, so decoding overlaps inference. Float tensors are taken as
already-preprocessed model input, exactly what ``timm`` models accept, and skip both
steps. Everything here goes through the :class:`~faceverify.runtime.base.Embedder`
interface, whichever runtime computes the numbers, in numpy: PyTorch is imported only
when the caller hands over tensors (then it is already loaded), so this runs on installs
without it.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.decode import describe_source, load_image
from faceverify.errors import BatchImageError, ConfigError, FailureKind, ImageError, InputError
from faceverify.photos import FaceOptions, PreparedFace, prepare_photo
from faceverify.vectors import l2_normalize

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from faceverify.faces.detect import Face
    from faceverify.runtime.base import Embedder

#: One input: a path, bytes, PIL image, numpy array or torch tensor; or a list of them.
EmbedInput = Any  # one item or a sequence of items; see compute_embedding
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class Failure:
    """One input that could not be embedded: its position, its name, why, and the error.

    Attributes:
        kind: what went wrong, for code to act on (``unreadable``, ``no_face``,
            ``several_faces``); ``reason`` is the sentence for people.
        error: the error itself (a :class:`~faceverify.errors.SeveralFacesError` holds
            the boxes of the faces found), to raise where one bad input fails the job.
    """

    index: int
    source: str
    reason: str
    kind: FailureKind = FailureKind.UNREADABLE
    error: ImageError | None = None

    @classmethod
    def of(cls, index: int, error: ImageError) -> Failure:
        return cls(index, error.source, error.reason, error.kind, error)

    def as_error(self) -> ImageError:
        """The error to raise for this input."""
        return self.error.renamed(self.source) if self.error else ImageError(self.source, self.reason)

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class EmbeddingResult:
    """Embeddings of the good inputs, and a report of the bad ones.

    Attributes:
        embeddings: float32 ``[M, D]`` numpy array, one row per good input (one per face
            with ``FaceOptions(several="all")``), in input order.
        indices: for each row, the position of its input in what was passed.
        sources: for each row, a printable name of its input (the path for files).
        faces: for each row, the detected face it embeds (box, landmarks), or None when
            the input was taken as it is (no detection).
        faces_found: for each row, how many faces its photo held (0 without detection).
        failures: the inputs that could not be used, and why.
        image_sha256: for each row, :func:`image_sha256` of its decoded image; filled only
            when ``embed_images(..., fingerprint=True)`` was asked (galleries use it).
    """

    embeddings: np.ndarray
    indices: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    faces: list[Face | None] = field(default_factory=list)
    faces_found: list[int] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    image_sha256: list[str] = field(default_factory=list)


def image_sha256(image: Image.Image) -> str:
    """The identity of an image by its decoded pixels, whatever file or form it came in."""
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def compute_embedding(
    model: Embedder,
    images: EmbedInput,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    normalize: bool = False,
    progress: bool | None = False,
    faces: FaceOptions | None = None,
) -> np.ndarray:
    """Embed one image or many; every input must be good.

    Args:
        model: an embedder, e.g. from :func:`faceverify.build_model`.
        images: a file path, the bytes of an encoded image, a PIL image, an RGB numpy
            array (H×W×3, or N×H×W×3 for a batch), a uint8 tensor of pixels
            (``[3, H, W]`` or ``[N, 3, H, W]``), model input that is already
            preprocessed (a float array or tensor, channels first: ``[3, H, W]`` or
            ``[N, 3, H, W]``, as ``model.prepare`` gives), or a list of any of these.
        batch_size: images per forward pass; 32-64 suits CPUs, 128-512 GPUs.
        normalize: L2-normalise each embedding (dot product then equals cosine).
        progress: show a progress bar on stderr; None shows it on a terminal only.
        faces: how faces are found in photos (:class:`~faceverify.photos.FaceOptions`).
            The default detects and aligns exactly when the model needs aligned faces
            (dlib's network) and embeds the largest face of a photo with several (with
            a warning); ``FaceOptions(several="all")`` embeds every face, and
            ``FaceOptions(detect=False)`` takes images as given crops.

    Returns:
        float32 ``[N, D]`` numpy array; a single image gives ``[1, D]``.

    Raises:
        ImageError: a single input is bad. BatchImageError: some inputs of a batch are
            bad; use :func:`embed_images` to keep the good ones. InputError: a tensor
            or array has the wrong rank, channel count or dtype.
    """
    result = embed_images(
        model, images, batch_size=batch_size, normalize=normalize, progress=progress, faces=faces
    )
    total = len(result.indices) + len(result.failures)
    if len(result.failures) == 1 and total == 1:
        raise result.failures[0].as_error()
    if result.failures:
        raise BatchImageError([f.as_error() for f in result.failures], total)
    return result.embeddings


def embed_images(
    model: Embedder,
    images: EmbedInput,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    normalize: bool = False,
    progress: bool | None = False,
    workers: int | None = None,
    faces: FaceOptions | None = None,
    fingerprint: bool = False,
    found: Sequence[list[Face] | None] | None = None,
) -> EmbeddingResult:
    """Embed what can be embedded and report the rest; bad inputs never lose good ones.

    Takes the same inputs and options as :func:`compute_embedding`. ``workers`` sets the
    decoding threads (default: up to 4). ``fingerprint`` also hashes each decoded image
    (``result.image_sha256``) in those threads, so the same photo is recognised whatever
    file it came in. ``found`` gives, per image, the faces already found in it (e.g. by
    :func:`faceverify.faces.detect_faces`, then chosen by the user), so the detector does
    not run again; None in it detects that image as usual. Tensor-shape errors still
    raise, since they concern the whole input rather than one image.
    """
    if batch_size < 1:
        raise ConfigError(f"batch size {batch_size!r} must be at least 1")
    ready, items = _classify(images)
    if ready is not None:
        if fingerprint:
            raise InputError("preprocessed float tensors have no image to fingerprint; pass the images")
        result = _embed_ready(model, ready, batch_size)
    else:
        if found is not None and len(found) != len(items):
            raise InputError(f"found= holds {len(found)} entries for {len(items)} images; give one per image")
        options = _Options(faces or FaceOptions(), fingerprint, list(found) if found is not None else None)
        result = _embed_items(model, items, batch_size, progress, workers, options)
    if normalize and len(result.embeddings):
        result.embeddings = l2_normalize(result.embeddings)
    return result


def _is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch: a caller holding one
    has imported it already."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _is_model_input(value: Any) -> bool:
    """A float array channels first, ``[3, H, W]`` or ``[N, 3, H, W]`` (what ``model.prepare``
    gives): model-ready input, as float tensors are. Float *images* are channels last."""
    return (
        isinstance(value, np.ndarray)
        and value.ndim in (3, 4)
        and np.issubdtype(value.dtype, np.floating)
        and value.shape[-3] == 3
        and value.shape[-1] != 3
    )


def _classify(images: EmbedInput) -> tuple[np.ndarray | None, list[Any]]:
    """Split inputs into model-ready float input or a list of decodable items."""
    if _is_tensor(images):
        return _classify_tensor(images)
    if _is_model_input(images):
        batch = np.ascontiguousarray(images[None] if images.ndim == 3 else images, dtype=np.float32)
        if not np.isfinite(batch).all():
            raise InputError("array holds NaN or infinite values")
        return batch, []
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return None, list(images)
    if not isinstance(images, (list, tuple)):
        return None, [images]
    if images and all(_is_model_input(x) and x.ndim == 3 for x in images):  # prepare()'s outputs
        shapes = {tuple(x.shape) for x in images}
        if len(shapes) != 1:
            raise InputError(f"prepared arrays in one list must share a shape; got {sorted(shapes)}")
        return _classify(np.stack(images))
    floats = [_is_tensor(x) and x.is_floating_point() for x in images]
    if images and all(floats):
        shapes = {tuple(x.shape) for x in images}
        if len(shapes) != 1:
            raise InputError(f"float tensors in one list must share a shape; got {sorted(shapes)}")
        import torch

        return _classify_tensor(torch.stack(list(images)))
    if any(floats):
        raise InputError(
            "a list mixes float tensors (preprocessed model input) with images; embed them in separate calls"
        )
    items: list[Any] = []
    for item in images:
        items.extend(_classify_tensor(item)[1] if _is_tensor(item) else [item])
    return None, items


def _classify_tensor(tensor: torch.Tensor) -> tuple[np.ndarray | None, list[Any]]:
    import torch  # loaded already: the caller handed over a tensor

    if tensor.dim() not in (3, 4):
        raise InputError(
            f"tensor of shape {tuple(tensor.shape)} has rank {tensor.dim()}; expected "
            "[3, H, W] for one image or [N, 3, H, W] for a batch"
        )
    batch = tensor.unsqueeze(0) if tensor.dim() == 3 else tensor
    if tensor.dtype == torch.uint8:
        if batch.shape[1] not in (1, 3, 4):
            raise InputError(_channels_message(batch, "1, 3 or 4"))
        pixels = batch.detach().cpu().permute(0, 2, 3, 1).numpy()
        return None, list(pixels)
    if not tensor.is_floating_point():
        raise InputError(
            f"tensor dtype {tensor.dtype} is not supported; use a float tensor of preprocessed "
            "model input, or uint8 pixels"
        )
    if batch.shape[1] != 3:
        raise InputError(_channels_message(batch, "3"))
    # checked in numpy: a torch reduction wakes torch's worker threads, which cost more
    # than the check when ONNX Runtime runs the model (docs/benchmarks.md, ONNX Runtime overhead)
    array = np.ascontiguousarray(batch.detach().cpu().float().numpy())
    if not np.isfinite(array).all():
        raise InputError("tensor holds NaN or infinite values")
    return array, []


def _channels_message(batch: torch.Tensor, valid: str) -> str:
    return (
        f"tensor of shape {tuple(batch.shape)} has {batch.shape[1]} channels in dimension "
        f"-3; expected {valid} (channels first: [N, C, H, W])"
    )


def _embed_ready(model: Embedder, batch: np.ndarray, batch_size: int) -> EmbeddingResult:
    rows = [model.embed(batch[i : i + batch_size]) for i in range(0, len(batch), batch_size)]
    count = len(batch)
    return EmbeddingResult(
        embeddings=np.concatenate(rows),
        indices=list(range(count)),
        sources=[f"<tensor[{i}]>" for i in range(count)],
        faces=[None] * count,
        faces_found=[0] * count,
    )


def _embed_items(
    model: Embedder,
    items: list[Any],
    batch_size: int,
    progress: bool | None,
    workers: int | None,
    options: _Options,
) -> EmbeddingResult:
    from tqdm.auto import tqdm

    result = EmbeddingResult(embeddings=np.empty((0, model.embedding_dim), dtype=np.float32))
    rows: list[np.ndarray] = []
    show = progress if progress is not None else len(items) > batch_size and sys.stderr.isatty()
    bar = tqdm(total=len(items), unit="img", desc="embedding", disable=not show, file=sys.stderr)
    threads = workers or min(4, os.cpu_count() or 1)
    with bar, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="faceverify-decode") as pool:
        for chunk in _prepared_chunks(items, model, options, pool, batch_size):
            good = [(i, face, h) for i, done, h in chunk if not isinstance(done, Failure) for face in done]
            result.failures.extend(f for _, f, _ in chunk if isinstance(f, Failure))
            for start in range(0, len(good), batch_size):  # all faces of a group photo may exceed it
                part = good[start : start + batch_size]
                rows.append(model.embed(np.stack([face.tensor for _, face, _ in part])))
                result.indices.extend(i for i, _, _ in part)
                result.faces.extend(face.face for _, face, _ in part)
                result.faces_found.extend(face.faces_found for _, face, _ in part)
                result.image_sha256.extend(h for _, _, h in part if h is not None)
            bar.update(len(chunk))
    result.sources = [describe_source(items[i]) for i in result.indices]
    if rows:
        result.embeddings = np.concatenate(rows)
    return result


@dataclass(frozen=True)
class _Options:
    """How each input is prepared in the decoding threads."""

    faces: FaceOptions
    fingerprint: bool
    found: list[list[Face] | None] | None = None


#: An input's position, its model-ready faces (or why it has none) and its fingerprint.
Prepared = tuple[int, list[PreparedFace] | Failure, str | None]


def _prepared_chunks(
    items: list[Any], model: Embedder, options: _Options, pool: ThreadPoolExecutor, batch_size: int
) -> Iterator[list[Prepared]]:
    """Yield decoded chunks in order, keeping the next chunk decoding in the background."""
    starts = iter(range(0, len(items), batch_size))
    pending: deque[list[Future[Prepared]]] = deque()

    def submit() -> None:
        start = next(starts, None)
        if start is not None:
            chunk = range(start, min(start + batch_size, len(items)))
            pending.append([pool.submit(_prepare, i, items[i], model, options) for i in chunk])

    submit()
    submit()
    while pending:
        futures = pending.popleft()
        submit()
        yield [future.result() for future in futures]


def _prepare(index: int, item: Any, model: Embedder, options: _Options) -> Prepared:
    try:
        image = load_image(item)
        digest = image_sha256(image) if options.fingerprint else None
        known = options.found[index] if options.found is not None else None
        return index, prepare_photo(model, image, options.faces, describe_source(item), found=known), digest
    except ImageError as exc:  # from decoding or from the embedder, which cannot name the input
        return index, Failure.of(index, exc.renamed(describe_source(item))), None
