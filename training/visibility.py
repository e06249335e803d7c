"""How far each style moves each stats descriptor, against how far recordings differ (`stito bench visibility`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from stito_server.effects.chain import Chain
from stito_server.metrics import get_metric
from stito_server.metrics.stats import AMPLITUDE, amplitude_shares, echo_strengths

from .data.clips import RATE
from .restraint import pools_of_several_recordings

# Candidate descriptors, not in the shipped metric: the share of samples within 6 / 12 dB of the peak (an amplitude
# histogram, ``stats.AMPLITUDE``: limiting, compression with make-up and saturation pile samples up near the peak),
# the 10th percentile of the crest factor of 50 ms frames (saturation flattens the peaks within each frame) and the
# strength of an echo (``stats.echo_strengths``: a delay adds a copy of the signal, a ripple in every frame's log
# spectrum).
CANDIDATES = (*AMPLITUDE, "frame_crest_p10_db", "echo_strength_db")
FRAME_S = 0.05
ACTIVE_DB = 35.0  # frames within this of the loudest count (as the metric's)


def candidate_descriptors(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``CANDIDATES`` of one clip.

    Args:
        audio: ``(channels, samples)`` float32; the mid (channel mean) is peak-normalised first.
        sample_rate: In Hz.

    Returns:
        ``(len(CANDIDATES),)`` float64: two shares in dB (10 log10), a crest factor in dB and an echo strength in dB.
    """
    mid = np.asarray(audio, dtype=np.float64).mean(axis=0)
    mid = mid / max(float(np.abs(mid).max()), 1e-9)
    n = max(int(FRAME_S * sample_rate), 1)
    frames = mid[: len(mid) // n * n].reshape(-1, n)
    rms = np.sqrt(np.mean(np.square(frames), axis=1))
    level = 20 * np.log10(np.maximum(rms, 1e-9))
    active = (level >= level.max() - ACTIVE_DB) & (rms > 0)
    crest = 20 * np.log10(np.maximum(np.abs(frames[active]).max(axis=1), 1e-9) / rms[active])
    return np.concatenate([amplitude_shares(mid[None])[0], [float(np.percentile(crest, 10)) if len(crest) else 0.0],
                           echo_strengths(mid[None], sample_rate)[0]])


def visibility(root: Path, styles: dict[str, Chain], clips_per_type: int = 24, seed: int = 5,
               log: Callable[[str], None] = print) -> dict:
    """Per style and descriptor, the style's consistent shift against the spread between recordings.

    For ``clips_per_type`` training clips A per content type: the descriptors' gap to a clip of another recording
    and to another clip of A's own recording (when it has one), and what each style does to them, d(style(A)) -
    d(A). A descriptor's spread is the standard deviation of the gaps over all types, divided by sqrt 2 (one
    clip's deviation); a style's shift is the magnitude of its mean delta per content type, averaged over types.
    Visibility = shift / spread: above 1 a style moves the descriptor more than recordings differ in it.

    Args:
        root: The training corpus (``stito data train``).
        styles: Name -> chain with every setting fixed.
        clips_per_type: Clips A per content type.
        seed: Seed of the draw.
        log: Progress lines.

    Returns:
        ``{"descriptors": names (the metric's, then CANDIDATES), "content_gap": {"other_recording",
        "own_recording"}, "styles": {name: {"metric_effect", "visibility", "visibility_own"}}, "clips"}``;
        content_gap and metric_effect are in the metric's own units (mean squared gap in its spreads over its
        descriptors: what its distance adds up); visibility_own is against clips of one recording (None without
        any recording of two clips).
    """
    metric = get_metric("stats")
    dims = len(metric.names)
    rng = np.random.default_rng(seed)

    def describe(x: np.ndarray) -> np.ndarray:
        return np.concatenate([metric.embed(x[None], RATE).mid.mean(axis=0), candidate_descriptors(x, RATE)])

    cross, own = [], []
    deltas: dict[str, dict[str, list[np.ndarray]]] = {s: {} for s in styles}
    for content, pool in pools_of_several_recordings(root).items():
        for _ in range(clips_per_type):
            a = int(rng.integers(len(pool.entries)))
            x = pool.stereo(a)
            dx = describe(x)
            cross.append(dx - describe(pool.stereo(int(rng.choice(pool.others(a))))))
            same = pool.mates(a)
            if len(same):
                own.append(dx - describe(pool.stereo(int(rng.choice(same)))))
            for name, chain in styles.items():
                deltas[name].setdefault(content, []).append(describe(chain.process(x, RATE)) - dx)
        log(f"  {content}: {clips_per_type} clips")
    if not cross:
        raise ValueError(f"no content type under {root} has two recordings; run `stito data train` first")
    gaps = np.array(cross)
    spread = gaps.std(axis=0) / np.sqrt(2) + 1e-9
    own_spread = np.array(own).std(axis=0) / np.sqrt(2) + 1e-9 if len(own) > 1 else None

    def metric_units(d: np.ndarray) -> float:
        return float(np.mean(np.sum(np.square(d[:, :dims] / metric.scale), axis=1)) / dims)

    out = {}
    for name, per_type in deltas.items():
        shift = np.mean([np.abs(np.mean(v, axis=0)) for v in per_type.values()], axis=0)
        out[name] = {"metric_effect": metric_units(np.concatenate([np.array(v) for v in per_type.values()])),
                     "visibility": (shift / spread).tolist(),
                     "visibility_own": None if own_spread is None else (shift / own_spread).tolist()}
    return {"descriptors": metric.names + list(CANDIDATES),
            "content_gap": {"other_recording": metric_units(gaps),
                            "own_recording": metric_units(np.array(own)) if own else None},
            "styles": out, "clips": len(cross), "seed": seed}


def table(result: dict, top: int = 4) -> list[str]:
    """Markdown lines: per style, its effect in the metric's units, its most visible descriptors and the
    candidates' visibility (against other recordings / clips of one recording)."""
    names = result["descriptors"]
    cand = [names.index(c) for c in CANDIDATES]
    gap = result["content_gap"]
    own = "n/a" if gap["own_recording"] is None else f"{gap['own_recording']:.2f}"
    lines = [f"Content gap in the metric's units: another recording {gap['other_recording']:.2f}, another clip of "
             f"the recording {own}.", "",
             "| style | effect (metric units) | most visible descriptors | " + " | ".join(CANDIDATES) + " |",
             "|---|---|---|" + "---|" * len(CANDIDATES)]

    def pair(s: dict, j: int) -> str:
        o = s["visibility_own"]
        return f"{s['visibility'][j]:.2f}" + ("" if o is None else f" / {o[j]:.2f}")

    for name, s in result["styles"].items():
        order = np.argsort(-np.array(s["visibility"]))[:top]
        best = ", ".join(f"{names[j]} {pair(s, j)}" for j in order)
        lines.append(f"| {name} | {s['metric_effect']:.2f} | {best} | " + " | ".join(pair(s, j) for j in cand) + " |")
    return lines
