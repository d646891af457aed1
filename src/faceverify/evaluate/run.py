"""Evaluation and calibration runs: from files to a report or a stored threshold.

An evaluation's headline figures count every pair of the file: a pair whose image could
not be embedded is a non-match at the lowest score (:data:`~faceverify.evaluate.scoring.FAILED_SCORE`),
because leaving it out would reward a model for failing on the hard faces. The figures on
the usable pairs alone follow, for comparison with tools that report those.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify import __version__
from faceverify.compare.calibration import Calibration, check_far, new_calibration
from faceverify.compare.roc import check_scores
from faceverify.errors import ConfigError
from faceverify.evaluate.figures import check_group_columns, failed_pairs, figures, group_figures
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
    by: Sequence[str] = (),
) -> tuple[dict[str, Any], ScoredPairs | None]:
    """Verification metrics on ``pairs`` and/or identification on ``gallery``/``probes``.

    Verification gives ``verification`` (all pairs, failed ones counted as non-matches),
    ``verification_usable`` (the pairs both of whose images embedded), ``failed_pairs``
    (how many failed, by kind) and, with ``by``, ``by[column][value]``: the figures of
    ``verification`` for each group of pairs.

    Args:
        threshold: the operating threshold to report FAR/FRR and open-set rates at;
            None uses the model's own; the report names its source.
        faces: how faces are found in the images (:class:`~faceverify.photos.FaceOptions`);
            the default detects and aligns exactly when the model needs aligned faces.
        by: CSV columns (``pairs.columns``) to report every figure per value of.

    Returns:
        The JSON-ready report, and the scored pairs (for plots) when pairs were given.
    """
    if pairs is None and (gallery is None or probes is None):
        raise ConfigError("nothing to evaluate: give a pairs file, or both a gallery and a probes folder")
    if by and pairs is None:
        raise ConfigError("grouping by a column needs a CSV pairs file; identification has no columns")
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
        columns = check_group_columns(pairs, by)
        scored = score_pairs(model, pairs, batch_size=batch_size, progress=progress, faces=faces)
        report["inputs"] = {
            "pairs_file": pairs.source,
            "format": pairs.format,
            "duplicates_ignored": pairs.duplicates,
        }
        report.update(_verification(scored, chosen, columns))
        report["problems"] += scored.problems
    if gallery is not None and probes is not None:
        from faceverify.evaluate.identification import identification_metrics

        identification = identification_metrics(
            model, gallery, probes, threshold=chosen, batch_size=batch_size, progress=progress, faces=faces
        )
        report["problems"] += identification.pop("problems")
        report["identification"] = identification
    return report, scored


def _verification(scored: ScoredPairs, threshold: float, by: list[str]) -> dict[str, Any]:
    counted = scored.counted()
    check_scores(counted.scores, counted.labels)  # a file of one class has no ROC: an error, as ever
    blocks: dict[str, Any] = {
        "verification": figures(counted.scores, counted.labels, threshold, failed=len(scored.failed)),
        "verification_usable": figures(scored.scores, scored.labels, threshold),
        "failed_pairs": failed_pairs(scored),
    }
    if by:
        blocks["by"] = {column: group_figures(counted, column, threshold) for column in by}
    return blocks


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

    Only the usable pairs count here, unlike :func:`evaluate`'s headline: a pair whose image
    failed has no score for a threshold to fall above or below, and its stand-in score
    (-1) would count a failed impostor pair as rejected at every threshold, so a target FAR
    would be met by a looser threshold than the faces the model does see warrant.

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
