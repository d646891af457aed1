"""The decision threshold and where it came from: one resolver, one set of source names.

Two faces match when their cosine similarity reaches the threshold. Which threshold
applies is decided here and nowhere else, first match wins:

1. ``given``: the caller passed one (``--threshold``, ``threshold=``, a query parameter);
2. ``calibrated``: ``faceverify calibrate`` stored one for exactly these weights and this
   preprocessing (a deliberate recalibration, on the user's own pairs, so it comes first);
3. ``checkpoint``: a faceverify training checkpoint carries the one chosen on its held-out
   pairs;
4. ``published``: the network comes with its authors' rule (dlib's distance 0.6, as a
   cosine);
5. ``default``: 0.5, when nothing better is known; every answer then says so.

Steps 2-5 are resolved once, when the model is built (:func:`model_threshold`); step 1
on every call (:func:`resolve_threshold`). Every answer that shows a threshold shows its
source too, so nobody has to guess where a number came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faceverify.checks import check_threshold
from faceverify.errors import Choice

if TYPE_CHECKING:
    from faceverify.runtime.base import Embedder

#: The threshold used when nothing better is known.
DEFAULT_THRESHOLD = 0.5


class ThresholdSource(Choice):
    """Where a threshold came from, in order of precedence (see the module docstring)."""

    GIVEN = "given"
    CALIBRATED = "calibrated"
    CHECKPOINT = "checkpoint"
    PUBLISHED = "published"
    DEFAULT = "default"


@dataclass(frozen=True)
class Threshold:
    """A cosine threshold and its source.

    Attributes:
        value: faces at or above it are judged the same person.
        source: where it came from (:class:`ThresholdSource`).
        detail: how it was chosen, for people (e.g. ``far=0.001 on pairs.csv``).
    """

    value: float
    source: ThresholdSource
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", check_threshold(self.value))
        object.__setattr__(self, "source", ThresholdSource(self.source))

    def __float__(self) -> float:
        return self.value

    def to_fields(self) -> dict[str, Any]:
        """``{"threshold": value, "threshold_source": source}``: how answers show it."""
        return {"threshold": self.value, "threshold_source": self.source.value}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"value": self.value, "source": self.source.value}
        return {**data, "detail": self.detail} if self.detail else data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Threshold:
        return cls(float(data["value"]), ThresholdSource(data["source"]), str(data.get("detail", "")))

    def describe(self) -> str:
        """``0.4312 (calibrated: far=0.001 ...)``: for log lines and summaries."""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.value:g} ({self.source.value}{detail})"


#: What a model carries when nothing better is known.
DEFAULT = Threshold(DEFAULT_THRESHOLD, ThresholdSource.DEFAULT)


def given(value: float) -> Threshold:
    """A threshold the caller chose."""
    return Threshold(check_threshold(value), ThresholdSource.GIVEN)


def resolve_threshold(explicit: float | Threshold | None, model: Embedder | None) -> Threshold:
    """The threshold a decision uses: ``explicit`` if given, else the model's own (which
    :func:`model_threshold` resolved when it was built), else the default."""
    if isinstance(explicit, Threshold):
        return explicit
    if explicit is not None:
        return given(explicit)
    return model.threshold if model is not None else DEFAULT


def model_threshold(
    *,
    calibrated: Threshold | None = None,
    checkpoint: Threshold | None = None,
    published: float | None = None,
) -> Threshold:
    """The threshold a built model carries: the first that exists of a calibration for
    these exact weights, the checkpoint's own, the network's published rule, the default."""
    if calibrated is not None:
        return calibrated
    if checkpoint is not None:
        return checkpoint
    if published is not None:
        return Threshold(published, ThresholdSource.PUBLISHED, "the network authors' rule")
    return DEFAULT
