"""`stito train restraint`: the metrics' noise floors and the prior weight, measured on the training corpus."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

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

    def others(self, i: int) -> np.ndarray:
        """Indices of the clips of other recordings than clip ``i``'s."""
        return np.flatnonzero(self.recordings != self.recordings[i])

    def mates(self, i: int) -> np.ndarray:
        """Indices of the other clips of clip ``i``'s recording (empty when it has one)."""
        return np.flatnonzero((self.recordings == self.recordings[i]) & (np.arange(len(self.entries)) != i))

    def pair(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Two peak-normalised ``(2, n)`` clips of different recordings."""
        a = int(rng.integers(len(self.entries)))
        b = int(rng.choice(self.others(a)))
        return self.stereo(a), self.stereo(b)

    def stereo(self, i: int) -> np.ndarray:
        x = load_clip(self.root, self.entries[i])
        x = np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x
        return (x / max(float(np.abs(x).max()), 1e-9) * 10 ** (-1 / 20)).astype(np.float32)


def pools_of_several_recordings(root: Path) -> dict[str, Pool]:
    """The ``Pool`` of each content type (in ``CONTENTS`` order) that the corpus has with two recordings or more."""
    out = {}
    for c in CONTENTS:
        try:
            pool = Pool(root, c)
        except (FileNotFoundError, ValueError):
            continue
        if len(set(pool.recordings.tolist())) > 1:
            out[c] = pool
    return out


def draw_pairs(root: Path, n: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``n`` (content, A, B) pairs from different recordings, content types in turn."""
    rng = np.random.default_rng(seed)
    pools = pools_of_several_recordings(root)
    if not pools:
        raise ValueError(f"no training clips under {root}; run `stito data train` first")
    names = list(pools)
    return [(names[k % len(names)], *pools[names[k % len(names)]].pair(rng)) for k in range(n)]


def _match(a: np.ndarray, b: np.ndarray | list[np.ndarray], chain: str, metric: str, opts: MatchOptions):
    """A match of clip ``a`` to one reference ``b`` or several."""
    refs = Audio(b, RATE) if isinstance(b, np.ndarray) else [Audio(x, RATE) for x in b]
    return match(Audio(a, RATE), refs, load_chain(chain), get_metric(metric), opts)


def no_style(pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], chain: str, metric: str, opts: MatchOptions,
             log: Callable[[str], None]) -> tuple[list[float], list[tuple[str, float]], list[float]]:
    """Gains and moved effects' (kind, contribution) of matches whose reference is another, unprocessed recording,
    as shares of the start's distance; and the gains in objective units.

    Run with floors at 0, so nothing but a loss is held back: what the metric gains here is content fitting.
    """
    gains, contributions, absolute = [], [], []
    for k, (content, a, b) in enumerate(pairs):
        r = _match(a, b, chain, metric, replace(opts, gain_floor=0.0, effect_floor=0.0))
        absolute.append(max(r.restraint.gain or 0.0, 0.0))
        # as shares of the start's distance to the reference (the floors are relative: ``Floors.relative``)
        distance = max(get_metric(metric).distance(r.similarity["before"]), 1e-9)
        gains.append(max(r.restraint.gain or 0.0, 0.0) / distance)
        contributions += [(e.kind, e.contribution / distance) for e in r.restraint.effects
                          if e.moved and e.contribution is not None]
        log(f"  no-style {chain} {metric} #{k} ({content}): gain {absolute[-1]:.4f} ({gains[-1]:.3f} of the distance)")
    return gains, contributions, absolute


def styled(pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], chain: str, metric: str, opts: MatchOptions,
           log: Callable[[str], None]) -> tuple[list[float], list[float]]:
    """MR-STFT distances to the oracle (dB) of matches and of the input unchanged, one style per pair in turn."""
    names = list(STYLES)
    dist, base = [], []
    for k, (content, a, b) in enumerate(pairs):
        style = chain_from_dict({"name": names[k % len(names)], "effects": STYLES[names[k % len(names)]]})
        reference, oracle = style.process(b, RATE), style.process(a, RATE)
        y = _match(a, reference, chain, metric, opts).output
        dist.append(oracle_db(y, oracle))
        base.append(oracle_db(a, oracle))
        log(f"  styled {chain} {metric} #{k} ({names[k % len(names)]}, {content}): {dist[-1]:.2f} dB "
            f"(input {base[-1]:.2f})")
    return dist, base


