"""Task 3, parameter estimation: recover one effect parameter from a reference of another recording with match()."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from stito_server.audio import Audio
from stito_server.effects.chain import Chain
from stito_server.effects.specs import chain_from_dict
from stito_server.engine.match import MatchOptions, match, score_settings
from stito_server.engine.optimize import OptimizerOptions
from stito_server.metrics import get_metric
from training.data.clips import RATE
from training.data.corpus import build_eval

from .common import PAIRINGS, ClipPool, command_line, fmt, metric_label, peak_normalize, write_results
from .param_tasks import PARAM_TASKS, ParamTask
from .search_quality import BOOTSTRAP_RESAMPLES, CI_LEVEL

TASK = "parameters"
CONTENTS = ("speech", "music")
# Settings of each run. The one free parameter is searched over its whole normalized range from 0.5 (the
# centre, so the start says nothing about the target), on the 5 s input clip, by match() itself: CMA-ES on a
# padded 2-D problem, then the pick among start, mean, best and last best on the validation excerpt.
# sigma0: the step size the recorded results were measured with (the engine's default was 0.3 then).
# grid: settings (evenly spaced over [0, 1]) of the "metric alone" estimate: the best-scoring one under the
# search's own objective (``score_settings``), so the search's share of the error and the metric's separate;
# it is taken with B from another recording (the task's cases) and from another clip of A's own recording.
FULL = {"tasks": tuple(t.key for t in PARAM_TASKS), "targets": (0.2, 0.4, 0.6, 0.8), "runs": 3,
        "popsize": 8, "generations": 8, "excerpt_s": 5.0, "sigma0": 0.3, "grid": 21}
QUICK = {"tasks": ("lowpass_cutoff", "zam_comp_threshold", "dragonfly_plate_wet"), "targets": (0.25, 0.75),
         "runs": 1, "popsize": 6, "generations": 3, "excerpt_s": 3.0, "sigma0": 0.3, "grid": 6}
END_TOLERANCE = 0.02  # an estimate this close to 0 or 1 counts as pinned to an end of the range


def task_by_key(key: str) -> ParamTask:
    """The ``ParamTask`` with this key.

    Raises:
        ValueError: unknown key (valid ones listed).
    """
    for t in PARAM_TASKS:
        if t.key == key:
            return t
    raise ValueError(f"unknown parameter task {key!r}; valid: {', '.join(t.key for t in PARAM_TASKS)}")


def make_chain(task: ParamTask) -> Chain:
    """A one-effect chain searching only ``task.param``; other parameters at ``task.fixed`` or their defaults.

    The chain is built from a spec, so worker processes can rebuild it (Dragonfly reverbs render there), and
    the fixed positions travel with its state.
    """
    chain = chain_from_dict({"name": task.key, "effects": [{task.kind: task.effect, "search": [task.param]}]})
    fx = chain.effects[0]
    x = fx.get_normalized()
    for name, value in task.fixed.items():
        x[fx.param_index(name)] = value
    fx.set_normalized(x)
    return chain


def pearson(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Pearson correlation of two equally long sequences; 0 when either is constant (no linear relation).

    Raises:
        ValueError: different lengths, fewer than 2 values, or a non-finite value.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"pearson needs two 1-D sequences of the same length >= 2, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("pearson: the values contain NaN or Inf")
    return float(row_pearson(x[None], y[None])[0])


def row_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of two ``(rows, n)`` float64 arrays, clipped to [-1, 1]; 0 for a
    row where either is constant (no checks: ``pearson`` validates its inputs before calling this)."""
    dx, dy = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt((dx ** 2).sum(axis=1) * (dy ** 2).sum(axis=1))
    return np.where(denom > 1e-12, np.clip((dx * dy).sum(axis=1) / np.maximum(denom, 1e-12), -1.0, 1.0), 0.0)


def estimation_scores(targets: Sequence[float], estimates: Sequence[float]) -> dict:
    """Mean squared error and Pearson correlation of estimated against true normalized values.

    Args:
        targets: ``(n,)`` true normalized parameter values in [0, 1].
        estimates: ``(n,)`` estimated normalized values in [0, 1].

    Returns:
        ``{"mse": mean squared error, "rho": Pearson correlation (0 if constant), "n": n}``.
    """
    t, e = np.asarray(targets, dtype=np.float64), np.asarray(estimates, dtype=np.float64)
    rho = pearson(t, e)
    return {"mse": float(np.mean((t - e) ** 2)), "rho": rho, "n": int(len(t))}


