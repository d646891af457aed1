"""Evaluation and calibration runs: from files to a report or a stored threshold."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify import __version__
from faceverify.compare.calibration import Calibration, check_far, new_calibration
from faceverify.compare.roc import operating_point
from faceverify.errors import ConfigError
from faceverify.evaluate.metrics import verification_metrics
from faceverify.evaluate.pairs import PairSet, read_pairs
from faceverify.evaluate.scoring import ScoredPairs, score_pairs
from faceverify.paths import timestamp
from faceverify.runtime.threshold import resolve_threshold

if TYPE_CHECKING:
    from faceverify.photos import FaceOptions
    from faceverify.runtime.base import Embedder


def evaluate(
    model: Embedder,
    *,
    pairs: PairSet | None = None,
    gallery: str | Path | None = None,
    probes: str | Path | None = None,
    threshold: float | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
    faces: FaceOptions | None = None,
) -> tuple[dict[str, Any], ScoredPairs | None]:
    """Verification metrics on ``pairs`` and/or identification on ``gallery``/``probes``.

    Args:
        threshold: the operating threshold to report FAR/FRR and open-set rates at;
            None uses the model's own; the report names its source.
        faces: how faces are found in the images (:class:`~faceverify.photos.FaceOptions`);
            the default detects and aligns exactly when the model needs aligned faces.

    Returns:
        The JSON-ready report, and the scored pairs (for plots) when pairs were given.
    """
    if pairs is None and (gallery is None or probes is None):
        raise ConfigError("nothing to evaluate: give a pairs file, or both a gallery and a probes folder")
    operating = resolve_threshold(threshold, model)
    chosen = operating.value
    report: dict[str, Any] = {
        "faceverify_version": __version__,
        "created": timestamp(),
        "model": model.describe(),
        "threshold": operating.to_dict(),
        "problems": [],
    }
    scored = None
    if pairs is not None:
        _require_labels(pairs)  # before the slow part
        scored = score_pairs(model, pairs, batch_size=batch_size, progress=progress, faces=faces)
        report["inputs"] = {
            "pairs_file": pairs.source,
            "format": pairs.format,
            "duplicates_ignored": pairs.duplicates,
        }
        report["verification"] = verification_metrics(scored.scores, scored.labels)
        report["operating_point"] = operating_point(scored.scores, scored.labels, chosen).to_dict()
        report["problems"] += scored.problems
    if gallery is not None and probes is not None:
        from faceverify.evaluate.identification import identification_metrics

        identification = identification_metrics(
            model, gallery, probes, threshold=chosen, batch_size=batch_size, progress=progress, faces=faces
        )
        report["problems"] += identification.pop("problems")
        report["identification"] = identification
    return report, scored


def calibrate(
    model: Embedder,
    pairs: PairSet,
    *,
    far: float | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
    faces: FaceOptions | None = None,
) -> tuple[Calibration, list[str]]:
    """Score labelled pairs and choose the threshold that gives FAR ``far`` (or the EER point
    when None), as :func:`faceverify.compare.calibration.choose_threshold` does.

    Returns:
        The calibration (not yet saved: see :func:`faceverify.compare.calibration.save_calibration`)
        and the problems met in the pairs file.
    """
    check_far(far)  # before the slow part
    _require_labels(pairs)
    scored = score_pairs(model, pairs, batch_size=batch_size, progress=progress, faces=faces)
    pairs_file = str(Path(pairs.source).resolve())
    calibration = new_calibration(model, scored.scores, scored.labels, far=far, pairs_file=pairs_file)
    return calibration, scored.problems


def _require_labels(pairs: PairSet) -> None:
    if not pairs.labelled:
        raise ConfigError(
            f"pairs in '{pairs.source}' have no labels (0 or 1 after the two paths); metrics and "
            "calibration need labelled pairs"
        )


__all__ = ["calibrate", "evaluate", "read_pairs"]
