"""Every checkpoint carries the threshold calibrated for it.

A trained network's cosine scores have their own scale (a small set's impostors may well
score 0.6), so the fixed 0.5 of an uncalibrated model can call two strangers the same
person. Each time rank 0 validates, the run's calibration pairs are scored with the
network as it is now, a threshold is chosen on them for ``calibrate.far`` (the equal error
rate point when there are too few impostor pairs to measure that FAR), and the result goes
into the checkpoint written next, its metrics row and its log line.

The calibration pairs are ``data.pairs`` when the run has a labelled pairs file; otherwise
every pair of images of identities held out from training (:func:`held_out_identities`):
people the classifier never saw, as those the model will be used on.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.errors import ConfigError, MetricsError
from faceverify.train.config import TrainConfig

if TYPE_CHECKING:
    from faceverify.compare.calibration import Calibration
    from faceverify.evaluate.pairs import PairSet
    from faceverify.preprocess import PreprocessConfig
    from faceverify.runtime.base import Embedder

log = logging.getLogger(__name__)
#: What a checkpoint's calibration names as its weights: the file that carries it.
CARRIER = "this checkpoint"


def held_out_identities(config: TrainConfig) -> list[str]:
    """The identities of the training folder kept out of training, to calibrate on.

    ``calibrate.holdout_identities`` when given (they must exist); none when the run has a
    ``data.pairs`` file or ``calibrate.holdout`` is 0; otherwise ``calibrate.holdout`` of
    them (at least ``holdout_min``, at most ``holdout_max``), drawn with the run's seed so
    that every process of a distributed run, and a resumed run, holds out the same ones.
    """
    settings = config.calibrate
    folder = Path(config.data.root) / config.data.train_dir
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if settings.holdout_identities is not None:
        chosen = sorted(set(settings.holdout_identities))
        missing = [name for name in chosen if name not in names]
        if missing:
            raise ConfigError(
                f"calibrate.holdout_identities names {missing[:3]}, not identity folders of '{folder}'; "
                "list folder names, or leave it null to draw them by seed"
            )
        if len(names) - len(chosen) < 2:
            raise ConfigError(
                f"calibrate.holdout_identities holds out {len(chosen)} of {len(names)} identities; "
                "at least 2 must remain to train on"
            )
        return chosen
    if config.data.pairs or settings.holdout == 0 or not names:
        return []
    count = round(settings.holdout * len(names))
    count = min(max(count, settings.holdout_min), settings.holdout_max)
    if count > len(names) - count:
        log.warning(
            "%d identities are too few to hold %d out for calibration and train on the rest: checkpoints "
            "will carry no threshold. Give a labelled data.pairs file, or lower calibrate.holdout_min",
            len(names),
            count,
        )
        return []
    return sorted(random.Random(config.seed).sample(names, count))


@dataclass
class CalibrationPairs:
    """The labelled pairs a run calibrates on (and measures its validation AUC with).

    Either a pairs file read from ``data.pairs``, or images of held-out identities with
    the index of the person each shows (every pair of them is used). Built on rank 0 only,
    by :func:`calibration_pairs`.
    """

    description: str
    pairs: PairSet | None = None
    images: list[Path] = field(default_factory=list)
    people: list[int] = field(default_factory=list)
    _reported: bool = field(default=False, repr=False)

    def score(self, probe: Embedder, *, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine scores of the pairs with the network as it is now, and their labels."""
        if self.pairs is not None:
            from faceverify.evaluate.scoring import score_pairs

            scored = score_pairs(probe, self.pairs, batch_size=batch_size, progress=False)
            return scored.scores, scored.labels
        from faceverify.embed import embed_images

        result = embed_images(probe, [str(p) for p in self.images], batch_size=batch_size, normalize=True)
        if result.failures and not self._reported:  # the same files fail every epoch: say it once
            from faceverify.evaluate.report import log_problems

            log_problems(log, [str(f) for f in result.failures], context="held-out images: ")
            self._reported = True
        vectors = result.embeddings.astype(np.float64)
        who = np.asarray(self.people, dtype=np.int64)[result.indices]
        first, second = np.triu_indices(len(who), k=1)
        scores = np.einsum("ij,ij->i", vectors[first], vectors[second])
        return scores, (who[first] == who[second]).astype(np.int8)