def run_effect(task: ParamTask, pools: dict[str, ClipPool], metric_names: Sequence[str], cfg: dict, seed: int,
               log: Callable[[str], None] = print) -> dict:
    """Estimate one effect's parameter ``len(targets) * runs`` times per metric.

    Case ``k`` (target ``k // runs``) takes its content type from ``CONTENTS`` in turn, a random input clip A
    and a reference clip B from another recording, both peak-normalised to -1 dBFS; the reference is B
    through the chain with the parameter at the target. Every metric sees the same cases. Beside the search,
    the metric alone: the best of ``cfg["grid"]`` evenly spaced settings under the same objective, for this
    B and for a B drawn from A's own recording (cases whose recording has no other clip are left out there).

    Args:
        task: The effect and its free parameter.
        pools: Content type -> clips (every name in ``CONTENTS``).
        metric_names: Metrics to optimise (names for ``get_metric``).
        cfg: Settings (``FULL`` or ``QUICK`` shape).
        seed: Seed of clip choice and of the optimiser.
        log: Progress printer.

    Returns:
        ``{metric: {"targets", "estimates", "contents", "similarity", "match_s", "mse", "rho", "n",
        "grid": {pairing: {"targets", "estimates", "mse", "rho", "n"}}}}`` (pairings: ``PAIRINGS``).
    """
    chain = make_chain(task)
    metrics = {m: get_metric(m) for m in metric_names}
    grid = np.linspace(0.0, 1.0, cfg["grid"])[:, None]
    out = {m: {"targets": [], "estimates": [], "contents": [], "similarity": [], "match_s": [],
               "grid": {p: {"targets": [], "estimates": []} for p in PAIRINGS}} for m in metric_names}
    k = 0
    for target in cfg["targets"]:
        for _ in range(cfg["runs"]):
            content = CONTENTS[k % len(CONTENTS)]
            pool = pools[content]
            rng = np.random.default_rng([seed, k])
            a = int(rng.integers(len(pool)))
            b = pool.other_recording(a, rng)
            # B from A's own recording, on its own random stream (the task's draws stay as they were)
            b_same = pool.partner(a, np.random.default_rng([seed, k, 1]), PAIRINGS[1])
            references = {}
            for pairing, clip in zip(PAIRINGS, (b, b_same)):
                if clip is not None:
                    chain.set_vector(np.array([target]))
                    references[pairing] = Audio(chain.process(peak_normalize(pool.stereo(clip)), RATE), RATE)
            dry = Audio(peak_normalize(pool.stereo(a)), RATE)
            for name, metric in metrics.items():
                chain.set_vector(np.array([0.5]))
                opts = MatchOptions(
                    optimizer=OptimizerOptions(popsize=cfg["popsize"], max_generations=cfg["generations"],
                                               sigma0=cfg["sigma0"], seed=seed + k),
                    start="center", excerpt_seconds=cfg["excerpt_s"], excerpts=1, validation_excerpts=1,
                    reference_windows=1, loudness="off", restraint="off")  # what the metric and search estimate
                for pairing, ref in references.items():
                    scores = score_settings(dry, ref, chain, metric, grid, opts)["analysis"]
                    g = out[name]["grid"][pairing]
                    g["targets"].append(float(target))
                    g["estimates"].append(float(grid[int(np.nanargmax(scores)), 0]))
                result = match(dry, references[PAIRINGS[0]], chain, metric, opts)
                r = out[name]
                r["targets"].append(float(target))
                r["estimates"].append(float(result.matched_vector[0]))
                r["contents"].append(content)
                r["similarity"].append(result.similarity["after"])
                r["match_s"].append(result.wall_s)
            k += 1
    for name, r in out.items():
        r.update(estimation_scores(r["targets"], r["estimates"]))
        for g in r["grid"].values():  # no scores where fewer than 2 cases could be drawn
            g.update(estimation_scores(g["targets"], g["estimates"]) if len(g["targets"]) >= 2
                     else {"mse": None, "rho": None, "n": len(g["targets"])})
        alone = ", ".join(f"{p} {fmt(g['mse'])} / {fmt(g['rho'])}" for p, g in r["grid"].items())
        log(f"{TASK}: {task.key} ({name}): MSE {r['mse']:.3f}, rho {r['rho']:.2f}, "
            f"{np.mean(r['match_s']):.1f} s per match; metric alone (MSE / rho): {alone}")
    return out


