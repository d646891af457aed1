"""Early stopping on a validation plateau: the rule, a real run, and resuming a stopped run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faceverify.models.checkpoint import load_checkpoint
from faceverify.train.config import EarlyStopConfig, load_config
from faceverify.train.early_stop import EarlyStop
from faceverify.train.loop import train


def test_patience_counts_epochs_without_a_gain_of_min_delta() -> None:
    stop = EarlyStop(EarlyStopConfig(patience=2, min_delta=0.01))
    verdicts = [
        stop.update(epoch, {"val_auc": auc, "val_acc": 0.0})
        for epoch, auc in enumerate([0.70, 0.80, 0.805, 0.809, 0.79])
    ]
    # 0.805 and 0.809 are within min_delta of 0.80: two epochs without a gain after epoch 1
    assert verdicts[:3] == [None, None, None]
    assert (
        verdicts[3] is not None and "val_auc has not improved by more than 0.01 for 2 epochs" in verdicts[3]
    )
    assert "best 0.8000 at epoch 2" in verdicts[3]
    again = EarlyStop(EarlyStopConfig(patience=2, min_delta=0.01))
    again.load_state_dict(stop.state_dict())
    assert again.update(4, {"val_auc": 0.79}) is not None  # the count survives a checkpoint
    never = EarlyStop(EarlyStopConfig(patience=None))
    assert all(never.update(e, {"val_auc": 0.5}) is None for e in range(10))
    assert EarlyStop(EarlyStopConfig(patience=1)).update(0, {"train_loss": 1.0}) is None


@pytest.fixture
def tiny(synth_root: Path, tmp_path: Path) -> list[str]:
    """Six identities, four training and two validation images each: seconds per epoch."""
    data = tmp_path / "data"
    for split, count in (("classification_train", 4), ("classification_val", 2)):
        for person in sorted((synth_root / split).iterdir())[:6]:
            (data / split / person.name).mkdir(parents=True)
            for image in sorted(person.iterdir())[:count]:
                (data / split / person.name / image.name).write_bytes(image.read_bytes())
    return [f"data.root={data}", "data.pairs=null", "data.workers=0", "model.args={width: 8}"]


def test_a_run_stops_on_a_plateau_keeps_its_best_and_resumes_as_finished(
    tiny: list[str], tmp_path: Path
) -> None:
    """min_delta 1.0 cannot be beaten: with patience 1 the run stops after its second epoch
    of six, says why, and best.pt stays the first epoch's; resuming it trains nothing."""
    out = tmp_path / "run"
    settings = [
        *tiny,
        "model.input_size=32",
        "batch_size=12",
        "epochs=6",
        "early_stop.patience=1",
        "early_stop.min_delta=1.0",
        f"out={out}",
    ]
    metrics = train(load_config(None, settings))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert "val_acc has not improved by more than 1 for 1 epochs" in metrics["stopped_early"]
    last, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    assert last["metrics"]["stopped_early"] == metrics["stopped_early"]
    assert best["epoch"] == (0 if rows[1]["val_acc"] <= rows[0]["val_acc"] else 1)
    resumed = train(load_config(None, settings), resume=out / "last.pt")
    assert resumed["stopped_early"] == metrics["stopped_early"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
