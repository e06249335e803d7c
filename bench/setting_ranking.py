"""Task 5, setting ranking: does a metric score recording B at the reference's setting above B at nearby ones?"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from stito_server.metrics import Embedding, get_metric
from stito_server.metrics.stats import StatsMetric
from training.data.clips import RATE
from training.data.corpus import build_eval
from training.effects import UNSEEN_EFFECTS, pretext_effects
from training.plans import RankPlan
from training.ranking import cached_family, draw_negative, draw_setting, render_setting

from .common import PAIRINGS, ClipPool, command_line, fmt, grouped_bars, metric_label, write_results
from .scoring import top1_credit

TASK = "ranking"
CONTENT = ("speech", "music", "guitar", "drums")
# Family groups: one effect the encoder trained on, one it never saw, and the two shipped chains.
GROUPS = ("seen effect", "unseen effect", "pedalboard-strip", "zam-strip")
FULL = {"cases": 60, "seconds": 5.0}  # cases per group
QUICK = {"cases": 2, "seconds": 2.0}
VARIANTS = PAIRINGS  # B from another recording (the task), from A's own (its control)
NEGATIVES = 4  # nearby settings per case; with the dry B there are 6 candidates (chance 1/6)
SAME_AUDIO = 1e-4  # a nearby render whose mean |difference| to the positive is below this share of its level is redrawn


def _group_families(group: str) -> list[str]:
    if group == "seen effect":
        return [f"effect:{e}" for e in pretext_effects()]
    if group == "unseen effect":
        return [f"effect:{e}" for e in sorted(UNSEEN_EFFECTS)]
    return [group]


def make_case(pools: list[ClipPool], group: str, chains: dict, plan: RankPlan, n: int, rng: np.random.Generator,
              variant: str = VARIANTS[0]) -> tuple[str, list[np.ndarray], bool] | None:
    """One case: reference A at a setting, then B at it, at nearby settings and dry.

    Args:
        variant: "other recording" (B from a recording other than A's) or "same recording" (B another clip of
            A's recording).

    Returns:
        (family, ``[reference, positive, nearby..., dry B]`` each ``(2, n)`` float32, whether every clip was
        recorded in stereo), or None when the setting failed to render or A's recording has no other clip
        (the caller draws again).
    """
    pool = pools[int(rng.integers(len(pools)))]
    a = int(rng.integers(len(pool)))
    b = pool.partner(a, rng, variant)
    if b is None:
        return None
    fams = _group_families(group)
    fam = fams[int(rng.integers(len(fams)))]
    chain, start = cached_family(chains, fam)
    theta = draw_setting(rng, plan, fam, start)
    xa, xb = (np.ascontiguousarray(pool.stereo(i)[:, :n]) for i in (a, b))
    ref, pos = render_setting(chain, xa, theta, n), render_setting(chain, xb, theta, n)
    if ref is None or pos is None:
        return None
    level = float(np.abs(pos).mean()) + 1e-12
    near = []
    for _ in range(NEGATIVES):
        for _ in range(8):
            y = render_setting(chain, xb, draw_negative(rng, plan, theta), n)
            if y is not None and float(np.abs(y - pos).mean()) > SAME_AUDIO * level:
                near.append(y)
                break
        else:
            return None
    dry = np.pad(xb, ((0, 0), (0, n - xb.shape[1])))
    return fam, [ref, pos, *near, dry], not (pool.is_mono(a) or pool.is_mono(b))


def run(quick: bool, out_dir: Path, metrics: Sequence[str] = ("mfcc", "mir"), cases: int | None = None,
        seed: int = 0, cache: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Run task 5 and write ``ranking.md``, ``.json`` and ``.png``.

    Each case renders a reference (clip A through a family's chain at a setting drawn as ``stito train
    rankset`` draws them), the positive (clip B, another recording of the same content type, at the same
    setting), ``NEGATIVES`` nearby settings of B (one parameter moved by at least 0.15, or all moved a
    little; each audibly different from the positive) and the dry B. A metric earns the case when it
    scores the positive above every other candidate (ties share credit): the property a search needs for
    its optimum to sit at the reference's setting. Same cases for every metric. The control variant draws B
    from A's own recording instead (another clip of it), so the two variants differ only in content.

    Args:
        quick: Quick data subset and ``QUICK`` sizes (else ``FULL``).
        out_dir: Folder for the result files.
        metrics: Metric names.
        cases: Cases per family group and variant (overrides the default).
        seed: Seed of everything random.
        cache: Data cache folder.
        log: Progress printer.

    Returns:
        ``{"task", "quick", "cases", "seed", "wall_s", "clips", "results": {metric: {variant: {group | "all":
        {"accuracy", "gap", "win_rate", "beats_dry", "n"}}}}, "files"}`` (variants: ``VARIANTS``) where "gap"
        is the mean of the positive's score minus the best other candidate's, "win_rate" the mean share of the
        nearby settings the positive outscores (chance 0.5) and "beats_dry" the share of cases where it
        outscores the dry B.
    """
    t0 = time.perf_counter()
    size = dict(QUICK if quick else FULL)
    if cases:
        size["cases"] = cases
    data_root, _ = build_eval(quick=quick, cache=cache, log=log)
    pools = [ClipPool(data_root, ct, quick) for ct in CONTENT]
    scorers = {m: get_metric(m) for m in metrics}
    plan = RankPlan()
    n = int(round(size["seconds"] * RATE))
    chains: dict = {}
    results: dict[str, dict] = {m: {} for m in metrics}
    ceilings: dict[str, dict] = {}
    for v_i, variant in enumerate(VARIANTS):
        rng = np.random.default_rng(seed if v_i == 0 else [seed, v_i])
        scores, ceiling = _run_variant(pools, scorers, chains, plan, n, size["cases"], rng, variant, log)
        for m in metrics:
            results[m][variant] = scores[m]
        for m, c in ceiling.items():
            ceilings.setdefault(m, {})[variant] = c
    report = {"task": TASK, "quick": quick, "cases": size["cases"], "seconds": size["seconds"], "seed": seed,
              "metrics": list(metrics), "clips": {p.content_type: len(p) for p in pools},
              "chance": 1.0 / (NEGATIVES + 2), "wall_s": time.perf_counter() - t0, "results": results,
              "ceiling": ceilings}
    return write_results(report, out_dir, markdown, plot)


def _run_variant(pools: list[ClipPool], scorers: dict, chains: dict, plan: RankPlan, n: int, cases: int,
                 rng: np.random.Generator, variant: str,
                 log: Callable[[str], None]) -> tuple[dict[str, dict], dict[str, dict]]:
    """Every group's cases of one variant, scored by every metric: ``{metric: {group | "all": figures}}``, and
    for a descriptor metric (``stats``) where its ceiling lies (``ceiling``)."""
    per = {m: {k: {g: [] for g in GROUPS} for k in ("accuracy", "gap", "win_rate", "beats_dry")} for m in scorers}
    moves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {m: [] for m, s in scorers.items()
                                                            if isinstance(s, StatsMetric)}
    for group in GROUPS:
        log(f"{TASK}: {variant}: {group}: {cases} cases")
        done, tries = 0, 0
        while done < cases:
            tries += 1
            if tries > 50 * cases:
                raise RuntimeError(f"{TASK}: {variant}: {group}: only {done} of {cases} cases could be drawn in "
                                   f"{tries - 1} tries (renders failing, or no recording with two clips)")
            case = make_case(pools, group, chains, plan, n, rng, variant)
            if case is None:
                continue
            done += 1
            _, clips, stereo = case
            for name, metric in scorers.items():
                e = metric.embed(np.stack(clips), RATE)
                # what the candidates are compared with, as a match compares them (B is the input: its dry clip
                # is the last candidate); a delta metric's target is dry B plus A's estimated processing
                dry = Embedding(e.mid[-1:], e.side[-1:])
                target = metric.targets(Embedding(e.mid[:1], e.side[:1]), dry, dry)
                sims = metric.similarity(Embedding(e.mid[1:], e.side[1:]), target, use_side=stereo)
                correct = np.zeros((1, sims.size), dtype=bool)
                correct[0, 0] = True
                f = per[name]
                f["accuracy"][group].append(float(top1_credit(sims[None], correct)[0]))
                f["gap"][group].append(float(sims[0] - sims[1:].max()))
                f["win_rate"][group].append(float(np.mean(sims[0] > sims[1:-1])))  # over the nearby settings
                f["beats_dry"][group].append(float(sims[0] > sims[-1]))
                if name in moves:
                    z = e.mid.astype(np.float64) / metric.scale
                    moves[name].append((np.mean(np.square(z[2:-1] - z[1]), axis=0), np.square(z[0] - z[1])))
    out = {}
    for m, f in per.items():
        out[m] = {g: {k: float(np.mean(v[g])) for k, v in f.items()} | {"n": len(f["accuracy"][g])} for g in GROUPS}
        out[m]["all"] = {k: float(np.mean([x for g in GROUPS for x in v[g]])) for k, v in f.items()}
        out[m]["all"]["n"] = sum(len(f["accuracy"][g]) for g in GROUPS)
    return out, {m: ceiling(v, scorers[m].names) for m, v in moves.items()}


def ceiling(moves: list[tuple[np.ndarray, np.ndarray]], names: list[str], top: int = 8) -> dict:
    """Where a descriptor metric's ranking ceiling lies: how far nearby settings move each descriptor against how
    far the recording difference puts the target from the reference's setting, in the metric's units.

    Args:
        moves: Per case, ``(dims,)`` mean squared move from the positive to the nearby settings, and ``(dims,)``
            squared gap between the reference (A at the setting) and the positive (B at it), both divided by the
            descriptor's between-recording spread (``StatsMetric.scale``).
        names: The descriptors' names (``StatsMetric.names``).
        top: Descriptors listed, those whose setting moves stand out most from the recording gaps.

    Returns:
        ``{"ratio": all setting moves over all recording gaps, "cases_above": share of cases where the setting
        moves exceed the recording gap, "descriptors": [{"name", "setting", "recording", "ratio"}] (top ``top``
        by ratio), "n"}``. A ratio well below 1 means nearby settings differ by less than the target's content
        error: no weighting of these descriptors can rank the reference's setting first.
    """
    s = np.array([m for m, _ in moves])
    r = np.array([g for _, g in moves])
    per = s.mean(axis=0) / np.maximum(r.mean(axis=0), 1e-12)
    order = np.argsort(-per)[:top]
    return {"ratio": float(s.sum() / max(r.sum(), 1e-12)),
            "cases_above": float(np.mean(s.sum(axis=1) > r.sum(axis=1))),
            "descriptors": [{"name": names[j], "setting": float(s[:, j].mean()), "recording": float(r[:, j].mean()),
                             "ratio": float(per[j])} for j in order], "n": len(moves)}


def markdown(report: dict) -> str:
    """The result tables: top-1 accuracy (and mean score gap), then win rate / beats dry, per variant."""
    lines = [f"# Task 5: setting ranking across recordings{' (quick)' if report['quick'] else ''}", "",
             f"Command: `{command_line(TASK, report)}` · {report['cases']} cases per group and variant · "
             f"{report['seconds']:g} s clips · seed {report['seed']} · wall time {report['wall_s']:.0f} s · "
             f"chance {report['chance']:.2f}", "",
             "Reference: clip A through a chain at a setting; candidates: clip B at that setting, at "
             f"{NEGATIVES} nearby settings (one parameter moved by at least 0.15 of its range, or all moved a "
             "little) and dry. B comes from another recording of the same content type (the task) or, as a "
             "control, from another clip of A's own recording. Accuracy: the share of cases where the metric "
             "scores B at the reference's setting highest, which a search needs to land on it. Gap: mean score "
             "of that candidate minus the best other one (positive: ranked first on average). Win rate: the "
             "share of the nearby settings it outscores (chance 0.50). Beats dry: the share of cases where it "
             "outscores the dry B, i.e. where processing B like the reference beats leaving B alone."]
    head = ["| Metric | " + " | ".join(GROUPS) + " | all |", "|---|" + "---|" * (len(GROUPS) + 1)]
    for variant in VARIANTS:
        lines += ["", f"## B from the {variant}: top-1 accuracy (gap)", "", *head]
        for m, r in report["results"].items():
            cells = [f"{fmt(r[variant][g]['accuracy'])} ({r[variant][g]['gap']:+.3f})" for g in (*GROUPS, "all")]
            lines.append(f"| {metric_label(m)} | " + " | ".join(cells) + " |")
        lines += ["", f"## B from the {variant}: win rate over nearby settings / beats dry", "", *head]
        for m, r in report["results"].items():
            cells = [f"{fmt(r[variant][g]['win_rate'])} / {fmt(r[variant][g]['beats_dry'])}"
                     for g in (*GROUPS, "all")]
            lines.append(f"| {metric_label(m)} | " + " | ".join(cells) + " |")
    for m, per_variant in report.get("ceiling", {}).items():
        lines += ["", f"## Where {metric_label(m)}'s ceiling lies: nearby settings against the recording difference",
                  "", "Per descriptor, in units of its between-recording spread: the mean squared move from B at the "
                  "reference's setting to B at the nearby settings (setting), against the squared gap between A and "
                  "B at the same setting (recording: the content error of the target). Ratio: setting over "
                  "recording, over all descriptors and per descriptor (the highest listed); cases above: share of "
                  "cases whose setting moves exceed their recording gap.", "",
                  "| B from | ratio | cases above | highest descriptors: ratio (setting / recording) |",
                  "|---|---|---|---|"]
        for variant, c in per_variant.items():
            best = ", ".join(f"{d['name']} {d['ratio']:.2f} ({d['setting']:.3f} / {d['recording']:.3f})"
                             for d in c["descriptors"][:5])
            lines.append(f"| {variant} | {c['ratio']:.3f} | {fmt(c['cases_above'])} | {best} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Grouped bars: top-1 accuracy per family group for each metric, one panel per variant, chance dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = (*GROUPS, "all")
    metrics = list(report["results"])
    fig, axes = plt.subplots(1, len(VARIANTS), figsize=(14, 3.8), sharey=True)
    for ax, variant in zip(axes, VARIANTS):
        grouped_bars(ax, groups, {metric_label(m): [report["results"][m][variant][g]["accuracy"] for g in groups]
                                  for m in metrics}, chance=report["chance"], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"B from the {variant}")
    axes[0].set_ylabel("top-1 accuracy")
    axes[-1].legend(loc="upper right", fontsize=8)
    fig.suptitle(f"Setting ranking ({report['cases']} cases per group and variant"
                 f"{', quick' if report['quick'] else ''})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
