"""Calibrated thresholds: chosen on scored pairs, stored with the model they were measured for.

``faceverify calibrate`` scores validation pairs, :func:`choose_threshold` picks the
threshold for a target false accept rate (or the equal error rate), and the result is
saved in a small JSON sidecar: next to local weights (``<weights file>.threshold.json``), or under the
faceverify data folder for hub weights and for weights an installed package holds (dlib's
``.dat`` in ``face-recognition-models``): the HF cache and site-packages are not ours to
write into (read-only in system installs, replaced by the next install).
``build_model`` loads it, so ``verify`` and identification use it by default.

A threshold only holds for the exact weights and preprocessing it was measured with:
the sidecar records the SHA-256 of the weights file and the contract's fingerprint, and
a sidecar that does not match is ignored with a warning instead of silently misleading.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify import __version__
from faceverify.compare.roc import (
    OperatingPoint,
    check_scores,
    equal_error_rate,
    needed_impostors,
    operating_point,
    point_at_far,
    roc_curve,
)
from faceverify.errors import ConfigError, MetricsError
from faceverify.paths import atomic_write_text, data_dir, timestamp
from faceverify.runtime.identity import ModelIdentity
from faceverify.runtime.threshold import Threshold, ThresholdSource

if TYPE_CHECKING:
    from faceverify.runtime.base import Embedder

log = logging.getLogger(__name__)
SUFFIX = ".threshold.json"


@dataclass(frozen=True)
class Calibration:
    """A threshold, how it was chosen, and what it was measured on."""

    threshold: float
    target: str  # "far=0.001" or "eer"
    far: float
    frr: float
    genuine: int
    impostor: int
    pairs_file: str
    model: str
    weights: str
    weights_sha256: str
    preprocess_fingerprint: str
    created: str
    faceverify_version: str = __version__
    tta: str = ""  # the augmentation its scores were measured with ("" none, "flip")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def identity(self) -> ModelIdentity:
        """The model this threshold was measured for (its embedding size is not recorded)."""
        return ModelIdentity.from_dict(self.to_dict())

    def as_threshold(self, source: ThresholdSource) -> Threshold:
        """This calibration as the threshold a model carries (from a sidecar: calibrated;
        carried by a training checkpoint: checkpoint)."""
        return Threshold(self.threshold, source, f"{self.target} on {self.pairs_file} ({self.created})")

    def describe(self) -> str:
        return (
            f"threshold {self.threshold:.4f} ({self.target}: FAR {self.far:.4g}, FRR {self.frr:.4g} "
            f"on {self.genuine} genuine and {self.impostor} impostor pairs of {self.pairs_file}, "
            f"{self.created})"
        )


def check_far(far: float | None) -> None:
    """A target false accept rate lies strictly between 0 and 1 (None: the EER point)."""
    if far is not None and not 0.0 < far < 1.0:
        raise ConfigError(f"target FAR {far!r} must be between 0 and 1, e.g. 1e-3")


def choose_threshold(scores: Any, labels: Any, *, far: float | None = None) -> tuple[OperatingPoint, str]:
    """The threshold for a target, as it performs on these pairs, and the target's name.

    Args:
        scores: cosine similarities of labelled pairs.
        labels: 1 for genuine pairs, 0 for impostor pairs.
        far: the most lenient threshold whose false accept rate is at most this; None
            chooses the equal error rate point.

    Raises:
        MetricsError: too few impostor pairs to measure ``far`` (at least 1/FAR needed).
    """
    check_far(far)
    s, y = check_scores(scores, labels)
    roc = roc_curve(s, y)
    if far is None:
        return operating_point(s, y, equal_error_rate(roc).threshold), "eer"
    impostors = int((y == 0).sum())
    point = point_at_far(roc, far, impostors)
    if point is None:
        raise MetricsError(
            f"FAR {far:g} cannot be calibrated on {impostors} impostor pairs; it needs at least "
            f"{needed_impostors(far)}: use more pairs or a larger FAR"
        )
    return operating_point(s, y, point.threshold), f"far={far:g}"


def new_calibration(
    model: Embedder, scores: Any, labels: Any, *, far: float | None, pairs_file: str
) -> Calibration:
    """Choose a threshold on ``model``'s scores of labelled pairs (:func:`choose_threshold`),
    stamped with the model's weights and preprocessing."""
    point, target = choose_threshold(scores, labels, far=far)
    y = np.asarray(labels)
    return Calibration(
        threshold=point.threshold,
        target=target,
        far=point.far,
        frr=point.frr,
        genuine=int((y == 1).sum()),
        impostor=int((y == 0).sum()),
        pairs_file=pairs_file,
        model=model.name,
        weights=model.weights_source,
        weights_sha256=model.weights_sha256(),
        preprocess_fingerprint=model.preprocess.fingerprint(),
        created=timestamp(),
        tta=model.tta,
    )