def oracle_db(output: np.ndarray, oracle: np.ndarray) -> float:
    """MR-STFT distance (dB) of ``(channels, n)`` audio to the oracle, after gaining it to the oracle's loudness."""
    gain = 10 ** ((loudness_lufs(oracle, RATE) - loudness_lufs(output, RATE)) / 20)
    return multi_resolution_stft_distance((output * np.float32(gain)).astype(np.float32), oracle, RATE)


def _quantile(values: Sequence[float], q: float) -> float:
    return float(np.quantile(values, q)) if len(values) else 0.0


def _entry(gains: list[float], contribs: list[tuple[str, float]], quantile: float, weight: float, level: float,
           min_per_kind: int = 5) -> dict:
    """A metric's entry of the floors file, from no-style gains and (effect kind, contribution) pairs.

    The gain floor is the ``quantile`` of the gains: what a whole match against another, unprocessed recording
    gains. An effect must contribute at least that much on its own (the effect floor); a kind with at least
    ``min_per_kind`` contributions whose own quantile is higher (an EQ fits another recording's spectrum more
    than a delay fits anything) is held to that.
    """
    gain_floor = _quantile(gains, quantile)
    kinds: dict[str, list[float]] = {}
    for kind, c in contribs:
        kinds.setdefault(kind, []).append(c)
    own = {k: _quantile(v, quantile) for k, v in sorted(kinds.items()) if len(v) >= min_per_kind}
    return {"gain_floor": gain_floor, "effect_floor": gain_floor,
            "effect_floors": {k: v for k, v in own.items() if v > gain_floor},
            "relative": True, "prior_weight": weight, "level_weight": level, "quantile": quantile,
            "cases": len(gains),
            "gains": gains, "contributions": [[k, c] for k, c in contribs]}