def calibration_pairs(config: TrainConfig, held_out: list[str]) -> CalibrationPairs | None:
    """The run's calibration pairs: ``data.pairs``, else all pairs over held-out images."""
    root = Path(config.data.root)
    if config.data.pairs:
        from faceverify.evaluate.pairs import read_pairs
        from faceverify.evaluate.report import log_problems

        pairs = read_pairs(root / config.data.pairs, root)
        log_problems(log, pairs.problems, context="validation pairs: ")
        return CalibrationPairs(config.data.pairs, pairs=pairs)
    if not held_out:
        log.warning(
            "no data.pairs and no held-out identities: checkpoints carry no calibrated threshold "
            "(verify falls back to 0.5); run 'faceverify calibrate' on the trained model"
        )
        return None
    images, people = _held_out_images(config, held_out)
    return CalibrationPairs(f"{len(held_out)} held-out identities", images=images, people=people)


def _held_out_images(config: TrainConfig, held_out: list[str]) -> tuple[list[Path], list[int]]:
    """Up to ``images_per_identity`` images of each, from the training then validation folders."""
    from faceverify.decode import iter_image_paths

    root = Path(config.data.root)
    folders = [root / config.data.train_dir] + ([root / config.data.val_dir] if config.data.val_dir else [])
    images: list[Path] = []
    people: list[int] = []
    for person, name in enumerate(held_out):
        own = [folder / name for folder in folders if (folder / name).is_dir()]
        mine = list(iter_image_paths(own))[: config.calibrate.images_per_identity]
        images += mine
        people += [person] * len(mine)
    return images, people


@dataclass
class Calibrator:
    """Chooses a threshold on each validation's scores; warns once about what it cannot do."""

    far: float | None
    source: str
    model: str
    contract: PreprocessConfig
    _warned: bool = False

    def choose(self, scores: np.ndarray, labels: np.ndarray) -> Calibration | None:
        """The calibration at ``far`` (EER when the pairs cannot measure it); None if impossible."""
        from faceverify.compare.calibration import Calibration, choose_threshold
        from faceverify.compare.roc import check_scores, needed_impostors
        from faceverify.paths import timestamp

        try:
            s, y = check_scores(scores, labels)
        except MetricsError as exc:
            self._warn_once("no threshold calibrated on %s: %s", self.source, exc)
            return None
        impostors = int((y == 0).sum())
        far = self.far
        if far is not None and impostors < needed_impostors(far):
            self._warn_once(
                "calibrate.far %g needs %d impostor pairs and %s has %d: calibrating at the equal error "
                "rate instead (more or larger held-out identities, or a larger calibrate.far)",
                far,
                needed_impostors(far),
                self.source,
                impostors,
            )
            far = None
        point, target = choose_threshold(s, y, far=far)
        return Calibration(
            threshold=point.threshold,
            target=target,
            far=point.far,
            frr=point.frr,
            genuine=int(y.sum()),
            impostor=impostors,
            pairs_file=self.source,
            model=self.model,
            weights=CARRIER,
            weights_sha256="",  # it travels inside the weights it was measured on
            preprocess_fingerprint=self.contract.fingerprint(),
            created=timestamp(),
        )

    def _warn_once(self, message: str, *args: Any) -> None:
        if not self._warned:
            log.warning(message, *args)
            self._warned = True


def calibration_metrics(calibration: Calibration | None) -> dict[str, Any]:
    """What a metrics row records of a calibration."""
    if calibration is None:
        return {}
    return {
        "threshold": calibration.threshold,
        "threshold_far": calibration.far,
        "threshold_frr": calibration.frr,
        "threshold_target": calibration.target,
    }
