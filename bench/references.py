"""Task 4 with several references: 1, 2 and 3 references, each from another recording, all through one style."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from stito_server.audio import Audio
from stito_server.effects.specs import load_chain
from stito_server.engine.match import match
from stito_server.metrics import DEFAULT_METRIC, get_metric
from training.data.clips import RATE
from training.data.corpus import build_eval

from .common import ClipPool, command_line, grouped_bars, peak_normalize, write_results
from .transfer import BUILTIN_CHAIN, CONTENTS, STYLE_NAMES, mean_interval, measures, stito_options, style_chain

TASK = "references"
COUNTS = (1, 2, 3)  # references per match, the first ones of the same three
# cells as task 4's "cross" variant: every style x content type, twice, with the product's default search
FULL = {"cells": tuple((s, c) for s in STYLE_NAMES for c in CONTENTS), "repeats": 2, "options": None}
QUICK = {"cells": (("highpass", "speech"),), "repeats": 1,
         "options": {"popsize": 4, "max_generations": 2, "time_budget_s": None, "excerpt_seconds": 3.0}}
METHODS = ("input", *(f"stito_{k}" for k in COUNTS))


def run_case(dry: np.ndarray, sources: list[np.ndarray], style: str, cfg: dict, seed: int,
             sample_rate: int = RATE) -> dict:
    """The input unchanged and stito with the first 1, 2 and 3 references, each scored against the oracle.

    Args:
        dry: ``(2, n)`` float32 input, peak-normalised.
        sources: ``len(COUNTS)`` clips ``(2, m)`` from three other recordings, peak-normalised.
        style: One of task 4's styles.
        cfg: ``FULL`` or ``QUICK``.
        seed: Seed of the optimiser.
        sample_rate: In Hz.

    Returns:
        ``{method: measures (+ "accepted", "wall_s")}``.
    """
    chain = style_chain(style)
    refs = [Audio(chain.process(s, sample_rate), sample_rate) for s in sources]
    oracle = chain.process(dry, sample_rate)
    out = {"input": measures(dry, oracle, sample_rate)}
    for k in COUNTS:
        t0 = time.perf_counter()
        result = match(Audio(dry, sample_rate), refs[:k] if k > 1 else refs[0], load_chain(BUILTIN_CHAIN),
                       get_metric(DEFAULT_METRIC), stito_options(cfg, seed))
        out[f"stito_{k}"] = measures(result.output, oracle, sample_rate) | {
            "accepted": None if result.restraint is None else bool(result.restraint.accepted),
            "wall_s": time.perf_counter() - t0}
    return out


def run(quick: bool, out_dir: Path, metrics: Sequence[str] = (), seed: int = 0,
        cache: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Run the several-reference task and write ``references.md``, ``.json`` and ``.png``; resumes from
    ``references.partial.jsonl`` in ``out_dir`` (``metrics`` is ignored: the product's default metric runs)."""
    t0 = time.perf_counter()
    cfg = QUICK if quick else FULL
    data_root, _ = build_eval(quick=quick, cache=cache, log=log)
    pools = {c: ClipPool(data_root, c, quick) for c in dict.fromkeys(c for _, c in cfg["cells"])}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f"{TASK}.partial.jsonl"
    key = json.dumps({"settings": cfg, "seed": seed}, sort_keys=True, default=list)
    done = {}
    if partial.exists() and partial.read_text().splitlines()[:1] == [key]:
        done = {(c["style"], c["content"], c["seed"]): c for c in map(json.loads, partial.read_text().splitlines()[1:])}
    else:
        partial.write_text(key + "\n")
    cases = []
    for cell, (style, content) in enumerate(cfg["cells"]):
        pool = pools[content]
        for rep in range(cfg["repeats"]):
            case_seed = seed + 100 * cell + rep  # task 4's "cross" seeds: the same inputs and first references
            if (style, content, case_seed) in done:
                cases.append(done[(style, content, case_seed)])
                continue
            rng = np.random.default_rng(case_seed)
            a = int(rng.integers(len(pool)))
            picks: list[int] = []
            for _ in COUNTS:  # each reference from a recording not used yet (nor the input's)
                picks.append(pool.other_recording(a, rng, exclude={str(pool.recordings[b]) for b in picks}))
            t_case = time.perf_counter()
            res = run_case(peak_normalize(pool.stereo(a)), [peak_normalize(pool.stereo(b)) for b in picks],
                           style, cfg, case_seed)
            case = {"style": style, "content": content, "seed": case_seed, "input": pool.entries[a]["id"],
                    "sources": [pool.entries[b]["id"] for b in picks], "results": res}
            cases.append(case)
            with partial.open("a") as f:
                f.write(json.dumps(case) + "\n")
            log(f"{TASK}: {style} / {content}: MR-STFT dB " + ", ".join(
                f"{m} {res[m]['mrstft_db']:.2f}" for m in METHODS) + f" ({time.perf_counter() - t_case:.0f} s)")
    results = {}
    for m in METHODS:
        rows = [c["results"][m] for c in cases]
        r = results[m] = {k: float(np.mean([x[k] for x in rows])) for k in ("mrstft_db", "logmel_db")}
        for k in ("mrstft_db", "logmel_db"):
            r[f"{k}_interval"] = mean_interval([x[k] for x in rows])
            for base in ("input", "stito_1"):
                d = [c["results"][m][k] - c["results"][base][k] for c in cases]
                r[f"{k}_vs_{base}"], r[f"{k}_vs_{base}_interval"] = float(np.mean(d)), mean_interval(d)
        if m != "input":
            r["accepted"] = float(np.mean([bool(x["accepted"]) for x in rows]))
    report = {"task": TASK, "quick": quick, "settings": cfg, "seed": seed, "chain": BUILTIN_CHAIN,
              "metric": DEFAULT_METRIC, "metrics": [DEFAULT_METRIC], "methods": list(METHODS), "cases": cases, "results": results,
              "wall_s": time.perf_counter() - t0, "resumed_cases": len(done)}
    report = write_results(report, out_dir, markdown, plot)
    partial.unlink()
    return report


