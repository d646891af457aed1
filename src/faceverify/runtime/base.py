"""The embedder interface: what every later step (embed, compare, gallery, evaluate) uses.

An :class:`Embedder` turns model-ready input into embeddings and says what it is: its
preprocessing contract, its embedding size, the identity of its weights, its threshold
and its device. ``faceverify.embed`` decodes images and drives batches through
:meth:`Embedder.prepare` and :meth:`Embedder.embed`; galleries and calibrations record
:meth:`Embedder.identity`. Nothing there knows which runtime computes the numbers
(PyTorch, ONNX Runtime), so another one (a model that detects and aligns faces itself) is
a new subclass, not a change there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from faceverify.preprocess import PreprocessConfig
    from faceverify.runtime.identity import ModelIdentity
    from faceverify.runtime.threshold import Threshold


class Embedder(ABC):
    """Model-ready input to float32 ``[N, D]`` embeddings, with what produced them.

    Attributes:
        name: the model name (e.g. ``convnext_atto.d2_in1k``), recorded in every artifact.
        embedding_dim: length of each embedding.
        preprocess: the contract that makes an RGB image model-ready input.
        weights_source: where the weights came from (hub repo, path, or ``random``).
        weights_file: the file the weights were read from; None for random weights.
        threshold: the cosine threshold it decides with, and its source (calibrated,
            from a checkpoint, the network's published rule, or the default 0.5); see
            :mod:`faceverify.runtime.threshold`.
    """

    name: str
    embedding_dim: int
    preprocess: PreprocessConfig
    weights_source: str
    weights_file: Path | None
    threshold: Threshold
    #: the test-time augmentation its vectors carry ("" none, "flip": see ``runtime.tta``)
    tta: str = ""

    @abstractmethod
    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embed ``[N, 3, H, W]`` float32 input that already follows the contract.

        Arrays, not tensors, so that every runtime (ONNX Runtime without PyTorch
        installed, PyTorch on a GPU) takes and gives the same thing.

        Returns:
            float32 ``[N, D]``, not normalised.

        Raises:
            InputError: the network cannot take input of this shape.
            DeviceMemoryError: the device ran out of memory for this batch.
        """

    @property
    @abstractmethod
    def device(self) -> str:
        """Where the computation runs: ``cpu``, ``cuda:0``, ``mps``."""

    def prepare(self, image: Image.Image) -> np.ndarray:
        """One decoded RGB image as model-ready float32 ``[3, H, W]`` input: the contract applied.

        Called from several threads at once. An embedder that finds and aligns faces
        itself overrides this, raising :class:`~faceverify.errors.ImageError` for an
        image it cannot use: the image is reported under its input's name (whatever
        ``source`` the error gives) and the batch goes on.
        """
        return self.preprocess(image)

    def weights_sha256(self, *, refresh: bool = False) -> str:
        """The identity galleries and calibrations pin: SHA-256 of the weights file.

        '' for random weights. Computed once unless ``refresh`` (the file may have been
        rewritten since). An embedder running an exported copy of some weights (an ONNX
        graph) must report the hash of the weights it was exported from, so that what was
        enrolled or calibrated with one is accepted by the other.
        """
        if self.weights_file is None:
            return ""
        cached: str | None = getattr(self, "_weights_sha256", None)
        if refresh or cached is None:
            from faceverify.paths import file_sha256

            cached = file_sha256(self.weights_file)
            self._weights_sha256 = cached
        return cached

    def identity(self) -> ModelIdentity:
        """What galleries, calibrations and caches compare to accept this model's vectors."""
        from faceverify.runtime.identity import ModelIdentity

        return ModelIdentity.of(self)

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts saved next to every artifact this embedder produces."""
        return {
            **self.identity().to_dict(),
            "weights": self.weights_source,
            "preprocess": self.preprocess.to_dict(),
            **self.threshold.to_fields(),
        }


class WrappedEmbedder(Embedder):
    """An embedder that changes how ``inner`` embeds (batching, augmentation), not what it
    is: it reports ``inner``'s name, contract, weights, threshold and augmentation, and
    prepares images as ``inner`` does. Subclasses override :meth:`embed`."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name, self.embedding_dim = inner.name, inner.embedding_dim
        self.preprocess, self.threshold = inner.preprocess, inner.threshold
        self.weights_source, self.weights_file = inner.weights_source, inner.weights_file
        self.tta = inner.tta

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return self.inner.embed(batch)

    @property
    def device(self) -> str:
        return self.inner.device

    def prepare(self, image: Image.Image) -> np.ndarray:
        return self.inner.prepare(image)

    def weights_sha256(self, *, refresh: bool = False) -> str:
        return self.inner.weights_sha256(refresh=refresh)
