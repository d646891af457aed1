"""Which model made a vector: the one identity galleries, calibrations and caches compare.

Vectors of two models are not comparable, and a threshold holds only for the weights and
preprocessing it was measured with. :class:`ModelIdentity` is what must be equal for
either to carry over: the model's name, its embedding size, the SHA-256 of its weights
and the fingerprint of its preprocessing contract. An ONNX graph exported from some
weights reports the hash of those weights, so what one runtime enrolled or calibrated the
other accepts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faceverify.runtime.base import Embedder


@dataclass(frozen=True)
class ModelIdentity:
    """What makes two embedders interchangeable.

    Attributes:
        model: the model's name (e.g. ``dlib_resnet_v1``).
        embedding_dim: the length of its vectors.
        weights_sha256: SHA-256 of its weights file ('' for random weights).
        preprocess_fingerprint: :meth:`PreprocessConfig.fingerprint` of its contract.
        tta: the test-time augmentation of its vectors ("" none, "flip").
    """

    model: str
    embedding_dim: int
    weights_sha256: str
    preprocess_fingerprint: str
    tta: str = ""

    @classmethod
    def of(cls, embedder: Embedder) -> ModelIdentity:
        return cls(
            model=embedder.name,
            embedding_dim=embedder.embedding_dim,
            weights_sha256=embedder.weights_sha256(),
            preprocess_fingerprint=embedder.preprocess.fingerprint(),
            tta=embedder.tta,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelIdentity:
        """The identity inside a record (a gallery manifest, a calibration); extra keys
        are the record's own and are ignored, missing ones read as unknown."""
        return cls(
            model=str(data.get("model", "")),
            embedding_dim=int(data.get("embedding_dim") or 0),
            weights_sha256=str(data.get("weights_sha256", "")),
            preprocess_fingerprint=str(data.get("preprocess_fingerprint", "")),
            tta=str(data.get("tta", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.tta:
            del data["tta"]  # so records made without augmentation keep their shape
        return data

    def differences(self, other: ModelIdentity, *, only: tuple[str, ...] | None = None) -> list[str]:
        """The fields (of ``only``, default all) in which ``other`` differs."""
        names = only if only is not None else tuple(f.name for f in fields(self))
        return [name for name in names if getattr(self, name) != getattr(other, name)]

    def matches(self, other: ModelIdentity, *, only: tuple[str, ...] | None = None) -> bool:
        """Whether ``other`` is the same model (in the fields of ``only``, default all)."""
        return not self.differences(other, only=only)

    def describe_differences(self, other: ModelIdentity, here: str, there: str) -> str:
        """``model: here 'a' vs there 'b', ...``: for error messages."""
        return ", ".join(
            f"{name}: {here} {getattr(self, name)!r} vs {there} {getattr(other, name)!r}"
            for name in self.differences(other)
        )