def _label(m: str) -> str:
    return "input unchanged" if m == "input" else f"stito, {m.split('_')[1]} reference(s)"


def markdown(report: dict) -> str:
    """One table: mean distances to the oracle, with intervals, and the paired differences to 1 reference."""
    r = report["results"]
    n = len(report["cases"])
    ci = lambda x, k: f"{x[k]:+.2f} [{x[k + '_interval'][0]:+.2f}, {x[k + '_interval'][1]:+.2f}]"
    lines = [f"# Task 4 with several references{' (quick)' if report['quick'] else ''}", "",
             f"Command: `{command_line(TASK, report)}` · {n} cases (task 4's styles x content types, references "
             f"each from another recording, all through the style) · {report['chain']}, metric "
             f"{report['metric']}, the product's default search · seed {report['seed']} · wall time "
             f"{report['wall_s']:.0f} s", "",
             "Distances to the oracle (the input through the true style), mean with 90 % bootstrap interval; "
             "differences are paired per case (negative: closer).", "",
             "| method | MR-STFT dB | log-mel dB | MR-STFT vs input | MR-STFT vs 1 reference | log-mel vs 1 reference "
             "| changed something |", "|---|---|---|---|---|---|---|"]
    for m in report["methods"]:
        x = r[m]
        lines.append(f"| {_label(m)} | {ci(x, 'mrstft_db')} | {ci(x, 'logmel_db')} | {ci(x, 'mrstft_db_vs_input')} | "
                     f"{ci(x, 'mrstft_db_vs_stito_1')} | {ci(x, 'logmel_db_vs_stito_1')} | "
                     f"{x.get('accepted', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Bars: mean MR-STFT and log-mel distance to the oracle per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    grouped_bars(ax, [_label(m) for m in report["methods"]],
                 {k: [report["results"][m][k] for m in report["methods"]] for k in ("mrstft_db", "logmel_db")},
                 rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("distance to the oracle (dB)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
