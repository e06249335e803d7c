"""`stito train restraint`: the metrics' noise floors and the prior weight, measured on the training corpus."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from stito_server.audio import Audio, loudness_lufs
from stito_server.distances import multi_resolution_stft_distance
from stito_server.effects.specs import chain_from_dict, load_chain
from stito_server.engine.match import MatchOptions, match
from stito_server.engine.restraint import FLOORS_FILE
from stito_server.metrics import get_metric
from stito_server.resources import package_dir

from .data.clips import RATE, load_clip, load_manifest

CONTENTS = ("speech", "music", "guitar", "drums")
CHAINS = ("pedalboard-strip", "zam-strip")
# Styles for choosing the prior weight: built-in effects only, and none of them one of the evaluation's styles
# (bench/transfer.py: 2 kHz low-pass, 500 Hz high-pass, small room, hall, 300 ms delay, tube, channel strip).
STYLES: dict[str, list[dict]] = {
    "telephone": [{"builtin": "parametric_eq", "fix": {"low_cut_hz": 300.0, "high_cut_hz": 3400.0}}],
    "warm": [{"builtin": "parametric_eq", "fix": {"low_shelf_gain_db": 5.0, "high_shelf_gain_db": -6.0}}],
    "squashed": [{"builtin": "compressor", "fix": {"threshold_db": -30.0, "ratio": 8.0, "attack_ms": 2.0,
                                                  "release_ms": 80.0, "makeup_gain_db": 12.0}}],
    "plate": [{"builtin": "reverb", "fix": {"room_size": 0.7, "damping": 0.3, "wet_level": 0.3,
                                            "dry_level": 0.4, "width": 1.0}}],
    "slapback": [{"builtin": "delay", "fix": {"delay_ms": 120.0, "feedback": 0.15, "mix": 0.3}}],
    "crunch": [{"builtin": "distortion", "fix": {"drive_db": 18.0, "mix": 0.6}}],
}


class Pool:
    """Training clips of one content type with their recording ids."""

    def __init__(self, root: Path, content: str) -> None:
        self.root, self.entries = root, load_manifest(root, content, False)
        self.recordings = np.array([e["recording"] for e in self.entries])

    def pair(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Two peak-normalised ``(2, n)`` clips of different recordings."""
        a = int(rng.integers(len(self.entries)))
        others = np.flatnonzero(self.recordings != self.recordings[a])
        b = int(rng.choice(others))
        return self.stereo(a), self.stereo(b)

    def stereo(self, i: int) -> np.ndarray:
        x = load_clip(self.root, self.entries[i])
        x = np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x
        return (x / max(float(np.abs(x).max()), 1e-9) * 10 ** (-1 / 20)).astype(np.float32)