def calibrate(root: Path, metrics: Sequence[str], prior_factors: Sequence[float], n_pairs: int, quantile: float,
              seed: int, log: Callable[[str], None] = print, changes: dict[str, Any] | None = None) -> dict:
    """Choose each metric's prior and level weights on training matches, measure its floors, write them.

    Gains and contributions are taken as shares of the start's distance to the reference (the floors are
    relative, ``Floors.relative``). Per metric, on ``pedalboard-strip``: no-style matches without penalties give
    the metric's typical content-fitting gain g (the median of their absolute gains); the level weight is g / 4 (2 dB beyond the tolerance cost g). For each prior
    weight ``factor * g``: the floors from no-style matches (the ``quantile`` of their gains, and of each effect
    kind's contributions), then styled matches with them; the weight with the lowest mean oracle distance wins
    (ties: the larger). The floors are then re-measured at that weight over both chains. Styles and clips are the
    training corpus's, never the evaluation's.

    The package's ``models/restraint.json`` holds each sweep point's floors while its styled matches run (a match
    reads its floors from there) and is restored if the calibration fails; other metrics' entries are kept.
    ``changes`` are MatchOptions fields set on every match (e.g. ``evidence``: the floors are measured in it and
    the entry records it).

    Returns:
        What was written.
    """
    t0 = time.perf_counter()
    calib = draw_pairs(root, n_pairs, seed)
    trial = draw_pairs(root, n_pairs, seed + 1)
    path = package_dir("models") / FLOORS_FILE
    original = path.read_text(encoding="utf-8") if path.is_file() else None
    data = json.loads(original) if original else {"metrics": {}}
    data["version"] = 2

    def install(metric: str, entry: dict) -> None:
        data["metrics"][metric] = entry
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    try:
        for metric in metrics:
            base = MatchOptions.fast(seed=seed, loudness="reference", **(changes or {}))
            evidence = base.evidence or "objective"
            free = replace(base, prior_weight=0.0, level_weight=0.0)
            g = float(np.median(no_style(calib, CHAINS[0], metric, free, log)[2])) or 1e-3
            level = g / 4
            runs: dict[tuple[str, float], tuple[list[float], list[tuple[str, float]]]] = {}

            def measured(chain: str, w: float) -> tuple[list[float], list[tuple[str, float]]]:
                if (chain, w) not in runs:
                    opts = replace(base, prior_weight=w, level_weight=level)
                    runs[chain, w] = no_style(calib, chain, metric, opts, log)[:2]
                return runs[chain, w]

            sweep = []
            for factor in prior_factors:
                w = factor * g
                entry = _entry(*measured(CHAINS[0], w), quantile, w, level) | {"evidence": evidence}
                install(metric, entry)
                dist, inp = styled(trial, CHAINS[0], metric, base, log)
                sweep.append({"prior_weight": w, "factor": factor, "gain_floor": entry["gain_floor"],
                              "effect_floors": entry["effect_floors"], "styled_mrstft_db": float(np.mean(dist)),
                              "input_mrstft_db": float(np.mean(inp)), "styled": dist, "input": inp})
                log(f"{metric}: prior weight {w:.4g} ({factor:g} g): gain floor {entry['gain_floor']:.4f}, styled "
                    f"{np.mean(dist):.2f} dB (input {np.mean(inp):.2f})")
            best = min(sweep, key=lambda s: (round(s["styled_mrstft_db"], 2), -s["prior_weight"]))
            gains: list[float] = []
            contribs: list[tuple[str, float]] = []
            for chain in CHAINS:
                gc, cc = measured(chain, best["prior_weight"])
                gains += gc
                contribs += cc
            entry = _entry(gains, contribs, quantile, best["prior_weight"], level)
            extra = "".join(f" --{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, tuple) else v}"
                            for k, v in (changes or {}).items())
            entry.update(typical_gain=g, chains=list(CHAINS), sweep=sweep, pairs=n_pairs, seed=seed, evidence=evidence,
                         command=f"stito train restraint --metrics {metric} --prior-factors "
                                 f"{','.join(f'{f:g}' for f in prior_factors)} --pairs {n_pairs} --seed {seed}{extra}")
            install(metric, entry)
            log(f"{metric}: gain floor {entry['gain_floor']:.4f}, effect floors {entry['effect_floors']}, prior "
                f"weight {best['prior_weight']:.4g} ({len(gains)} no-style matches)")
    except BaseException:
        if original is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(original, encoding="utf-8")
        raise
    data["wall_s"] = time.perf_counter() - t0
    return data


PROBE_VARIANTS = ("cross", "same", "none")
SEVERAL_VARIANTS = ("cross", "none", "one")


