"""Evaluation reports: one JSON with every number and input, PNG plots, a text summary."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceverify.compare.roc import Roc, roc_curve

#: Problems logged one by one; the rest are counted (reports list them all).
SHOWN_PROBLEMS = 10


def log_problems(log: logging.Logger, problems: Sequence[str], *, context: str = "", where: str = "") -> None:
    """Warn about the first problems met in the inputs and count the others.

    Args:
        context: put before each line, e.g. ``"validation pairs: "``.
        where: where the whole list can be read, added to the count line.
    """
    for problem in problems[:SHOWN_PROBLEMS]:
        log.warning("%sskipped %s", context, problem)
    hidden = len(problems) - SHOWN_PROBLEMS
    if hidden > 0:
        log.warning("... and %d more problems%s", hidden, f" ({where})" if where else "")


def write_report(
    folder: str | Path,
    report: dict[str, Any],
    *,
    scores: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> list[Path]:
    """Write ``report.json`` and the plots that apply; returns the files written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json"]
    written[0].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plt = _pyplot()
    verification = report.get("verification")
    if verification is not None and scores is not None and labels is not None:
        threshold = float(report["threshold"]["value"])
        written.append(_plot_roc(plt, out / "roc.png", roc_curve(scores, labels), verification, threshold))
        written.append(_plot_histograms(plt, out / "scores.png", scores, labels, threshold))
    identification = report.get("identification")
    if identification is not None and identification.get("cmc"):
        written.append(_plot_cmc(plt, out / "cmc.png", identification["cmc"]))
    return written


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: works on servers without a display
    import matplotlib.pyplot as plt

    return plt


def _plot_roc(plt: Any, path: Path, roc: Roc, metrics: dict[str, Any], threshold: float) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    floor = 1.0 / max(metrics["impostor"], 1)
    far = np.clip(roc.far, floor / 2, 1.0)  # log axis: FAR 0 drawn at the left edge
    ax.step(far, roc.tar, where="post", label=f"ROC (AUC {metrics['roc_auc']:.4f})")
    eer = metrics["eer"]
    ax.plot([max(eer["far"], floor / 2)], [eer["tar"]], "o", label=f"EER {eer['far']:.3f}")
    at = int(np.flatnonzero(roc.thresholds >= threshold)[-1])
    ax.plot([max(roc.far[at], floor / 2)], [roc.tar[at]], "s", label=f"threshold {threshold:.3f}")
    ax.set(
        xscale="log",
        xlim=(floor / 2, 1.0),
        ylim=(0, 1.01),
        xlabel="false accept rate (log)",
        ylabel="true accept rate",
        title="Verification ROC",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return _save(plt, fig, path)


def _plot_histograms(plt: Any, path: Path, scores: np.ndarray, labels: np.ndarray, threshold: float) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    bins = np.linspace(min(scores.min(), threshold) - 0.01, max(scores.max(), threshold) + 0.01, 50)
    ax.hist(
        scores[labels == 1], bins=bins, alpha=0.6, density=True, label=f"genuine ({int((labels == 1).sum())})"
    )
    ax.hist(
        scores[labels == 0],
        bins=bins,
        alpha=0.6,
        density=True,
        label=f"impostor ({int((labels == 0).sum())})",
    )
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="cosine similarity", ylabel="density", title="Genuine and impostor scores")
    ax.legend()
    return _save(plt, fig, path)


def _plot_cmc(plt: Any, path: Path, cmc: list[float]) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ranks = np.arange(1, len(cmc) + 1)
    ax.plot(ranks, cmc, marker="o")
    ax.set(xlabel="rank", ylabel="identification rate", ylim=(0, 1.01), title="CMC curve")
    ax.grid(True, alpha=0.3)
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summary(report: dict[str, Any]) -> str:
    """One screen of text: the numbers a person looks at first."""
    lines = [f"model      {report['model']['model']} ({report['model']['weights']})"]
    threshold = report["threshold"]
    lines.append(f"threshold  {threshold['value']:.4f} ({threshold['source']})")
    verification = report.get("verification")
    if verification is not None:
        lines += _verification_lines(verification, report.get("operating_point"))
    identification = report.get("identification")
    if identification is not None:
        lines += _identification_lines(identification)
    problems = report.get("problems", [])
    if problems:
        lines.append(f"problems   {len(problems)} (first: {problems[0]}); all are listed in the JSON report")
    return "\n".join(lines)


def _verification_lines(v: dict[str, Any], point: dict[str, Any] | None) -> list[str]:
    acc = v["accuracy_10fold"]
    lines = [
        f"pairs      {v['pairs']} ({v['genuine']} genuine, {v['impostor']} impostor)",
        f"ROC AUC    {v['roc_auc']:.4f}",
        f"EER        {v['eer']['far']:.4f} at threshold {v['eer']['threshold']:.4f}",
        f"accuracy   {acc['mean']:.4f} ± {acc['std']:.4f} "
        f"({acc['folds']}-fold, each threshold chosen on the other folds)",
    ]
    for far, value in v["tar_at_far"].items():
        text = (
            value["unmeasured"]
            if "unmeasured" in value
            else f"{value['tar']:.4f} (threshold {value['threshold']:.4f})"
        )
        lines.append(f"TAR@FAR={far:<6} {text}")
    if point is not None:
        lines.append(f"at threshold: FAR {point['far']:.4f}, FRR {point['frr']:.4f}")
    return lines


def _identification_lines(ident: dict[str, Any]) -> list[str]:
    lines = [
        f"gallery    {ident['gallery']['people']} people, {ident['gallery']['images']} images; "
        f"probes {ident['probes']['known']} known, {ident['probes']['unknown']} unknown",
    ]
    for rank, value in ident["rank_accuracy"].items():
        text = value["unmeasured"] if isinstance(value, dict) else f"{value:.4f}"
        lines.append(f"{rank.replace('_', '-'):<10} {text}")
    open_set = ident["open_set"]
    if "unknown_accept_rate" in open_set:
        lines.append(f"unknown people wrongly accepted: {open_set['unknown_accept_rate']:.4f}")
    if "known_identified_rate" in open_set:
        lines.append(f"known people identified above threshold: {open_set['known_identified_rate']:.4f}")
    return lines