def draw_pairs(root: Path, n: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``n`` (content, A, B) pairs from different recordings, content types in turn."""
    rng = np.random.default_rng(seed)
    pools = {}
    for c in CONTENTS:
        try:
            pool = Pool(root, c)
        except (FileNotFoundError, ValueError):
            continue
        if len(set(pool.recordings.tolist())) > 1:
            pools[c] = pool
    if not pools:
        raise ValueError(f"no training clips under {root}; run `stito data train` first")
    names = list(pools)
    return [(names[k % len(names)], *pools[names[k % len(names)]].pair(rng)) for k in range(n)]


def _match(a: np.ndarray, b: np.ndarray, chain: str, metric: str, opts: MatchOptions):
    return match(Audio(a, RATE), Audio(b, RATE), load_chain(chain), get_metric(metric), opts)


def no_style(pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], chain: str, metric: str, opts: MatchOptions,
             log: Callable[[str], None]) -> tuple[list[float], list[float]]:
    """Gains and moved effects' contributions of matches whose reference is another recording, unprocessed.

    Run with floors at 0, so nothing but a loss is held back: what the metric gains here is content fitting.
    """
    gains, contributions = [], []
    for k, (content, a, b) in enumerate(pairs):
        r = _match(a, b, chain, metric, replace(opts, gain_floor=0.0, effect_floor=0.0))
        gains.append(max(r.restraint.gain or 0.0, 0.0))
        contributions += [e.contribution for e in r.restraint.effects if e.moved and e.contribution is not None]
        log(f"  no-style {chain} {metric} #{k} ({content}): gain {gains[-1]:.4f}")
    return gains, contributions


def styled(pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], chain: str, metric: str, opts: MatchOptions,
           log: Callable[[str], None]) -> tuple[list[float], list[float]]:
    """MR-STFT distances to the oracle (dB) of matches and of the input unchanged, one style per pair in turn."""
    names = list(STYLES)
    dist, base = [], []
    for k, (content, a, b) in enumerate(pairs):
        style = chain_from_dict({"name": names[k % len(names)], "effects": STYLES[names[k % len(names)]]})
        reference, oracle = style.process(b, RATE), style.process(a, RATE)
        y = _match(a, reference, chain, metric, opts).output
        target = loudness_lufs(oracle, RATE)
        for out, acc in ((y, dist), (a, base)):
            gain = 10 ** ((target - loudness_lufs(out, RATE)) / 20)
            acc.append(multi_resolution_stft_distance((out * np.float32(gain)).astype(np.float32), oracle, RATE))
        log(f"  styled {chain} {metric} #{k} ({names[k % len(names)]}, {content}): {dist[-1]:.2f} dB "
            f"(input {base[-1]:.2f})")
    return dist, base


def calibrate(root: Path, metrics: Sequence[str], prior_weights: Sequence[float], n_pairs: int, quantile: float,
              seed: int, out: Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Choose the prior weight on styled training matches and measure each metric's floors; write the file.

    For each prior weight (on ``pedalboard-strip``, the first metric): the floors from no-style matches, then
    styled matches with them; the weight with the lowest mean oracle distance wins. Each metric's floors are
    then the ``quantile`` of its no-style gains and effect contributions over both chains at that weight.

    Returns:
        What was written to ``out`` (default: the package's ``models/restraint.json``).
    """
    t0 = time.perf_counter()
    calib = draw_pairs(root, n_pairs, seed)
    trial = draw_pairs(root, n_pairs, seed + 1)
    base = MatchOptions.fast(seed=seed, loudness="reference")
    sweep = []
    for w in prior_weights:
        opts = replace(base, prior_weight=w)
        gains, contribs = no_style(calib, CHAINS[0], metrics[0], opts, log)
        floors = (float(np.quantile(gains, quantile)), float(np.quantile(contribs, quantile)) if contribs else 0.0)
        dist, inp = styled(trial, CHAINS[0], metrics[0], replace(opts, gain_floor=floors[0], effect_floor=floors[1]),
                           log)
        sweep.append({"prior_weight": w, "gain_floor": floors[0], "effect_floor": floors[1],
                      "styled_mrstft_db": float(np.mean(dist)), "input_mrstft_db": float(np.mean(inp))})
        log(f"prior weight {w:g}: floors {floors[0]:.4f} / {floors[1]:.4f}, styled {np.mean(dist):.2f} dB "
            f"(input {np.mean(inp):.2f})")
    best = min(sweep, key=lambda s: (round(s["styled_mrstft_db"], 2), -s["prior_weight"]))
    weight = best["prior_weight"]
    entries = {}
    for metric in metrics:
        gains, contribs = [], []
        for chain in CHAINS:
            g, c = no_style(calib, chain, metric, replace(base, prior_weight=weight), log)
            gains += g
            contribs += c
        entries[metric] = {"gain_floor": float(np.quantile(gains, quantile)),
                           "effect_floor": float(np.quantile(contribs, quantile)) if contribs else 0.0,
                           "quantile": quantile, "cases": len(gains), "chains": list(CHAINS),
                           "gains": gains, "contributions": contribs}
        log(f"{metric}: gain floor {entries[metric]['gain_floor']:.4f}, effect floor "
            f"{entries[metric]['effect_floor']:.4f} ({len(gains)} no-style matches)")
    result = {"version": 1, "prior_weight": weight, "sweep": sweep, "metrics": entries, "seed": seed,
              "pairs": n_pairs, "wall_s": time.perf_counter() - t0,
              "command": f"stito train restraint --metrics {','.join(metrics)} --pairs {n_pairs} --seed {seed}"}
    path = out or package_dir("models") / FLOORS_FILE
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result