def calibration_path(model: Embedder) -> Path:
    """Where the calibration of ``model`` lives (augmented vectors have their own)."""
    if model.weights_file is None:
        raise ConfigError(
            "a model with random weights cannot carry a calibrated threshold; calibrate a model "
            "whose weights are saved (--weights PATH or a hub model)"
        )
    suffix = _suffix(model)
    if model.weights_source.startswith("hf-hub:"):
        safe = model.weights_source.removeprefix("hf-hub:").replace("/", "--")
        return data_dir() / "thresholds" / f"{safe}{suffix}"
    if _installed_by_a_package(model.weights_file):
        return data_dir() / "thresholds" / f"{model.name}--{model.weights_file.name}{suffix}"
    return _beside_the_weights(model)


def _beside_the_weights(model: Embedder) -> Path:
    assert model.weights_file is not None
    return model.weights_file.with_name(model.weights_file.name + _suffix(model))


def _suffix(model: Embedder) -> str:
    """Augmented vectors have their own calibration."""
    return f".threshold.{model.tta}.json" if model.tta else SUFFIX


def _installed_by_a_package(path: Path) -> bool:
    """Whether ``path`` lies in an installed package (site-packages, dist-packages)."""
    import sysconfig

    folders = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    resolved = path.resolve()
    return any(resolved.is_relative_to(Path(folder).resolve()) for folder in folders) or any(
        part in ("site-packages", "dist-packages") for part in resolved.parts
    )


def save_calibration(model: Embedder, calibration: Calibration) -> Path:
    """Store the calibration with the model and make it the model's threshold now."""
    path = calibration_path(model)
    atomic_write_text(path, json.dumps(calibration.to_dict(), indent=2) + "\n")
    model.threshold = calibration.as_threshold(ThresholdSource.CALIBRATED)
    return path


def carried_calibration(model: Embedder, entry: dict[str, Any] | None) -> Calibration | None:
    """The calibration a training checkpoint carries (``entry``), if it holds for ``model``.

    It was measured with the checkpoint's own weights, so only the preprocessing can
    differ: a model built with another input size or crop ignores it, with a warning.
    """
    if entry is None:
        return None
    try:
        calibration = Calibration(**entry)
    except TypeError as exc:
        log.warning("ignoring the checkpoint's unreadable calibration (%s); run faceverify calibrate", exc)
        return None
    if not calibration.identity.matches(model.identity(), only=("preprocess_fingerprint", "tta")):
        log.warning(
            "ignoring the threshold calibrated in training: it was measured with the checkpoint's own "
            "preprocessing (input size, crop...) and augmentation, not these; run faceverify calibrate "
            "with these settings"
        )
        return None
    return calibration


def load_calibration(model: Embedder) -> Calibration | None:
    """The stored calibration of ``model`` if there is one and it still applies."""
    if model.weights_file is None:
        return None
    path = calibration_path(model)
    if not path.is_file():
        path = _beside_the_weights(model)  # where earlier releases stored every calibration
        if not path.is_file():
            return None
        log.info("using the calibration %s; `faceverify calibrate` now stores it elsewhere", path)
    try:
        calibration = Calibration(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring unreadable calibration %s (%s); run faceverify calibrate again", path, exc)
        return None
    if not calibration.identity.matches(model.identity(), only=("preprocess_fingerprint", "tta")):
        log.warning(
            "ignoring calibrated threshold in %s: it was measured with other preprocessing (input size, "
            "crop...) or augmentation; calibrate again with these settings",
            path,
        )
        return None
    model.weights_sha256(refresh=True)  # the file may have been rewritten since it was hashed
    if not calibration.identity.matches(model.identity(), only=("weights_sha256",)):
        log.warning(
            "ignoring calibrated threshold in %s: the weights have changed since; calibrate again", path
        )
        return None
    return calibration
