"""Whether the input and a reference alone tell a processed reference from an unprocessed one (`stito bench separation`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from stito_server.effects.chain import Chain
from stito_server.metrics.stats import StatsMetric

from .data.clips import RATE
from .restraint import pools_of_several_recordings
from .visibility import CANDIDATES, candidate_descriptors

# Statistics of a reference's gaps to the input, z = (d(B) - d(A)) / spread per descriptor, that a rule could use:
# the metric's own distance (the mean squared gap, what the floors are shares of), and three that look for a few
# descriptors far out (a style moves a few, content all of them a little), each gap in units of its own 0.95 / 0.99
# quantile over unprocessed pairs from other recordings.
STATISTICS = ("distance", "largest gap", "three largest gaps", "gaps beyond q95", "gaps beyond q99")


def gap_statistics(z: np.ndarray, q95: np.ndarray, q99: np.ndarray,
                   weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``STATISTICS`` of gaps.

    Args:
        z: ``(cases, dims)`` gaps of the reference's descriptors to the input's, in the metric's spreads.
        q95: ``(dims,)`` 0.95 quantile of ``|z|`` over unprocessed pairs from other recordings.
        q99: ``(dims,)`` their 0.99 quantile.
        weights: ``(dims,)`` each gap's weight in the distance (the metric's ``weights``); None: one each.

    Returns:
        Name -> ``(cases,)`` float64.
    """
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    r = np.abs(z) / q95
    return {"distance": np.average(np.square(z), axis=1, weights=weights), "largest gap": r.max(axis=1),
            "three largest gaps": np.sort(r, axis=1)[:, -3:].mean(axis=1),
            "gaps beyond q95": np.sum(np.abs(z) > q95, axis=1).astype(np.float64),
            "gaps beyond q99": np.sum(np.abs(z) > q99, axis=1).astype(np.float64)}


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The probability that a positive case scores above a negative one (ties count half): 0.5 is chance."""
    p, n = np.asarray(positive, np.float64)[:, None], np.asarray(negative, np.float64)[None, :]
    return float(np.mean(p > n) + 0.5 * np.mean(p == n))


def separation(root: Path, styles: dict[str, Chain], clips_per_type: int = 24, calibration_per_type: int = 24,
               seed: int = 7, prior_path: Path | None = None, candidates: bool = False,
               log: Callable[[str], None] = print) -> dict:
    """Per style and statistic, how well the statistic tells a reference through the style from another recording
    left unprocessed (AUC), with the reference from another recording and from the input's own recording.

    For ``clips_per_type`` training clips A per content type: a clip B of another recording and, when A's recording
    has another clip, one B' of it; the gaps of B unprocessed (the negatives) and of each style applied to B and to
    B' (the positives). The quantiles of the gap statistics come from ``calibration_per_type`` other unprocessed
    pairs per type, drawn apart. Descriptors of whole clips (the match's are of excerpts).

    Args:
        root: The training corpus (``stito data train``).
        styles: Name -> chain with every setting fixed.
        clips_per_type: Clips A per content type.
        calibration_per_type: Unprocessed pairs per content type for the quantiles (at least 2 in all).
        seed: Seed of the draws.
        prior_path: The stats metric's prior file (its descriptors and spreads); None: the shipped one. A prior fit
            with other descriptors (``stito train stats-prior --out``) measures them.
        candidates: Also the candidate descriptors of ``visibility.CANDIDATES`` (not in any metric yet), each in
            units of its spread between recordings (the calibration pairs' gaps / sqrt 2); per style, the AUC of
            each candidate's gap alone is reported too.
        log: Progress lines.

    Returns:
        ``{"statistics", "descriptors", "cases": {"other_recording", "own_recording", "unprocessed"},
        "styles": {name: {statistic: {"other_recording": AUC, "own_recording": AUC or None}}}, "candidates":
        {name: {candidate: {...}}} (with ``candidates``), "seed"}``.
    """
    metric = StatsMetric(prior_path=prior_path)
    rng = np.random.default_rng(seed)

    def describe(x: np.ndarray) -> np.ndarray:
        d = metric.embed(x[None], RATE).mid.astype(np.float64).mean(axis=0)
        return np.concatenate([d, candidate_descriptors(x, RATE)]) if candidates else d

    # gaps are kept raw, d(B) - d(A), and divided by the spreads once the candidates' are known
    pools = pools_of_several_recordings(root)
    if not pools:
        raise ValueError(f"no content type under {root} has two recordings; run `stito data train` first")
    calibration = []
    for pool in pools.values():
        for _ in range(calibration_per_type):
            a, b = pool.pair(rng)
            calibration.append(describe(b) - describe(a))
    if len(calibration) < 2:
        raise ValueError("the quantiles need at least 2 calibration pairs")
    dims = len(metric.names)
    raw = np.array(calibration)
    scale = np.concatenate([metric.scale, raw[:, dims:].std(axis=0) / np.sqrt(2) + 1e-9])
    cal = np.abs(raw / scale)
    q95, q99 = np.quantile(cal, 0.95, axis=0) + 1e-9, np.quantile(cal, 0.99, axis=0) + 1e-9
    weights = None if metric.weights is None else np.concatenate([metric.weights, np.ones(len(scale) - dims)])
    none: list[np.ndarray] = []
    other: dict[str, list[np.ndarray]] = {s: [] for s in styles}
    own: dict[str, list[np.ndarray]] = {s: [] for s in styles}
    for content, pool in pools.items():
        for _ in range(clips_per_type):
            i = int(rng.integers(len(pool.entries)))
            da = describe(pool.stereo(i))
            b = pool.stereo(int(rng.choice(pool.others(i))))
            mates = pool.mates(i)
            b_own = pool.stereo(int(rng.choice(mates))) if len(mates) else None
            none.append(describe(b) - da)
            for name, chain in styles.items():
                other[name].append(describe(chain.process(b, RATE)) - da)
                if b_own is not None:
                    own[name].append(describe(chain.process(b_own, RATE)) - da)
        log(f"  {content}: {clips_per_type} clips")
    z_none = np.array(none) / scale
    negatives = gap_statistics(z_none, q95, q99, weights)
    out, per_candidate = {}, {}
    for name in styles:
        z_other = np.array(other[name]) / scale
        z_own = np.array(own[name]) / scale if own[name] else None
        pos_other = gap_statistics(z_other, q95, q99, weights)
        pos_own = gap_statistics(z_own, q95, q99, weights) if z_own is not None else None
        out[name] = {s: {"other_recording": auc(pos_other[s], negatives[s]),
                         "own_recording": None if pos_own is None else auc(pos_own[s], negatives[s])}
                     for s in STATISTICS}
        if candidates:
            per_candidate[name] = {c: {"other_recording": auc(np.abs(z_other[:, dims + j]), np.abs(z_none[:, dims + j])),
                                       "own_recording": None if z_own is None else
                                       auc(np.abs(z_own[:, dims + j]), np.abs(z_none[:, dims + j]))}
                                   for j, c in enumerate(CANDIDATES)}
    return {"statistics": list(STATISTICS), "descriptors": metric.names + (list(CANDIDATES) if candidates else []),
            "candidates": per_candidate,
            "cases": {"other_recording": len(none), "own_recording": len(next(iter(own.values()), [])),
                      "unprocessed": len(none), "calibration": len(calibration)},
            "styles": out, "seed": seed}


def table(result: dict) -> list[str]:
    """Markdown lines: per style, each statistic's AUC against unprocessed references from other recordings, with
    the styled reference from another recording / from the input's own."""
    stats = result["statistics"]
    c = result["cases"]
    lines = [f"AUC of a styled reference against an unprocessed one from another recording ({c['unprocessed']} "
             f"unprocessed, {c['own_recording']} with a clip of the input's own recording; quantiles from "
             f"{c['calibration']} other unprocessed pairs); cells: reference from another recording / from the "
             "input's own. 0.5 is chance.", "",
             "| style | " + " | ".join(stats) + " |", "|---|" + "---|" * len(stats)]

    def cell(v: dict) -> str:
        return f"{v['other_recording']:.2f}" + ("" if v["own_recording"] is None else f" / {v['own_recording']:.2f}")

    cands = result.get("candidates") or {}
    names = list(next(iter(cands.values()))) if cands else []
    lines[2] += "".join(f" {c} alone |" for c in names)
    lines[3] += "---|" * len(names)
    for name, per in result["styles"].items():
        lines.append(f"| {name} | " + " | ".join(cell(per[s]) for s in stats) + " |"
                     + "".join(f" {cell(cands[name][c])} |" for c in names))
    return lines