def paired_interval(first: dict[str, dict], second: dict[str, dict], seed: int = 0) -> dict:
    """Bootstrap interval of the difference second - first in mean MSE and mean rho over effects.

    Cases are resampled within each effect, the same resample for both metrics (they ran on the same cases),
    so the interval shows whether a difference in the means outlasts the case draw (12 cases per effect).

    Args:
        first: Effect key -> ``{"targets", "estimates", ...}`` of one metric.
        second: The same keys for the other metric, on the same cases.
        seed: Seed of the resampling.

    Returns:
        ``{"mse": difference, "rho": difference, "mse_interval": (lo, hi), "rho_interval": (lo, hi), "level"}``.
    """
    rng = np.random.default_rng(seed)
    d_mse, d_rho = np.zeros(BOOTSTRAP_RESAMPLES), np.zeros(BOOTSTRAP_RESAMPLES)
    for key in first:
        t = np.asarray(first[key]["targets"], dtype=np.float64)
        e1, e2 = (np.asarray(r[key]["estimates"], dtype=np.float64) for r in (first, second))
        idx = rng.integers(0, len(t), (BOOTSTRAP_RESAMPLES, len(t)))
        tt = t[idx]
        d_mse += np.mean((tt - e2[idx]) ** 2, axis=1) - np.mean((tt - e1[idx]) ** 2, axis=1)
        d_rho += row_pearson(tt, e2[idx]) - row_pearson(tt, e1[idx])
    d_mse, d_rho = d_mse / len(first), d_rho / len(first)
    q = [50 * (1 - CI_LEVEL), 50 * (1 + CI_LEVEL)]
    diff = {m: float(np.mean([second[k][m] - first[k][m] for k in first])) for m in ("mse", "rho")}
    return {"mse": diff["mse"], "rho": diff["rho"],
            "mse_interval": tuple(float(v) for v in np.percentile(d_mse, q)),
            "rho_interval": tuple(float(v) for v in np.percentile(d_rho, q)), "level": CI_LEVEL}


def summarize(by_effect: dict[str, dict]) -> dict[str, dict]:
    """Mean MSE and mean rho over effect groups: all, seen, unseen, builtin, vst3 (groups with effects only).

    Args:
        by_effect: Effect key -> ``{"mse", "rho", ...}`` for one metric (effects whose scores are None are
            left out).

    Returns:
        Group -> ``{"mse", "rho", "effects"}``.
    """
    groups = {"all": lambda t: True, "seen": lambda t: not t.unseen, "unseen": lambda t: t.unseen,
              "builtin": lambda t: t.kind == "builtin", "vst3": lambda t: t.kind == "vst3"}
    out = {}
    for group, keep in groups.items():
        keys = [k for k in by_effect if keep(task_by_key(k)) and by_effect[k]["mse"] is not None]
        if keys:
            out[group] = {"mse": float(np.mean([by_effect[k]["mse"] for k in keys])),
                          "rho": float(np.mean([by_effect[k]["rho"] for k in keys])), "effects": len(keys)}
    return out


