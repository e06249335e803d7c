"""Task 1, zero-shot style classification: a styled query against one styled prototype per style, by cosine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from stito_server.metrics import get_metric
from training.data.clips import RATE
from training.data.corpus import build_eval

from .common import ClipPool, command_line, fmt, grouped_bars, metric_label, write_results
from .scoring import zero_shot_accuracy
from .styles import STYLE_ABBREVIATIONS, STYLE_NAMES, apply_style

TASK = "classification"
DOMAINS = ("speech", "music")
FULL_TRIALS = 200
QUICK_TRIALS = 10
PAPER = {"mfcc": {"TL": 1.00, "BR": 0.82, "WM": 0.64, "BC": 0.74, "NT": 0.48, "AVG": 0.74},
         "mir": {"TL": 0.76, "BR": 0.64, "WM": 0.61, "BC": 0.58, "NT": 0.32, "AVG": 0.58}}


def run_domain(pool: ClipPool, metric_names: Sequence[str], trials: int, seed: int) -> dict:
    """Run the trials of one domain.

    Trial ``t`` has true style ``STYLE_NAMES[t % 5]`` (balanced classes), a random query clip, and one
    prototype per style, each from a recording other than the query's, each a fresh random instance of
    its style. Mid and side are both compared only when every clip of the trial is stereo.

    Args:
        pool: Clips of the domain.
        metric_names: Metrics to score (names for ``get_metric``).
        trials: Number of trials.
        seed: Seed of clip choice and style instances.

    Returns:
        Metric name -> ``zero_shot_accuracy`` report.
    """
    rng = np.random.default_rng(seed)
    metrics = {m: get_metric(m) for m in metric_names}
    sims = {m: np.zeros((trials, len(STYLE_NAMES))) for m in metric_names}
    labels = []
    for t in range(trials):
        style = STYLE_NAMES[t % len(STYLE_NAMES)]
        q = int(rng.integers(len(pool)))
        protos = [pool.other_recording(q, rng) for _ in STYLE_NAMES]
        clips = [q] + protos
        batch = np.stack([apply_style(pool.stereo(i), RATE, s, rng)
                          for i, s in zip(clips, (style,) + STYLE_NAMES)])
        use_side = not any(pool.is_mono(i) for i in clips)
        for name, metric in metrics.items():
            emb = metric.embed(batch, RATE)
            query = type(emb)(emb.mid[:1], emb.side[:1])
            protos_emb = type(emb)(emb.mid[1:], emb.side[1:])
            sims[name][t] = metric.similarity(protos_emb, query, use_side=use_side)
        labels.append(style)
    return {m: zero_shot_accuracy(sims[m], labels, list(STYLE_NAMES), STYLE_NAMES) | {"scores": sims[m]}
            for m in metric_names}


def run(quick: bool, out_dir: Path, metrics: Sequence[str] = ("mfcc", "mir"), trials: int | None = None,
        seed: int = 0, cache: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Run task 1 on speech and music and write ``classification.md``, ``.json`` and ``.png``.

    Args:
        quick: Quick subset of the data and ``QUICK_TRIALS`` trials per domain (else ``FULL_TRIALS``).
        out_dir: Folder for the result files.
        metrics: Metric names.
        trials: Trials per domain (overrides the default).
        seed: Seed of everything random.
        cache: Data cache folder (default ``$STITO_DATA_DIR`` or ``~/.cache/stito/data``).
        log: Progress printer.

    Returns:
        ``{"task", "quick", "trials", "seed", "wall_s", "clips": {domain: n},
        "results": {metric: {domain | "all": {"accuracy", "per_class", "balanced", "chance", "n"}}},
        "files": [paths]}``.
    """
    t0 = time.perf_counter()
    trials = trials or (QUICK_TRIALS if quick else FULL_TRIALS)
    data_root, _ = build_eval(quick=quick, cache=cache, log=log)
    results: dict[str, dict] = {m: {} for m in metrics}
    clips = {}
    for d_i, domain in enumerate(DOMAINS):
        pool = ClipPool(data_root, domain, quick)
        clips[domain] = len(pool)
        log(f"{TASK}: {domain}: {trials} trials over {len(pool)} clips")
        dom = run_domain(pool, metrics, trials, seed + 1000 * d_i)
        for m in metrics:
            results[m][domain] = dom[m]
    for m in metrics:
        scores = np.concatenate([results[m][d].pop("scores") for d in DOMAINS])
        labels = [STYLE_NAMES[t % len(STYLE_NAMES)] for _ in DOMAINS for t in range(trials)]
        results[m]["all"] = zero_shot_accuracy(scores, labels, list(STYLE_NAMES), STYLE_NAMES)
    report = {"task": TASK, "quick": quick, "trials": trials, "seed": seed, "clips": clips,
              "wall_s": time.perf_counter() - t0, "results": results}
    return write_results(report, out_dir, markdown, plot)


def markdown(report: dict) -> str:
    """The result table: accuracy per style and average, per metric and domain, beside the paper's."""
    abbr = [STYLE_ABBREVIATIONS[s] for s in STYLE_NAMES]
    lines = [f"# Task 1: zero-shot style classification{' (quick)' if report['quick'] else ''}", "",
             f"Command: `{command_line('classification', report)}` · "
             f"{report['trials']} trials per domain (speech: {report['clips']['speech']} clips, "
             f"music: {report['clips']['music']} clips) · seed {report['seed']} · "
             f"wall time {report['wall_s']:.0f} s · chance 0.20", "",
             "Query and prototypes come from different recordings; each is a fresh random instance of its "
             "style (definitions in `bench/styles.py`). Ties share credit.", "",
             "| Metric | Domain | " + " | ".join(abbr) + " | AVG |",
             "|---|---|" + "---|" * (len(abbr) + 1)]
    for m, by_domain in report["results"].items():
        for domain in (*DOMAINS, "all"):
            r = by_domain[domain]
            cells = [fmt(r["per_class"][s]) for s in STYLE_NAMES]
            lines.append(f"| {metric_label(m)} | {domain} | " + " | ".join(cells) + f" | {fmt(r['balanced'])} |")
        if m in PAPER:
            lines.append(f"| {metric_label(m)} (paper) | speech+music | "
                         + " | ".join(fmt(PAPER[m][a]) for a in abbr) + f" | {fmt(PAPER[m]['AVG'])} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Grouped bars: accuracy per style (and average) for each metric, one panel per domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [STYLE_ABBREVIATIONS[s] for s in STYLE_NAMES] + ["AVG"]
    metrics = list(report["results"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
    for ax, domain in zip(axes, (*DOMAINS, "all")):
        rows = {m: report["results"][m][domain] for m in metrics}
        grouped_bars(ax, groups, {metric_label(m): [r["per_class"][s] for s in STYLE_NAMES] + [r["balanced"]]
                                  for m, r in rows.items()}, chance=0.2)
        ax.set_title(domain)
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("accuracy")
    axes[-1].legend(loc="upper right", fontsize=8)
    fig.suptitle(f"Zero-shot style classification ({report['trials']} trials per domain"
                 f"{', quick' if report['quick'] else ''})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
