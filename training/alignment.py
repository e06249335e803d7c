"""`stito train alignment`: the same-performance detector's thresholds, measured on the training corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from stito_server.audio import Audio
from stito_server.effects.specs import chain_from_dict
from stito_server.engine.aligned_scoring import LevelMel, aligned_window
from stito_server.engine.alignment import ALIGNMENT_FILE, align
from stito_server.engine.options import MatchOptions
from stito_server.metrics import DEFAULT_METRIC
from stito_server.resources import package_dir

from .data.clips import RATE
from .restraint import CONTENTS, STYLES, Pool

KINDS = ("self", "same recording", "same recording, repeated", "other recording")
REPEAT_DB = 3.0  # unprocessed clips of one recording this close at their lag are one loop played again
# The level penalty of a same-performance match, per dB squared beyond the 3 dB tolerance, in AlignedScorer's units
# (0.1 = 1 dB of mean log-mel difference): 2 dB beyond costs 0.04. Chosen, not calibrated: the renders are compared
# level-blind, so without it a chain's gains are free; the output's loudness is set after the match anyway.
LEVEL_WEIGHT = 0.01


def alignment_pairs(root: Path, clips: int, seed: int
                    ) -> list[tuple[str, str, str | None, np.ndarray, np.ndarray, np.ndarray]]:
    """``clips`` cases per pair kind (content types in turn, each style in turn or unprocessed):
    (kind, content, style or None, input, reference, the reference unprocessed).

    "self": the reference is the input through the style, "same recording": another clip of the input's recording,
    "other recording": a clip of another recording (both through the style, or unprocessed every seventh case).
    """
    rng = np.random.default_rng(seed)
    pools = {c: Pool(root, c) for c in CONTENTS}
    names: list[str | None] = list(STYLES) + [None]
    out = []
    for kind in ("self", "same recording", "other recording"):
        for k in range(clips):
            content, style = CONTENTS[k % len(CONTENTS)], names[k % len(names)]
            pool = pools[content]
            a = int(rng.integers(len(pool.entries)))
            if kind == "self":
                b = a
            else:
                same = pool.recordings == pool.recordings[a]
                others = np.flatnonzero(same & (np.arange(len(pool.entries)) != a)) if kind == "same recording" \
                    else np.flatnonzero(~same)
                if not len(others):
                    continue
                b = int(rng.choice(others))
            x, y_dry = pool.stereo(a), pool.stereo(b)
            y = y_dry
            if style is not None:
                y = chain_from_dict({"name": style, "effects": STYLES[style]}).process(y_dry, RATE)
            out.append((kind, content, style, x, y, y_dry))
    return out


def repeated_db(x: np.ndarray, y: np.ndarray, lag_s: float) -> float:
    """Mean level-normalised log-mel difference (dB) of two unprocessed ``(channels, n)`` clips at ``lag_s``: under
    ``REPEAT_DB`` the second is the first again (a loop of the recording), not another moment of it."""
    feats = LevelMel(RATE)
    lag = int(round(lag_s * RATE))
    return float(np.mean(np.abs(feats(x[None]) - feats(aligned_window(y, lag, x.shape[1])[None]))))


def calibrate_alignment(root: Path, clips: int, seed: int, log: Callable[[str], None] = print,
                        write: bool = True) -> dict:
    """Score every pair of ``alignment_pairs``; the coherence threshold lies in the middle of the gap between the
    pairs that are not the same performance and the input through a style (at the highest of the former when there
    is no gap, so none of them passes), and the share of each kind's pairs passing is reported.
    Writes the package's ``models/alignment.json`` when ``write``.

    Returns:
        The entry written: thresholds, the pass rate per kind and every pair's scores.
    """
    rows = []
    for kind, content, style, x, y, y_dry in alignment_pairs(root, clips, seed):
        al = align(Audio(x, RATE), Audio(y, RATE), threshold=np.inf)
        if kind == "same recording" and repeated_db(x, y_dry, al.lag_s) < REPEAT_DB:
            kind = "same recording, repeated"  # a loop: the same audio again, the same performance in effect
        rows.append({"kind": kind, "content": content, "style": style, "onset_score": al.onset_score,
                     "coherence": al.coherence, "lag_s": al.lag_s})
        log(f"  {kind:16s} {content:7s} {style or 'unprocessed':11s} onset {al.onset_score:.3f} "
            f"coherence {al.coherence:.3f}")
    negatives = [r["coherence"] for r in rows if r["kind"] in ("same recording", "other recording")]
    positives = [r["coherence"] for r in rows if r["kind"] == "self"]
    top, bottom = max(negatives), min(positives)
    threshold = (top + bottom) / 2 if bottom > top else top
    passed = {kind: float(np.mean([r["coherence"] > threshold for r in rows if r["kind"] == kind])) for kind in KINDS
              if any(r["kind"] == kind for r in rows)}
    entry = {"version": 2, "coherence_threshold": threshold,
             "rule": "the middle of the gap between the highest coherence of a training pair that is not the same "
                     "performance (another clip of the input's recording, unless it repeats the input's audio within "
                     f"{REPEAT_DB:g} dB: a loop; or another recording) and the lowest of the input through a style; "
                     "the highest of the former when they overlap",
             "command": f"stito train alignment --clips {clips} --seed {seed}", "passed": passed, "pairs": rows}
    log(f"threshold: coherence {threshold:.3f} (other pairs up to {top:.3f}, the input through a style from "
        f"{bottom:.3f}); pass: "
        + ", ".join(f"{k} {v:.0%}" for k, v in passed.items()))
    if write:
        path = package_dir("models") / ALIGNMENT_FILE
        if path.is_file() and "floors" in (old := json.loads(path.read_text(encoding="utf-8"))):
            entry["floors"] = old["floors"]  # kept (``calibrate_floors`` measures them with these thresholds)
        path.write_text(json.dumps(entry, indent=1) + "\n", encoding="utf-8")
        log(f"wrote {path}")
    return entry


def _self_cases(root: Path, cases: int, seed: int) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """``cases`` (content, style, input, reference) with the reference the input through a training style, content
    types and styles in turn."""
    rng = np.random.default_rng(seed)
    pools = {c: Pool(root, c) for c in CONTENTS}
    names = list(STYLES)
    out = []
    for k in range(cases):
        content, style = CONTENTS[k % len(CONTENTS)], names[(k // len(CONTENTS) + k) % len(names)]
        x = pools[content].stereo(int(rng.integers(len(pools[content].entries))))
        out.append((content, style, x, chain_from_dict({"name": style, "effects": STYLES[style]}).process(x, RATE)))
    return out


def _style_kinds(style: str) -> set[str]:
    return {f"builtin:{e['builtin']}" for e in STYLES[style]}


def same_performance_matches(cases: list[tuple[str, str, np.ndarray, np.ndarray]], changes: dict[str, Any],
                             log: Callable[[str], None] = print) -> list[dict]:
    """Matches of training inputs to themselves through a training style (pedalboard-strip, the default metric,
    the fast preset with ``changes``): per case the detection, the MR-STFT distances to the reference of the input
    and of the output (gained to the reference's loudness) and every moved effect's contribution, with whether
    the style has an effect of its kind."""
    from .restraint import _match, oracle_db

    rows = []
    for k, (content, style, x, ref) in enumerate(cases):
        r = _match(x, ref, "pedalboard-strip", DEFAULT_METRIC, MatchOptions.fast(seed=0, loudness="reference",
                                                                                 **changes))
        row = {"content": content, "style": style, "detected": bool(r.same_performance and
                                                                    r.same_performance.same_performance),
               "input_db": oracle_db(x, ref), "matched_db": oracle_db(r.output, ref),
               "gain": r.restraint.gain if r.restraint else None, "wall_s": r.wall_s,
               "contributions": [[e.kind, e.contribution, e.kind in _style_kinds(style)]
                                 for e in (r.restraint.effects if r.restraint else [])
                                 if e.moved and e.contribution is not None],
               "effects": {e.effect: e.contribution for e in (r.restraint.effects if r.restraint else [])
                           if e.engaged and e.contribution is not None},
               "vector": r.vector.tolist(), "start_vector": r.start_vector.tolist()}
        rows.append(row)
        log(f"  #{k} {content:7s} {style:9s} detected {row['detected']!s:5s} input {row['input_db']:.2f} dB, "
            f"matched {row['matched_db']:.2f} dB ({r.wall_s:.1f} s)")
    return rows


FLOOR_GRID = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06, 0.08, 0.1)


def calibrate_floors(root: Path, cases: int, seed: int, log: Callable[[str], None] = print) -> dict:
    """The same-performance floors: same-performance matches of training inputs to themselves through a style, run
    with the floors at 0; then, for each floor of ``FLOOR_GRID``, every engaged effect whose contribution is below it
    goes back to its start and the input is rendered again: the floor with the lowest mean MR-STFT distance to the
    reference (the larger on a tie within 0.005 dB) is the effect and gain floor. Writes them into the package's
    ``models/alignment.json`` (its threshold must be there: run without ``--floors`` first).
    """
    from stito_server.effects.specs import load_chain

    from .restraint import oracle_db

    drawn = _self_cases(root, cases, seed)
    matched = same_performance_matches(drawn, {"gain_floor": 0.0, "effect_floor": 0.0}, log)
    chain = load_chain("pedalboard-strip")
    effect_of_dim = [chain.effects[d.effect].name for d in chain.dims]
    by_case = [(row, x, ref) for row, (_, _, x, ref) in zip(matched, drawn) if row["detected"]]
    rows = [row for row, _, _ in by_case]
    sweep = []
    for floor in FLOOR_GRID:
        dist = []
        for row, x, ref in by_case:
            v, start = np.array(row["vector"]), np.array(row["start_vector"])
            weak = {name for name, c in row["effects"].items() if c < floor}
            keep = np.array([name not in weak for name in effect_of_dim])
            if sum(c for name, c in row["effects"].items() if name not in weak) < floor:
                keep[:] = False  # the gain floor: nothing left that reaches it
            chain.set_vector(np.where(keep, v, start))
            dist.append(oracle_db(chain.process(x, RATE), ref))
        sweep.append({"floor": floor, "mean_db": float(np.mean(dist))})
        log(f"  floor {floor:.3f}: mean {sweep[-1]['mean_db']:.3f} dB")
    best = min(s["mean_db"] for s in sweep)
    floor = max(s["floor"] for s in sweep if s["mean_db"] <= best + 0.005)
    spurious = [c for row in rows for _, c, needed in row["contributions"] if not needed]
    needed = [c for row in rows for _, c, needed in row["contributions"] if needed]
    path = package_dir("models") / ALIGNMENT_FILE
    entry = json.loads(path.read_text(encoding="utf-8"))
    entry["floors"] = {
        "gain_floor": floor, "effect_floor": floor, "level_weight": LEVEL_WEIGHT,
        "source": f"stito train alignment --floors {cases} --seed {seed}: the floor of the lowest mean MR-STFT "
                  f"distance to the reference over {len(rows)} training matches",
        "sweep": sweep, "spurious": spurious, "needed": needed, "cases": rows}
    path.write_text(json.dumps(entry, indent=1) + "\n", encoding="utf-8")
    log(f"floors: {floor:.4f} (input {np.mean([r['input_db'] for r in rows]):.3f} dB; contributions of effects the "
        f"style does not have: {len(spurious)}, of those it has: {len(needed)}); wrote {path}")
    return entry["floors"]


def check(root: Path, cases: int, seed: int, log: Callable[[str], None] = print) -> dict:
    """The product as shipped against ``same_performance="off"`` (the usual match) on training inputs matched to
    themselves through a style: mean MR-STFT distance to the reference and a 90 % paired bootstrap interval of the
    difference, over the detected cases and over all. Writes nothing into the package."""
    drawn = _self_cases(root, cases, seed)
    shipped = same_performance_matches(drawn, {}, log)
    usual = same_performance_matches(drawn, {"same_performance": "off"}, log)
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"cases": cases, "seed": seed, "detected": sum(r["detected"] for r in shipped)}
    for name, keep in (("detected", [r["detected"] for r in shipped]), ("all", [True] * len(shipped))):
        a = np.array([r["matched_db"] for r, k in zip(shipped, keep) if k])
        b = np.array([r["matched_db"] for r, k in zip(usual, keep) if k])
        x = np.array([r["input_db"] for r, k in zip(shipped, keep) if k])
        if not len(a):
            continue
        d = a - b
        boot = [float(np.mean(d[rng.integers(len(d), size=len(d))])) for _ in range(2000)]
        out[name] = {"n": len(a), "input_db": float(x.mean()), "usual_db": float(b.mean()),
                     "same_performance_db": float(a.mean()), "difference_db": float(d.mean()),
                     "interval_90": [float(np.quantile(boot, 0.05)), float(np.quantile(boot, 0.95))],
                     "worse_than_input": int(np.sum(a > x + 0.01)),  # by more than 0.01 dB (float noise)
                     "wall_s": float(np.mean([r["wall_s"] for r, k in zip(shipped, keep) if k]))}
        o = out[name]
        log(f"{name} ({o['n']}): input {o['input_db']:.2f} dB, usual {o['usual_db']:.2f}, same-performance "
            f"{o['same_performance_db']:.2f} ({o['difference_db']:+.2f} [{o['interval_90'][0]:+.2f}, "
            f"{o['interval_90'][1]:+.2f}]); worse than the input: {o['worse_than_input']}; {o['wall_s']:.1f} s a match")
    out["rows"] = {"same_performance": shipped, "usual": usual}
    return out