def run(quick: bool, out_dir: Path, metrics: Sequence[str] = ("mfcc", "mir"), seed: int = 0,
        cache: str | Path | None = None, tasks: Sequence[str] | None = None,
        log: Callable[[str], None] = print) -> dict:
    """Run task 3 and write ``parameters.md``, ``.json`` and ``.png``.

    Args:
        quick: Quick data subset and the ``QUICK`` settings (else ``FULL``).
        out_dir: Folder for the result files.
        metrics: Metric names.
        seed: Seed of everything random.
        cache: Data cache folder.
        tasks: Effect keys to run (default: the settings' list).
        log: Progress printer.

    Returns:
        ``{"task", "quick", "settings", "seed", "wall_s", "clips": {content: n}, "effects": {key: description},
        "results": {metric: {"effects": {key: scores and cases}, "summary": {group: {"mse", "rho"}},
        "grid_summary": {pairing: {group: {"mse", "rho"}}}, "vs_first": paired_interval(...)}}, "files"}``
        (the metric-alone means per pairing; "vs_first" for every metric but the first, against the first).
    """
    t0 = time.perf_counter()
    cfg = dict(QUICK if quick else FULL)
    if tasks is not None:
        cfg["tasks"] = tuple(tasks)
    chosen = [task_by_key(k) for k in cfg["tasks"]]
    data_root, _ = build_eval(quick=quick, cache=cache, log=log)
    pools = {c: ClipPool(data_root, c, quick) for c in CONTENTS}
    results: dict[str, dict] = {m: {"effects": {}} for m in metrics}
    for i, task in enumerate(chosen):
        log(f"{TASK}: {task.key}: {task.effect_id} '{task.param}', {len(cfg['targets'])} targets x {cfg['runs']} runs")
        res = run_effect(task, pools, metrics, cfg, seed + 1000 * i, log)
        for m in metrics:
            results[m]["effects"][task.key] = res[m]
    for m in metrics:
        if m != metrics[0]:
            results[m]["vs_first"] = paired_interval(results[metrics[0]]["effects"], results[m]["effects"], seed)
        results[m]["summary"] = summarize(results[m]["effects"])
        results[m]["grid_summary"] = {p: summarize({k: e["grid"][p] for k, e in results[m]["effects"].items()})
                                      for p in PAIRINGS}
    effects = {t.key: {"effect": t.effect_id, "param": t.param, "kind": t.kind, "unseen": t.unseen,
                       "fixed": dict(t.fixed)} for t in chosen}
    report = {"task": TASK, "quick": quick, "settings": cfg, "seed": seed,
              "clips": {c: len(p) for c, p in pools.items()}, "effects": effects,
              "wall_s": time.perf_counter() - t0, "results": results}
    return write_results(report, out_dir, markdown, plot)


def markdown(report: dict) -> str:
    """Tables: MSE and rho per effect and metric, then means over all, seen, unseen, built-in and VST3 effects,
    then the same for the metric alone (grid) with B from another recording and from A's own."""
    cfg = report["settings"]
    metrics = list(report["results"])
    n_match = np.mean([s for m in metrics for r in report["results"][m]["effects"].values() for s in r["match_s"]])
    lines = [f"# Task 3: parameter estimation{' (quick)' if report['quick'] else ''}", "",
             f"Command: `{command_line('parameters', report)}` · {len(cfg['tasks'])} effects · targets "
             f"{', '.join(f'{t:g}' for t in cfg['targets'])} (normalized) x {cfg['runs']} runs · seed {report['seed']}"
             f" · wall time {report['wall_s']:.0f} s ({n_match:.1f} s per match) · clips: "
             + ", ".join(f"{c} {n}" for c, n in report["clips"].items()), "",
             "Each run: input clip A and reference clip B from different recordings (speech and music in turn, "
             "both peak-normalised to -1 dBFS); the reference is B through the effect with its one free parameter "
             f"at the target. `match()` searches that parameter from 0.5 with CMA-ES (popsize {cfg['popsize']}, "
             f"{cfg['generations']} generations, {cfg['excerpt_s']:g} s excerpt), optimising the named metric; "
             "every other parameter stays at its default (or its fixed value in "
             "`bench/param_tasks.py`). MSE and Pearson rho compare estimated and true normalized "
             "values (rho is 0 when all estimates are equal). *Unseen*: effects the learned encoder never sees "
             "in training.", "",
             "| Effect | Parameter | Kind | Unseen | "
             + " | ".join(f"{metric_label(m)} MSE | {metric_label(m)} rho" for m in metrics) + " |",
             "|---|---|---|---|" + "---|---|" * len(metrics)]
    for key, e in report["effects"].items():
        scores = [report["results"][m]["effects"][key] for m in metrics]
        cells = [f"{fmt(r['mse'])} | {fmt(r['rho'])}" for r in scores]
        lines.append(f"| {key} | {e['effect']} '{e['param']}' | {e['kind']} | {'yes' if e['unseen'] else ''} | "
                     + " | ".join(cells) + " |")
    lines += ["", "## Means over effects", "",
              "| Group | Effects | " + " | ".join(f"{metric_label(m)} MSE | {metric_label(m)} rho" for m in metrics) + " |",
              "|---|---|" + "---|---|" * len(metrics)]
    for group in report["results"][metrics[0]]["summary"]:
        s = [report["results"][m]["summary"][group] for m in metrics]
        lines.append(f"| {group} | {s[0]['effects']} | " + " | ".join(f"{fmt(x['mse'])} | {fmt(x['rho'])}" for x in s)
                     + " |")
    ends = {m: np.mean([min(e, 1 - e) <= END_TOLERANCE for r in report["results"][m]["effects"].values()
                        for e in r["estimates"]]) for m in metrics}
    lines += ["", f"Estimates at an end of the range (within {END_TOLERANCE:g} of 0 or 1): "
              + ", ".join(f"{metric_label(m)} {100 * v:.0f} %" for m, v in ends.items()) + "."]
    for m in metrics[1:]:
        d = report["results"][m]["vs_first"]
        lo_m, hi_m = d["mse_interval"]
        lo_r, hi_r = d["rho_interval"]
        lines.append(f"{metric_label(m)} - {metric_label(metrics[0])}, mean over the effects: MSE {d['mse']:+.3f} "
                     f"({d['level']:.0%} bootstrap interval {lo_m:+.3f} .. {hi_m:+.3f}), rho {d['rho']:+.2f} "
                     f"({lo_r:+.2f} .. {hi_r:+.2f}); cases resampled within each effect.")
    return "\n".join(lines + grid_markdown(report)) + "\n"


