"""One threshold resolver: explicit > calibrated > checkpoint > published > default, with sources."""

from __future__ import annotations

import pytest

from faceverify.errors import ConfigError, ModelError
from faceverify.runtime.threshold import (
    DEFAULT,
    Threshold,
    ThresholdSource,
    model_threshold,
    resolve_threshold,
)


def test_precedence_is_calibrated_then_checkpoint_then_published_then_default() -> None:
    calibrated = Threshold(0.4, ThresholdSource.CALIBRATED, "far=0.001 on pairs.csv")
    checkpoint = Threshold(0.3, ThresholdSource.CHECKPOINT)
    assert model_threshold(calibrated=calibrated, checkpoint=checkpoint, published=0.9) is calibrated
    assert model_threshold(checkpoint=checkpoint, published=0.9) is checkpoint
    published = model_threshold(published=0.9)
    assert (published.value, published.source) == (0.9, ThresholdSource.PUBLISHED)
    assert model_threshold() == DEFAULT and DEFAULT.value == 0.5 and DEFAULT.source == "default"


def test_an_explicit_threshold_wins_and_says_so() -> None:
    chosen = resolve_threshold(0.7, None)
    assert (chosen.value, chosen.source) == (0.7, ThresholdSource.GIVEN)
    assert resolve_threshold(None, None) == DEFAULT
    assert chosen.to_fields() == {"threshold": 0.7, "threshold_source": "given"}
    with pytest.raises(ConfigError, match="use a value in"):
        resolve_threshold(1.5, None)


def test_a_threshold_round_trips_and_refuses_unknown_sources() -> None:
    original = Threshold(0.42, ThresholdSource.CALIBRATED, "eer on pairs.txt")
    assert Threshold.from_dict(original.to_dict()) == original
    assert original.describe() == "0.42 (calibrated: eer on pairs.txt)"
    with pytest.raises(ValueError):
        Threshold.from_dict({"value": 0.4, "source": "guessed"})


def test_a_graph_records_the_source_and_old_graphs_still_load(tmp_path: object) -> None:
    from faceverify.runtime.onnx_backend import threshold_of

    assert threshold_of({"threshold": {"value": 0.3, "source": "checkpoint"}}).source == "checkpoint"
    assert threshold_of({}) == DEFAULT
    old = threshold_of({"threshold": 0.61})  # written before sources were recorded
    assert (old.value, old.source) == (0.61, ThresholdSource.GIVEN)
    with pytest.raises((TypeError, ValueError, ModelError, ConfigError)):
        threshold_of({"threshold": "high"})
