"""Oracle quality of the fast preset against the paper's settings over several cases and seeds (bench speed)."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from stito_server.audio import Audio
from stito_server.effects.specs import load_chain

from .speed_cases import material, oracle_distance, style_similarity

PRESETS = ("fast", "paper")
BOOTSTRAP_RESAMPLES, CI_LEVEL = 2000, 0.90  # interval of the median paired difference (single runs spread by dB)


def median_interval(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval (``CI_LEVEL``, percentile method) of the median of ``values``.

    Args:
        values: Paired differences, one per (case, seed).
        seed: Seed of the resampling (the interval is reproducible).

    Returns:
        ``(low, high)``; ``(nan, nan)`` without values.
    """
    if len(values) == 0:
        return float("nan"), float("nan")
    v = np.asarray(values, dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, len(v), (BOOTSTRAP_RESAMPLES, len(v)))
    medians = np.median(v[picks], axis=1)
    tail = (1.0 - CI_LEVEL) / 2.0 * 100.0
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100.0 - tail))


def _one(preset: str, case: dict[str, np.ndarray], chain_name: str, metric, seed: int, sample_rate: int,
         changes: dict) -> dict:
    from stito_server.engine.match import MatchOptions, match

    opts = MatchOptions.preset(preset, seed=seed, **changes)
    t0 = time.perf_counter()
    result = match(Audio(case["input"], sample_rate), Audio(case["reference"], sample_rate), load_chain(chain_name),
                   metric, opts)
    wall = time.perf_counter() - t0
    return {"preset": preset, "seed": seed, "wall_s": wall, "evaluations": result.search.evaluations,
            "generations": len(result.search.trajectory), "stop_reason": result.search.stop_reason,
            "chosen": result.pick["chosen"],
            "oracle_mrstft_db": oracle_distance(result.output, case["oracle"], sample_rate),
            "style_similarity": style_similarity(result.output, case["reference"], metric, sample_rate)}


def summarize(runs: list[dict]) -> dict:
    """Medians per preset and the paired comparison (same case, same seed) of fast against paper.

    Args:
        runs: Rows of ``run``'s ``"runs"`` (keys case, preset, seed, oracle_mrstft_db, ...).

    Returns:
        ``{"fast_oracle_mrstft_db", "paper_oracle_mrstft_db"`` (medians over all runs), the same for
        ``style_similarity``, ``"median_difference_db"`` (median over pairs of fast minus paper; negative: fast
        closer to the oracle), ``"difference_interval_db"`` (its bootstrap interval, ``median_interval``),
        ``"fast_closer"`` (pairs where fast is closer), ``"pairs"``,
        ``"fast_no_worse"`` (fast's median distance at most paper's)``}``.
    """
    by = {p: {(r["case"], r["seed"]): r for r in runs if r["preset"] == p} for p in PRESETS}
    keys = sorted(set(by["fast"]) & set(by["paper"]))
    diff = [by["fast"][k]["oracle_mrstft_db"] - by["paper"][k]["oracle_mrstft_db"] for k in keys]
    out = {f"{p}_{m}": float(np.median([r[m] for r in by[p].values()])) if by[p] else float("nan")
           for p in PRESETS for m in ("oracle_mrstft_db", "style_similarity", "wall_s", "evaluations")}
    out |= {"median_difference_db": float(np.median(diff)) if diff else float("nan"),
            "difference_interval_db": list(median_interval(diff)),
            "fast_closer": int(sum(d < 0 for d in diff)), "pairs": len(keys),
            "fast_no_worse": bool(out["fast_oracle_mrstft_db"] <= out["paper_oracle_mrstft_db"])}
    return out


def run(chain_name: str, metric, cases: int, seeds: Sequence[int], seconds: float, sample_rate: int,
        changes: dict[str, dict] | None = None,
        log: Callable[[str], None] = print) -> dict:
    """Match every case with every seed under the fast preset and under the paper's settings; oracle distances.

    Both presets run in this process with the match's own (fast) renderer: the paper's settings differ from
    the fast preset in the search (popsize 64, 25 generations, two 5.5 s excerpts), which is what decides
    quality; the naive baseline's serial, re-creating renderer changes only its speed. The fast preset keeps
    its time budget, so the machine should be as idle as for the timed runs.

    Args:
        chain_name: A chain with a speed case (``speed_cases.TRUE_SETTINGS``).
        metric: The ``StyleMetric`` both presets optimise.
        cases: Cases 0..cases-1; case k: other generated recordings (seeds + k * ``CASE_SEED_STEP``) through
            the same true setting (case 0 is the timed case).
        seeds: Optimiser seeds, each run on every case.
        seconds: Length of the input and reference, in seconds.
        sample_rate: In Hz.
        changes: Per preset name, options changed from the preset (the quick run's tiny searches).
        log: Progress printer.

    Returns:
        ``{"cases", "seeds", "input_oracle_mrstft_db": {case: distance of the unprocessed input}, "runs": [...],
        "summary": summarize(runs)}``.
    """
    runs, inputs = [], {}
    for k in range(cases):
        case = material(chain_name, seconds, sample_rate, case=k)
        inputs[k] = oracle_distance(case["input"], case["oracle"], sample_rate)
        for seed in seeds:
            for preset in PRESETS:
                row = {"case": k, **_one(preset, case, chain_name, metric, seed, sample_rate,
                                              (changes or {}).get(preset, {}))}
                runs.append(row)
                log(f"quality: {chain_name} case {k} seed {seed} {preset}: {row['oracle_mrstft_db']:.2f} dB to the "
                    f"oracle (input {inputs[k]:.2f}), {row['evaluations']} evaluations, {row['wall_s']:.0f} s")
    return {"cases": cases, "seeds": list(seeds), "input_oracle_mrstft_db": inputs, "runs": runs,
            "summary": summarize(runs)}
