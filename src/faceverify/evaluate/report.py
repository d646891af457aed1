"""Evaluation reports: one JSON with every number and input, PNG plots, a text summary.

The summary shows the figures on all pairs first (failed pairs counted as non-matches), then,
when some failed, those on the usable pairs, then a table per ``--by`` column: the order in
which a reader should trust them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.compare.roc import Roc, roc_curve

if TYPE_CHECKING:
    from faceverify.evaluate.scoring import ScoredPairs

_log = logging.getLogger(__name__)

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
    folder: str | Path, report: dict[str, Any], *, scored: ScoredPairs | None = None
) -> list[Path]:
    """Write ``report.json`` and the plots that apply; returns the files written.

    The ROC is that of all pairs, failures counted (the headline's); the score histograms
    show the usable pairs, the only ones with a real score.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json"]
    written[0].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    from faceverify.extras import PLOTS

    if not PLOTS.installed():  # the numbers are all in report.json; only the pictures need it
        _log.warning(
            "no plots: matplotlib is not installed (%s); report.json has every figure", PLOTS.install
        )
        return written
    plt = _pyplot()
    verification = report.get("verification")
    if verification is not None and scored is not None:
        threshold = float(report["threshold"]["value"])
        counted = scored.counted()
        roc = roc_curve(counted.scores, counted.labels)
        written.append(_plot_roc(plt, out / "roc.png", roc, verification, threshold))
        if scored.scores.size:
            written.append(
                _plot_histograms(
                    plt, out / "scores.png", scored.scores, scored.labels, threshold, len(scored.failed)
                )
            )
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
    failed = f", {metrics['failed']} failed scored -1" if metrics.get("failed") else ""
    label = f"all {metrics['pairs']} pairs{failed} (AUC {metrics['roc_auc']:.4f})"
    ax.step(far, roc.tar, where="post", label=label)
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


def _plot_histograms(
    plt: Any, path: Path, scores: np.ndarray, labels: np.ndarray, threshold: float, failed: int
) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    bins = np.linspace(min(scores.min(), threshold) - 0.01, max(scores.max(), threshold) + 0.01, 50)
    for label, name in ((1, "genuine"), (0, "impostor")):
        chosen = scores[labels == label]
        if chosen.size:  # a histogram of nothing, normalised, would divide by zero
            ax.hist(chosen, bins=bins, alpha=0.6, density=True, label=f"{name} ({chosen.size})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    title = "Genuine and impostor scores" + (f" (usable pairs; {failed} failed not shown)" if failed else "")
    ax.set(xlabel="cosine similarity", ylabel="density", title=title)
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
    if report.get("verification") is not None:
        lines += _verification_summary(report)
    identification = report.get("identification")
    if identification is not None:
        lines += _identification_lines(identification)
    problems = report.get("problems", [])
    if problems:
        lines.append(f"problems   {len(problems)} (first: {problems[0]}); all are listed in the JSON report")
    return "\n".join(lines)


def _verification_summary(report: dict[str, Any]) -> list[str]:
    failed = report["failed_pairs"]
    lines = [_failed_line(failed, report["verification"]["pairs"])]
    if failed["total"]:
        lines.append("-- all pairs, failed ones counted as non-matches --")
    lines += _block_lines(report["verification"])
    if failed["total"]:
        lines.append("-- usable pairs only, failed ones left out --")
        lines += _block_lines(report["verification_usable"])
    for column, groups in report.get("by", {}).items():
        lines += _group_table(column, groups)
    return lines


def _failed_line(failed: dict[str, Any], pairs: int) -> str:
    if not failed["total"]:
        return "failed     none: both images of every pair were embedded"
    kinds = ", ".join(f"{n} {kind}" for kind, n in failed["by_kind"].items())
    score = f"scored {failed['score']:g}, below any real score"
    return f"failed     {failed['total']} of {pairs} pairs ({kinds}); {score}"


def _block_lines(v: dict[str, Any]) -> list[str]:
    extra = f", {v['failed']} failed" if v.get("failed") else ""
    lines = [f"pairs      {v['pairs']} ({v['genuine']} genuine, {v['impostor']} impostor{extra})"]
    if v["roc_auc"] is None:
        lines.append(f"ROC AUC    none: {v['unmeasured']['roc_auc']}")
    else:
        lines += _roc_lines(v)
    point = v["operating_point"]
    lines.append(f"at threshold: FAR {_number(point['far'])}, FRR {_number(point['frr'])}")
    return lines


def _roc_lines(v: dict[str, Any]) -> list[str]:
    acc = v["accuracy_10fold"]
    lines = [
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
    return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _group_table(column: str, groups: dict[str, dict[str, Any]]) -> list[str]:
    """One row per value of ``column``; "-" where a figure is undefined, with the reason below."""
    fars = _measured_fars(groups)
    header = [column, "pairs", "genuine", "impostor", "failed", "AUC", "EER", "accuracy", "FAR", "FRR"]
    rows = [header + [f"TAR@{far}" for far in fars]]
    for value, g in groups.items():
        rows.append([value or "(empty)", *_group_cells(g, fars)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) + len(fars))]
    lines = [f"-- by {column}: all pairs, failed ones counted; FAR and FRR at the threshold --"]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    for value, g in groups.items():
        if g.get("unmeasured"):
            lines.append(f"  {value or '(empty)'}: {'; '.join(dict.fromkeys(g['unmeasured'].values()))}")
    return lines


def _measured_fars(groups: dict[str, dict[str, Any]]) -> list[str]:
    """The TAR@FAR targets measured in at least one group (the others would be empty columns)."""
    fars: dict[str, None] = {}
    for g in groups.values():
        for far, value in (g["tar_at_far"] or {}).items():
            if "unmeasured" not in value:
                fars[far] = None
    return list(fars)


def _group_cells(g: dict[str, Any], fars: list[str]) -> list[str]:
    point, tar_at_far = g["operating_point"], g["tar_at_far"] or {}
    eer = g["eer"]["far"] if g["eer"] else None
    accuracy = g["accuracy_10fold"]["mean"] if g["accuracy_10fold"] else None
    tars = [tar_at_far.get(far, {}).get("tar") for far in fars]
    counts = [str(g[key]) for key in ("pairs", "genuine", "impostor", "failed")]
    return counts + [_number(x) for x in (g["roc_auc"], eer, accuracy, point["far"], point["frr"], *tars)]


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
