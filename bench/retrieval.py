"""Task 2, style retrieval: find the clip processed by the query's random effect chain among distractor chains."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from stito_server.effects.builtin import BuiltinEffect
from stito_server.metrics import Embedding, get_metric
from training.data.clips import RATE
from training.data.corpus import build_eval
from training.data.sources import CONTENT_TYPES

from .common import ClipPool, command_line, fmt, metric_label, write_results
from .scoring import retrieval_curve

TASK = "retrieval"
# Built-in effects a random chain draws from (distinct kinds per chain, random order, every parameter
# uniform over its normalised range, i.e. log-uniform for frequencies and times).
EFFECT_POOL = ("parametric_eq", "compressor", "distortion", "delay", "reverb", "chorus", "phaser", "highpass",
               "lowpass", "bitcrush", "limiter", "noise_gate")
FULL = {"n_effects": (1, 2, 3, 4, 5), "trials": 12, "set_size": 25, "sizes": (2, 5, 10, 15, 20, 25)}
QUICK = {"n_effects": (1, 4), "trials": 2, "set_size": 6, "sizes": (2, 4, 6)}


def random_chain(n_effects: int, rng: np.random.Generator) -> list[BuiltinEffect]:
    """``n_effects`` distinct built-in effects from ``EFFECT_POOL`` with uniformly random settings.

    Raises:
        ValueError: ``n_effects`` outside ``[1, len(EFFECT_POOL)]``.
    """
    if not 1 <= n_effects <= len(EFFECT_POOL):
        raise ValueError(f"n_effects must be in [1, {len(EFFECT_POOL)}], got {n_effects}")
    chain = []
    for kind in rng.choice(EFFECT_POOL, size=n_effects, replace=False):
        effect = BuiltinEffect(str(kind))
        effect.set_normalized(rng.uniform(size=len(effect.params)))
        chain.append(effect)
    return chain


def render(chain: list[BuiltinEffect], audio: np.ndarray) -> np.ndarray:
    """``(2, samples)`` float32 at 48 kHz through a chain; the input is peak-normalised to -1 dBFS first."""
    x = audio * np.float32(10 ** (-1 / 20) / max(float(np.abs(audio).max()), 1e-8))
    for effect in chain:
        x = effect.process(x, RATE)
    return np.nan_to_num(x.astype(np.float32, copy=False))


def run_trials(pool: ClipPool, metric_names: Sequence[str], n_effects: int, trials: int, set_size: int,
               seed: int) -> dict[str, np.ndarray]:
    """Similarities of each query to its retrieval set (column 0 the positive).

    Trial: query = clip A through a random chain; positive = clip B (another recording) through the same
    chain; ``set_size - 1`` distractors = clips from recordings other than A's, each through its own
    random chain of ``n_effects`` effects.

    Returns:
        Metric name -> ``(trials, set_size)`` similarities.
    """
    rng = np.random.default_rng(seed)
    metrics = {m: get_metric(m) for m in metric_names}
    out = {m: np.zeros((trials, set_size)) for m in metric_names}
    for t in range(trials):
        a = int(rng.integers(len(pool)))
        b = pool.other_recording(a, rng)
        distractors = [pool.other_recording(a, rng) for _ in range(set_size - 1)]
        chain = random_chain(n_effects, rng)
        audio = [render(chain, pool.stereo(a)), render(chain, pool.stereo(b))]
        audio += [render(random_chain(n_effects, rng), pool.stereo(d)) for d in distractors]
        for name, metric in metrics.items():
            emb = metric.embed(np.stack(audio), RATE)
            out[name][t] = metric.similarity(Embedding(emb.mid[1:], emb.side[1:]), Embedding(emb.mid[:1], emb.side[:1]))
    return out


def run(quick: bool, out_dir: Path, metrics: Sequence[str] = ("mfcc", "mir"), seed: int = 0,
        cache: str | Path | None = None, content_types: Sequence[str] = CONTENT_TYPES,
        log: Callable[[str], None] = print) -> dict:
    """Run task 2 per content type and number of effects; write ``retrieval.md``, ``.json`` and ``.png``.

    Args:
        quick: Quick data subset and the ``QUICK`` settings (else ``FULL``).
        out_dir: Folder for the result files.
        metrics: Metric names.
        seed: Seed of everything random.
        cache: Data cache folder.
        content_types: Content types to run (those without clips in the manifests are skipped).
        log: Progress printer.

    Returns:
        ``{"task", "quick", "settings", "seed", "wall_s", "clips": {content: n},
        "results": {metric: {content: {n_effects: {size: accuracy}}}}, "files"}``.
    """
    t0 = time.perf_counter()
    cfg = QUICK if quick else FULL
    data_root, _ = build_eval(quick=quick, cache=cache, log=log)
    results: dict[str, dict] = {m: {} for m in metrics}
    clips = {}
    for c_i, content in enumerate(content_types):
        try:
            pool = ClipPool(data_root, content, quick)
        except ValueError as exc:
            log(f"{TASK}: skipping {content}: {exc}")
            continue
        clips[content] = len(pool)
        for n in cfg["n_effects"]:
            log(f"{TASK}: {content}, N={n}: {cfg['trials']} trials, retrieval set {cfg['set_size']}")
            sims = run_trials(pool, metrics, n, cfg["trials"], cfg["set_size"], seed + 100 * c_i + n)
            for m in metrics:
                results[m].setdefault(content, {})[str(n)] = {str(k): v for k, v in
                                                              retrieval_curve(sims[m], cfg["sizes"]).items()}
    report = {"task": TASK, "quick": quick, "settings": cfg, "seed": seed, "clips": clips,
              "wall_s": time.perf_counter() - t0, "results": results}
    return write_results(report, out_dir, markdown, plot)


def markdown(report: dict) -> str:
    """Tables: accuracy at the largest retrieval set per content type and N, and accuracy vs set size."""
    cfg = report["settings"]
    big = str(cfg["sizes"][-1])
    ns = [str(n) for n in cfg["n_effects"]]
    lines = [f"# Task 2: style retrieval{' (quick)' if report['quick'] else ''}", "",
             f"Command: `{command_line('retrieval', report)}` · {cfg['trials']} trials "
             f"per content type and N · retrieval set up to {cfg['set_size']} · seed {report['seed']} · "
             f"wall time {report['wall_s']:.0f} s · clips: "
             + ", ".join(f"{c} {n}" for c, n in report["clips"].items()), "",
             "Query: clip A through a random chain of N built-in effects; positive: another recording through "
             "the same chain; distractors: other recordings through other random chains. Ties share credit.", "",
             f"## Top-1 accuracy with a retrieval set of {big} (chance {1 / int(big):.2f})", "",
             "| Metric | Content | " + " | ".join(f"N={n}" for n in ns) + " | mean |",
             "|---|---|" + "---|" * (len(ns) + 1)]
    for m, by_content in report["results"].items():
        for content, by_n in by_content.items():
            vals = [by_n[n][big] for n in ns]
            lines.append(f"| {metric_label(m)} | {content} | " + " | ".join(fmt(v) for v in vals)
                         + f" | {fmt(float(np.mean(vals)))} |")
    lines += ["", "## Accuracy vs retrieval-set size (mean over content types and N)", "",
              "| Metric | " + " | ".join(f"M={s}" for s in cfg["sizes"]) + " |",
              "|---|" + "---|" * len(cfg["sizes"])]
    for m, by_content in report["results"].items():
        vals = [np.mean([by_n[n][str(s)] for by_n in by_content.values() for n in ns]) for s in cfg["sizes"]]
        lines.append(f"| {metric_label(m)} | " + " | ".join(fmt(v) for v in vals) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Accuracy vs retrieval-set size, one panel per content type, one line per metric and N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contents = list(report["clips"])
    sizes = report["settings"]["sizes"]
    fig, axes = plt.subplots(1, max(1, len(contents)), figsize=(3.2 * max(1, len(contents)), 3.4), sharey=True,
                             squeeze=False)
    styles = {"mfcc": "-", "mir": "--"}
    for ax, content in zip(axes[0], contents):
        for m, by_content in report["results"].items():
            for k, (n, curve) in enumerate(by_content.get(content, {}).items()):
                ax.plot(sizes, [curve[str(s)] for s in sizes], styles.get(m, ":"), color=f"C{k}",
                        label=f"{metric_label(m)} N={n}")
        ax.plot(sizes, [1 / s for s in sizes], color="grey", lw=0.8, label="chance")
        ax.set_title(content)
        ax.set_xlabel("retrieval-set size")
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("top-1 accuracy")
    axes[0][-1].legend(fontsize=6, loc="upper right")
    fig.suptitle(f"Style retrieval{' (quick)' if report['quick'] else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
