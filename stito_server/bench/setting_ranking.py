"""Task 5, setting ranking: does a metric score recording B at the reference's setting above B at nearby ones?"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data.cli import build_eval
from ..data.clips import RATE
from ..encoder.effects import pretext_effects
from ..encoder.plans import RankPlan
from ..encoder.ranking import draw_negative, draw_setting, family_chain, render_setting
from ..metrics import Embedding, get_metric
from .common import ClipPool, command_line, fmt, metric_label, write_results
from .param_tasks import UNSEEN_EFFECTS
from .scoring import top1_credit

TASK = "ranking"
CONTENT = ("speech", "music", "guitar", "drums")
# Family groups: one effect the encoder trained on, one it never saw, and the two shipped chains.
GROUPS = ("seen effect", "unseen effect", "pedalboard-strip", "zam-strip")
FULL = {"cases": 60, "seconds": 5.0}  # cases per group
QUICK = {"cases": 2, "seconds": 2.0}
NEGATIVES = 4  # nearby settings per case; with the dry B there are 6 candidates (chance 1/6)
SAME_AUDIO = 1e-4  # a nearby render whose mean |difference| to the positive is below this share of its level is redrawn


def _group_families(group: str) -> list[str]:
    if group == "seen effect":
        return [f"effect:{e}" for e in pretext_effects()]
    if group == "unseen effect":
        return [f"effect:{e}" for e in sorted(UNSEEN_EFFECTS)]
    return [group]


def make_case(pools: list[ClipPool], group: str, chains: dict, plan: RankPlan, n: int, rng: np.random.Generator
              ) -> tuple[str, list[np.ndarray], bool] | None:
    """One case: reference A at a setting, then B (another recording) at it, at nearby settings and dry.

    Returns:
        (family, ``[reference, positive, nearby..., dry B]`` each ``(2, n)`` float32, whether every clip was
        recorded in stereo), or None when the setting failed to render (the caller draws again).
    """
    pool = pools[int(rng.integers(len(pools)))]
    a = int(rng.integers(len(pool)))
    b = pool.other_recording(a, rng)
    fams = _group_families(group)
    fam = fams[int(rng.integers(len(fams)))]
    if fam not in chains:
        made = family_chain(fam)
        chains[fam] = (made, made.get_vector())
    chain, start = chains[fam]
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
    its optimum to sit at the reference's setting. Same cases for every metric.

    Args:
        quick: Quick data subset and ``QUICK`` sizes (else ``FULL``).
        out_dir: Folder for the result files.
        metrics: Metric names.
        cases: Cases per family group (overrides the default).
        seed: Seed of everything random.
        cache: Data cache folder.
        log: Progress printer.

    Returns:
        ``{"task", "quick", "cases", "seed", "wall_s", "clips", "results": {metric: {group | "all":
        {"accuracy", "gap", "win_rate", "beats_dry", "n"}}}, "files"}`` where "gap" is the mean of the
        positive's score minus the best other candidate's, "win_rate" the mean share of the nearby settings
        the positive outscores (chance 0.5) and "beats_dry" the share of cases where it outscores the dry B.
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
    rng = np.random.default_rng(seed)
    chains: dict = {}
    credit = {m: {g: [] for g in GROUPS} for m in metrics}
    gaps = {m: {g: [] for g in GROUPS} for m in metrics}
    wins = {m: {g: [] for g in GROUPS} for m in metrics}  # share of the nearby settings the positive beats
    over_dry = {m: {g: [] for g in GROUPS} for m in metrics}
    for group in GROUPS:
        log(f"{TASK}: {group}: {size['cases']} cases")
        done = 0
        while done < size["cases"]:
            case = make_case(pools, group, chains, plan, n, rng)
            if case is None:
                continue
            done += 1
            _, clips, stereo = case
            for name, metric in scorers.items():
                e = metric.embed(np.stack(clips), RATE)
                sims = metric.similarity(Embedding(e.mid[1:], e.side[1:]), Embedding(e.mid[0], e.side[0]),
                                         use_side=stereo)
                correct = np.zeros((1, sims.size), dtype=bool)
                correct[0, 0] = True
                credit[name][group].append(float(top1_credit(sims[None], correct)[0]))
                gaps[name][group].append(float(sims[0] - sims[1:].max()))
                wins[name][group].append(float(np.mean(sims[0] > sims[1:-1])))
                over_dry[name][group].append(float(sims[0] > sims[-1]))
    results = {}
    for m in metrics:
        per = {"accuracy": credit[m], "gap": gaps[m], "win_rate": wins[m], "beats_dry": over_dry[m]}
        results[m] = {g: {k: float(np.mean(v[g])) for k, v in per.items()} | {"n": len(credit[m][g])}
                      for g in GROUPS}
        results[m]["all"] = {k: float(np.mean([x for g in GROUPS for x in v[g]])) for k, v in per.items()}
        results[m]["all"]["n"] = len(GROUPS) * len(credit[m][GROUPS[0]])
    report = {"task": TASK, "quick": quick, "cases": size["cases"], "seconds": size["seconds"], "seed": seed,
              "metrics": list(metrics), "clips": {p.content_type: len(p) for p in pools},
              "chance": 1.0 / (NEGATIVES + 2), "wall_s": time.perf_counter() - t0, "results": results}
    return write_results(report, out_dir, markdown, plot)


def markdown(report: dict) -> str:
    """The result table: top-1 accuracy (and mean score gap) per family group and metric."""
    lines = [f"# Task 5: setting ranking across recordings{' (quick)' if report['quick'] else ''}", "",
             f"Command: `{command_line(TASK, report)}` · {report['cases']} cases per group · "
             f"{report['seconds']:g} s clips · seed {report['seed']} · wall time {report['wall_s']:.0f} s · "
             f"chance {report['chance']:.2f}", "",
             "Reference: clip A through a chain at a setting; candidates: clip B (another recording of the same "
             f"content type) at that setting, at {NEGATIVES} nearby settings (one parameter moved by at least "
             "0.15 of its range, or all moved a little) and dry. Accuracy: the share of cases where the metric "
             "scores B at the reference's setting highest, which a search needs to land on it. Gap: mean score "
             "of that candidate minus the best other one (positive: ranked first on average). Win rate: the "
             "share of the nearby settings it outscores (chance 0.50). Beats dry: the share of cases where it "
             "outscores the dry B, i.e. where processing B like the reference beats leaving B alone.", "",
             "## Top-1 accuracy (gap)", "",
             "| Metric | " + " | ".join(GROUPS) + " | all |", "|---|" + "---|" * (len(GROUPS) + 1)]
    for m, r in report["results"].items():
        cells = [f"{fmt(r[g]['accuracy'])} ({r[g]['gap']:+.3f})" for g in (*GROUPS, "all")]
        lines.append(f"| {metric_label(m)} | " + " | ".join(cells) + " |")
    lines += ["", "## Win rate over nearby settings / beats dry", "",
              "| Metric | " + " | ".join(GROUPS) + " | all |", "|---|" + "---|" * (len(GROUPS) + 1)]
    for m, r in report["results"].items():
        cells = [f"{fmt(r[g]['win_rate'])} / {fmt(r[g]['beats_dry'])}" for g in (*GROUPS, "all")]
        lines.append(f"| {metric_label(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Grouped bars: accuracy per family group for each metric, chance as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = (*GROUPS, "all")
    metrics = list(report["results"])
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / max(1, len(metrics))
    for k, m in enumerate(metrics):
        vals = [report["results"][m][g]["accuracy"] for g in groups]
        ax.bar(np.arange(len(groups)) + (k - (len(metrics) - 1) / 2) * width, vals, width, label=metric_label(m))
    ax.axhline(report["chance"], color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("top-1 accuracy")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"Setting ranking across recordings ({report['cases']} cases per group"
                 f"{', quick' if report['quick'] else ''})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