def grid_markdown(report: dict) -> list[str]:
    """The metric-alone section: per effect and group means, for each pairing of A and B."""
    cfg, results = report["settings"], report["results"]
    metrics = list(results)
    head = " | ".join(f"{metric_label(m)} {p.split()[0]} MSE / rho" for m in metrics for p in PAIRINGS)
    intro = (f"The same cases without the search: the best of {cfg['grid']} evenly spaced settings (0 to 1) under "
             "the search's own objective (`score_settings`: the same excerpt and reference window), with B from "
             "another recording (the cases above) and, as a control, from another clip of A's own recording "
             "(same content, so the two columns differ only in how far apart the recordings are). Where the "
             "search column above is far below the *other* column here, the search is what loses; where *other* "
             "is far below *same*, the content difference is.")
    lines = ["", "## The metric alone", "", intro, "",
             f"| Effect | {head} |", "|---|" + "---|" * (len(metrics) * len(PAIRINGS))]
    for key in report["effects"]:
        cells = [results[m]["effects"][key]["grid"][p] for m in metrics for p in PAIRINGS]
        lines.append(f"| {key} | " + " | ".join(f"{fmt(g['mse'])} / {fmt(g['rho'])} (n {g['n']})" for g in cells)
                     + " |")
    for group in results[metrics[0]]["grid_summary"][PAIRINGS[0]]:
        cells = [results[m]["grid_summary"][p].get(group) for m in metrics for p in PAIRINGS]
        lines.append(f"| **mean, {group}** | " + " | ".join(
            "n/a" if g is None else f"{fmt(g['mse'])} / {fmt(g['rho'])}" for g in cells) + " |")
    return lines


def plot(report: dict, path: Path) -> None:
    """Estimated against true normalized value, one panel per effect, one colour per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(report["effects"])
    cols = min(4, len(keys))
    rows = -(-len(keys) // cols)
    metrics = list(report["results"])
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.8 * rows), squeeze=False, sharex=True, sharey=True)
    for ax, key in zip(axes.flat, keys):
        for k, m in enumerate(metrics):
            r = report["results"][m]["effects"][key]
            jitter = (k - (len(metrics) - 1) / 2) * 0.015
            ax.scatter(np.asarray(r["targets"]) + jitter, r["estimates"], s=12, color=f"C{k}",
                       label=metric_label(m) if key == keys[0] else None)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        rhos = " · ".join(f"{metric_label(m)} rho {report['results'][m]['effects'][key]['rho']:.2f}" for m in metrics)
        ax.set_title(key + (" (unseen)" if report["effects"][key]["unseen"] else "") + "\n" + rhos, fontsize=7)
        ax.set_xlim(-0.04, 1.04)  # estimates at the range ends stay visible
        ax.set_ylim(-0.04, 1.04)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("true (normalized)")
    for ax in axes[:, 0]:
        ax.set_ylabel("estimated")
    fig.suptitle(f"Parameter estimation{' (quick)' if report['quick'] else ''}")
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
