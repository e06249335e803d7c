"""`stito train alignment`: the same-performance detector's thresholds, measured on the training corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from stito_server.audio import Audio
from stito_server.effects.specs import chain_from_dict
from stito_server.engine.alignment import ALIGNMENT_FILE, align
from stito_server.resources import package_dir

from .data.clips import RATE
from .restraint import CONTENTS, STYLES, Pool

KINDS = ("self", "same recording", "other recording")


def alignment_pairs(root: Path, clips: int, seed: int) -> list[tuple[str, str, str | None, np.ndarray, np.ndarray]]:
    """``clips`` cases per pair kind (content types in turn, each style in turn or unprocessed):
    (kind, content, style or None, input, reference).

    "self": the reference is the input through the style, "same recording": another clip of the input's recording,
    "other recording": a clip of another recording (both through the style, or unprocessed every seventh case).
    """
    rng = np.random.default_rng(seed)
    pools = {c: Pool(root, c) for c in CONTENTS}
    names: list[str | None] = list(STYLES) + [None]
    out = []
    for kind in KINDS:
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
            x, y = pool.stereo(a), pool.stereo(b)
            if style is not None:
                y = chain_from_dict({"name": style, "effects": STYLES[style]}).process(y, RATE)
            out.append((kind, content, style, x, y))
    return out


def calibrate_alignment(root: Path, clips: int, seed: int, log: Callable[[str], None] = print,
                        write: bool = True) -> dict:
    """Score every pair of ``alignment_pairs``; each threshold is the highest score of a pair that is not the same
    performance (so none of the training's other pairs pass both), and the share of "self" pairs passing is reported.
    Writes the package's ``models/alignment.json`` when ``write``.

    Returns:
        The entry written: thresholds, the pass rate per kind and every pair's scores.
    """
    rows = []
    for kind, content, style, x, y in alignment_pairs(root, clips, seed):
        al = align(Audio(x, RATE), Audio(y, RATE), thresholds=(np.inf, np.inf))
        rows.append({"kind": kind, "content": content, "style": style, "onset_score": al.onset_score,
                     "coherence": al.coherence, "lag_s": al.lag_s})
        log(f"  {kind:16s} {content:7s} {style or 'unprocessed':11s} onset {al.onset_score:.3f} "
            f"coherence {al.coherence:.3f}")
    negatives = [r for r in rows if r["kind"] != "self"]
    onset = max(r["onset_score"] for r in negatives)
    coherence = max(r["coherence"] for r in negatives)
    passed = {kind: float(np.mean([r["onset_score"] >= onset and r["coherence"] >= coherence
                                   for r in rows if r["kind"] == kind])) for kind in KINDS}
    entry = {"version": 1, "onset_threshold": onset, "coherence_threshold": coherence,
             "rule": "each threshold is the highest score of a training pair that is not the same performance",
             "command": f"stito train alignment --clips {clips} --seed {seed}", "passed": passed, "pairs": rows}
    log(f"thresholds: onset {onset:.3f}, coherence {coherence:.3f}; pass: "
        + ", ".join(f"{k} {v:.0%}" for k, v in passed.items()))
    if write:
        path = package_dir("models") / ALIGNMENT_FILE
        path.write_text(json.dumps(entry, indent=1) + "\n", encoding="utf-8")
        log(f"wrote {path}")
    return entry