def probe_cases(root: Path, n: int, seed: int, references: int = 1
                ) -> list[tuple[str, str, str | None, np.ndarray, list[np.ndarray]]]:
    """``n`` training cases, variants in turn: (variant, content, style or None, A, references).

    One reference (``PROBE_VARIANTS``): "cross": B from another recording through a training style; "same": B
    another clip of A's own recording through it (drawn as "cross" when the recording has one clip); "none": B from
    another recording, unprocessed. Several (``SEVERAL_VARIANTS``): "cross": each from another recording, all
    through the style; "none": each from another recording, unprocessed; "one": clips of one other recording,
    unprocessed (the case where the references' spread underestimates how recordings differ).
    """
    rng = np.random.default_rng(seed)
    pools = {c: Pool(root, c) for c in CONTENTS}
    names = list(STYLES)
    variants = PROBE_VARIANTS if references == 1 else SEVERAL_VARIANTS
    out = []
    for k in range(n):
        content = CONTENTS[k % len(CONTENTS)]
        pool = pools[content]
        variant = variants[k % len(variants)]
        a = int(rng.integers(len(pool.entries)))
        style = None if variant in ("none", "one") else names[(k // len(variants)) % len(names)]
        if references == 1:
            same = pool.mates(a)
            if variant == "same" and not len(same):
                variant = "cross"
            others = same if variant == "same" else pool.others(a)
            refs = [int(rng.choice(others))]
        elif variant == "one":
            recs, counts = np.unique(pool.recordings, return_counts=True)
            rec = rng.choice(recs[(counts >= references) & (recs != pool.recordings[a])])
            refs = [int(i) for i in rng.choice(np.flatnonzero(pool.recordings == rec), references, replace=False)]
        else:
            recs = rng.choice(sorted(set(pool.recordings.tolist()) - {pool.recordings[a]}), references, replace=False)
            refs = [int(rng.choice(np.flatnonzero(pool.recordings == r))) for r in recs]
        out.append((variant, content, style, pool.stereo(a), [pool.stereo(b) for b in refs]))
    return out


def probe_options(changes: dict[str, Any] | None = None) -> MatchOptions:
    """The probe's match options: the fast preset, loudness to the reference, match seed 0, then ``changes`` (a
    ``seed`` among them replaces the 0: the same cases at another match seed show how far single runs spread)."""
    return MatchOptions.fast(**({"seed": 0, "loudness": "reference"} | dict(changes or {})))


def probe(root: Path, n: int, seed: int, chain: str, metric: str, log: Callable[[str], None] = print,
          changes: dict[str, Any] | None = None, references: int = 1, floors: str = "zero") -> list[dict]:
    """What the acceptance rule has to go on, case by case: matches with the floors at 0 or as shipped (the prior
    and level penalties as calibrated), their start distance, gain and oracle distances, on training cases of the
    variants of ``probe_cases``. Writes nothing into the package.

    Args:
        changes: MatchOptions fields set on every match (``probe_options``; ``seed`` is the match's own seed).
        references: References per case.
        floors: "zero" (what the rule has to go on) or "shipped" (what the product does).

    Returns:
        Per case ``{"variant", "content", "style", "start_distance", "gain", "similarity_gain", "accepted",
        "engaged", "input_db", "matched_db"}`` (gain in objective units, penalties included; similarity_gain
        without them, both on the validation excerpts; engaged: the kinds of the effects the match kept; the two
        MR-STFT distances to the oracle in dB, the match kept whatever it gained when the floors are 0).
    """
    rows = []
    for variant, content, style, a, bs in probe_cases(root, n, seed, references):
        fx = None if style is None else chain_from_dict({"name": style, "effects": STYLES[style]})
        refs = bs if fx is None else [fx.process(b, RATE) for b in bs]
        oracle = a if fx is None else fx.process(a, RATE)
        opts = probe_options(changes)
        if floors == "zero":
            opts = replace(opts, gain_floor=0.0, effect_floor=0.0)
        r = _match(a, refs, chain, metric, opts)
        rows.append({"variant": variant, "content": content, "style": style,
                     "start_distance": get_metric(metric).distance(r.similarity["before"]),
                     "gain": max(r.restraint.gain or 0.0, 0.0),
                     "similarity_gain": (r.similarity["after"] or r.similarity["before"]) - r.similarity["before"],
                     "accepted": bool(r.restraint.accepted), "floors": r.restraint.source,
                     "engaged": [e.kind for e in r.restraint.effects if e.engaged],
                     "input_db": oracle_db(a, oracle),
                     "matched_db": oracle_db(r.output, oracle)})
        x = rows[-1]
        log(f"{variant:5s} {content:6s} {str(style):9s} start {x['start_distance']:6.2f} gain {x['gain']:6.2f} "
            f"({x['gain'] / max(x['start_distance'], 1e-9):.2f}){' kept' if x['accepted'] else '     '} oracle: "
            f"input {x['input_db']:5.2f} dB, matched {x['matched_db']:5.2f} dB")
    for v in dict.fromkeys(x["variant"] for x in rows):
        sel = [x for x in rows if x["variant"] == v]
        log(f"{v}: {len(sel)} cases, mean oracle distance input {np.mean([x['input_db'] for x in sel]):.2f} dB, "
            f"matched {np.mean([x['matched_db'] for x in sel]):.2f} dB (floors {floors}), "
            f"{sum(x['accepted'] for x in sel)} kept")
    return rows
