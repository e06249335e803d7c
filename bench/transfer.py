"""Task 4, real-world style transfer: seven fixed production styles, every method scored against the oracle render."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from stito_server.audio import Audio, loudness_lufs, mid_side, resample
from stito_server.distances import multi_resolution_stft_distance
from stito_server.effects.chain import Chain
from stito_server.effects.specs import chain_from_dict, load_chain
from stito_server.engine.match import MatchOptions, match
from stito_server.engine.scoring import uses_side
from stito_server.errors import RenderError
from stito_server.metrics import get_metric
from stito_server.metrics.logmel import mel_filterbank
from training.data.clips import RATE
from training.data.corpus import build_eval

from .common import ClipPool, command_line, fmt, grouped_bars, metric_label, peak_normalize, write_results

TASK = "transfer"
CONTENTS = ("speech", "vocals", "music")
BUILTIN_CHAIN = "pedalboard-strip"
VST3_CHAIN = "zam-strip"
RANDOM_TRIES = 10  # random settings redrawn until one renders cleanly, at most this many times

# Each style is a chain spec with every setting fixed (values in units; unlisted parameters at their
# defaults), applied to audio peak-normalised to -1 dBFS, in order of increasing complexity:
# - lowpass (built-in): two stacked first-order low-passes at 2 kHz (12 dB/oct).
# - highpass (built-in): two stacked first-order high-passes at 500 Hz (12 dB/oct).
# - small_room (built-in): Freeverb, room size 0.3, damping 0.5, wet 0.25, dry 0.9, width 0.8.
# - large_hall (VST3): Dragonfly Hall, 40 m, decay 3.5 s, predelay 30 ms, dry 70 %, early 10 %, late 45 %.
# - delay (VST3): ZamDelay, 300 ms, feedback 0.4, 5 kHz low-pass on the repeats, dry/wet 0.35.
# - distortion (VST3): ZamTube, drive 7, Insane Boost off, tone stack at its default (Bassman 5F6-A).
# - channel_strip (built-in + VST3): EQ (80 Hz low cut, +4 dB at 3 kHz Q 1, +3 dB high shelf at 10 kHz),
#   ZamCompX2 (threshold -28 dB, ratio 5, attack 3 ms, release 120 ms, makeup 8 dB), Dragonfly Room
#   (16 m, decay 0.8 s, dry 90 %, early 10 %, late 15 %).
STYLES: dict[str, dict] = {
    "lowpass": {"family": "builtin", "effects": [
        {"builtin": "lowpass", "fix": {"cutoff_hz": 2000.0}},
        {"builtin": "parametric_eq", "name": "eq", "fix": {"high_cut_hz": 2000.0}}]},
    "highpass": {"family": "builtin", "effects": [
        {"builtin": "highpass", "fix": {"cutoff_hz": 500.0}},
        {"builtin": "parametric_eq", "name": "eq", "fix": {"low_cut_hz": 500.0}}]},
    "small_room": {"family": "builtin", "effects": [
        {"builtin": "reverb", "fix": {"room_size": 0.3, "damping": 0.5, "wet_level": 0.25, "dry_level": 0.9,
                                      "width": 0.8}}]},
    "large_hall": {"family": "vst3", "effects": [
        {"vst3": "DragonflyHallReverb", "fix": {"Size": 40.0, "Decay": 3.5, "Predelay": 30.0, "Dry Level": 70.0,
                                                "Early Level": 10.0, "Late Level": 45.0}}]},
    "delay": {"family": "vst3", "effects": [
        {"vst3": "ZamDelay", "fix": {"Time": 300.0, "Feedback": 0.4, "LPF": 5000.0, "Dry/Wet": 0.35}}]},
    "distortion": {"family": "vst3", "effects": [
        {"vst3": "ZamTube", "fix": {"Tube Drive": 7.0}}]},
    "channel_strip": {"family": "builtin+vst3", "effects": [
        {"builtin": "parametric_eq", "name": "eq", "fix": {
            "low_cut_hz": 80.0, "peak3_gain_db": 4.0, "peak3_cutoff_hz": 3000.0, "peak3_q": 1.0,
            "high_shelf_gain_db": 3.0, "high_shelf_cutoff_hz": 10000.0}},
        {"vst3": "ZamCompX2", "name": "compressor", "fix": {
            "Threshold": -28.0, "Ratio": 5.0, "Attack": 3.0, "Release": 120.0, "Makeup": 8.0}},
        {"vst3": "DragonflyRoomReverb", "name": "reverb", "fix": {
            "Size": 16.0, "Decay": 0.8, "Dry Level": 90.0, "Early Level": 10.0, "Late Level": 15.0}}]},
}
STYLE_NAMES = tuple(STYLES)
# How the reference relates to the input: "cross" B from another recording through the style (the task);
# "same" B another clip of A's own recording through it (the within-recording control); "none" B from another
# recording left unprocessed, the oracle being the input itself (a match should change nothing).
VARIANTS = ("cross", "same", "none")
# cells: (style, content type) pairs, each run ``repeats`` times with other clips per variant ("none" has no
# style: ``none_repeats`` cases per content type); options: None = the product's default search exactly as
# `stito match` runs it (fast preset, its time budget, restraint on, output gained to the reference's loudness),
# else the MatchOptions changes of a reduced search (the quick run only, for CI); control_cells: how many of the
# cells (content types for "none") the "same" and "none" controls run on (None: all).
FULL = {"cells": tuple((s, c) for s in STYLE_NAMES for c in CONTENTS), "repeats": 2, "none_repeats": 7,
        "variants": VARIANTS, "options": None, "control_cells": None}
QUICK = {"cells": (("lowpass", "speech"), ("delay", "music")), "repeats": 1, "none_repeats": 1,
         "variants": VARIANTS, "options": {"popsize": 4, "max_generations": 2, "time_budget_s": None,
                                           "excerpt_seconds": 3.0}, "control_cells": 1}
MEASURES = ("mrstft_db", "logmel_db", "loudness_error_lu", "width_error")
MOVED = 0.05  # a parameter counts as moved when its normalised position changed by more than this
BOOTSTRAP_RESAMPLES, CI_LEVEL = 2000, 0.90


def style_chain(style: str) -> Chain:
    """The chain of one style, every setting fixed (see ``STYLES``).

    Raises:
        ValueError: unknown style (valid ones listed).
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid: {', '.join(STYLE_NAMES)}")
    return chain_from_dict({"name": style, "effects": STYLES[style]["effects"]})


def method_names(metrics: Sequence[str]) -> list[str]:
    """Methods in table order: input, rule-based, Matchering, stito per chain with the first metric (the default
    search), stito per chain and metric unconstrained (restraint off: the search before the do-no-harm rules),
    oracle."""
    on = [f"stito_{family}_{metrics[0]}" for family in ("builtin", "vst3")]
    off = [f"stito_{family}_{m}_off" for m in metrics for family in ("builtin", "vst3")]
    return ["input", "rule_based", "matchering", *on, *off, "oracle"]


# --- independent measures (the optimiser never sees them) ---

def log_mel_distance(a: np.ndarray, b: np.ndarray, sample_rate: int, n_fft: int = 2048, hop: int = 512,
                     n_mels: int = 128) -> float:
    """Mean absolute difference of log-mel power spectrograms, per channel, in dB.

    Args:
        a: ``(channels, n)`` audio.
        b: ``(channels, n)`` audio of the same content (e.g. the oracle render).
        sample_rate: In Hz.
        n_fft: FFT size, in samples.
        hop: Hop, in samples.
        n_mels: Mel bands from 20 Hz to 20 kHz (capped below Nyquist).

    Returns:
        Distance in dB (0 for identical audio); both spectrograms are floored 80 dB below their joint peak.
    """
    from scipy.signal import stft

    n = min(a.shape[-1], b.shape[-1])
    fb = mel_filterbank(sample_rate, n_fft, n_mels, 20.0, min(20000.0, 0.5 * sample_rate))
    mels = []
    for x in (a, b):
        _, _, z = stft(np.asarray(x[..., :n], dtype=np.float64), sample_rate, nperseg=n_fft, noverlap=n_fft - hop)
        mels.append(np.einsum("mf,...ft->...mt", fb, np.abs(z) ** 2))
    floor = max(float(mels[0].max()), float(mels[1].max()), 1e-30) * 1e-8
    da, db = (10 * np.log10(np.maximum(m, floor)) for m in mels)
    return float(np.mean(np.abs(da - db)))


def stereo_width(x: np.ndarray) -> float:
    """Side energy over total energy, ``E[S^2] / (E[M^2] + E[S^2])``: 0 mono, 0.5 uncorrelated, 1 anti-phase.

    Args:
        x: ``(channels, n)`` audio (mono gives 0).
    """
    mid, side = mid_side(np.asarray(x, dtype=np.float64))
    e_mid, e_side = float(np.mean(mid ** 2)), float(np.mean(side ** 2))
    return e_side / (e_mid + e_side) if e_mid + e_side > 0 else 0.0


def gain_to(x: np.ndarray, lufs: float, sample_rate: int) -> np.ndarray:
    """``x`` scaled to an integrated loudness of ``lufs`` (unchanged if either loudness is not finite)."""
    current = loudness_lufs(x, sample_rate)
    if not (np.isfinite(current) and np.isfinite(lufs)):
        return x
    return (x * np.float32(10 ** ((lufs - current) / 20))).astype(np.float32)


def measures(output: np.ndarray, oracle: np.ndarray, sample_rate: int) -> dict[str, float]:
    """The independent measures of one output against the oracle.

    The spectral distances are taken after gaining the output to the oracle's integrated loudness, so
    they score spectrum and time envelope; level is scored apart by the loudness error.

    Args:
        output: ``(channels, n)`` a method's output.
        oracle: ``(channels, n)`` the input through the reference's true chain.
        sample_rate: In Hz.

    Returns:
        ``{"mrstft_db", "logmel_db", "loudness_error_lu" (absolute), "width_error" (absolute)}``.
    """
    target = loudness_lufs(oracle, sample_rate)
    level = gain_to(output, target, sample_rate)
    return {"mrstft_db": multi_resolution_stft_distance(level, oracle, sample_rate),
            "logmel_db": log_mel_distance(level, oracle, sample_rate),
            "loudness_error_lu": abs(loudness_lufs(output, sample_rate) - target),
            "width_error": abs(stereo_width(output) - stereo_width(oracle))}


# --- baselines ---

def random_settings(audio: np.ndarray, chain: Chain, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """``audio`` through ``chain`` with uniformly random settings (redrawn if a render fails).

    Raises:
        RenderError: ``RANDOM_TRIES`` draws in a row failed to render.
    """
    for _ in range(RANDOM_TRIES):
        chain.set_vector(rng.uniform(size=len(chain)))
        try:
            return chain.process(audio, sample_rate)
        except RenderError:
            continue
    raise RenderError(f"{RANDOM_TRIES} random settings of chain {chain.name!r} in a row failed to render")


def _average_spectrum_db(x: np.ndarray, sample_rate: int, n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.signal import welch

    f, p = welch(np.asarray(x, dtype=np.float64).mean(axis=0), sample_rate, nperseg=n_fft)
    return f, 10 * np.log10(np.maximum(p, 1e-20))


def matching_eq(audio: np.ndarray, reference: np.ndarray, sample_rate: int, taps: int = 2047,
                max_db: float = 18.0) -> np.ndarray:
    """Linear-phase FIR whose response is the reference's long-term spectrum over the input's.

    Both spectra are Welch averages of the channel mean, smoothed over 1/3 octave; the correction is held
    flat below 30 Hz and above 18 kHz, limited to +-``max_db`` and normalised to 0 dB at its median.

    Args:
        audio: ``(channels, n)`` input.
        reference: ``(channels, m)`` reference.
        sample_rate: In Hz (both).
        taps: FIR length (odd).
        max_db: Largest boost or cut, in dB.

    Returns:
        ``(taps,)`` float64 FIR coefficients.
    """
    from scipy.signal import firwin2

    f, a = _average_spectrum_db(audio, sample_rate, 4096)
    _, r = _average_spectrum_db(reference, sample_rate, 4096)
    diff = r - a
    grid = np.geomspace(30.0, 18000.0, 200)
    bands = [(f >= g * 2 ** (-1 / 6)) & (f <= g * 2 ** (1 / 6)) for g in grid]
    smooth = np.array([diff[b].mean() if b.any() else np.interp(g, f, diff) for g, b in zip(grid, bands)])
    smooth = np.clip(smooth - np.median(smooth), -max_db, max_db)
    freqs = np.concatenate([[0.0], grid, [sample_rate / 2]])
    gains = 10 ** (np.concatenate([[smooth[0]], smooth, [smooth[-1]]]) / 20)
    return firwin2(taps, freqs, gains, fs=sample_rate)


def crest_db(x: np.ndarray, sample_rate: int) -> float:
    """Peak-to-loudness ratio: sample peak in dBFS minus integrated loudness in LUFS."""
    return 20 * np.log10(max(float(np.abs(x).max()), 1e-12)) - loudness_lufs(x, sample_rate)


def rule_based(audio: np.ndarray, reference: np.ndarray, sample_rate: int, ratio: float = 4.0) -> np.ndarray:
    """Matching EQ, then a compressor set from the reference's loudness, then gain to the reference's loudness.

    The EQ is ``matching_eq``; its output is peak-normalised to -1 dBFS. A compressor (ratio ``ratio``,
    attack 5 ms, release 100 ms) gets the threshold, found by bisection over -40..0 dB, at which the
    output's peak-to-loudness ratio equals the reference's (no compression when the input's is already
    lower). Finally the output is gained to the reference's integrated loudness.

    Args:
        audio: ``(channels, n)`` float32 input.
        reference: ``(channels, m)`` float32 reference.
        sample_rate: In Hz (both).
        ratio: Compression ratio.

    Returns:
        ``(channels, n)`` float32.
    """
    import pedalboard as pb
    from scipy.signal import fftconvolve

    h = matching_eq(audio, reference, sample_rate)
    delay = (len(h) - 1) // 2
    y = fftconvolve(audio, h[None, :], axes=-1)[:, delay:delay + audio.shape[1]].astype(np.float32)
    y = peak_normalize(y)
    target = crest_db(reference, sample_rate)

    def compress(threshold_db: float) -> np.ndarray:
        comp = pb.Compressor(threshold_db=threshold_db, ratio=ratio, attack_ms=5.0, release_ms=100.0)
        return comp(y, sample_rate)

    if crest_db(y, sample_rate) > target:
        lo, hi = -40.0, 0.0  # crest falls as the threshold falls
        for _ in range(12):
            mid = 0.5 * (lo + hi)
            if crest_db(compress(mid), sample_rate) > target:
                hi = mid
            else:
                lo = mid
        y = compress(0.5 * (lo + hi))
    return gain_to(y, loudness_lufs(reference, sample_rate), sample_rate)


def matchering(audio: np.ndarray, reference: np.ndarray, sample_rate: int) -> np.ndarray:
    """Matchering 2 (the PyPI package) with its default settings, through files in a temporary folder.

    Returns:
        ``(channels, n)`` float32 at ``sample_rate`` (Matchering works at 44.1 kHz; resampled back, and
        folded to mono for a mono input).
    """
    import matchering as mg
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="stito-matchering-") as tmp:
        target, ref, out = (str(Path(tmp) / f) for f in ("target.wav", "reference.wav", "result.wav"))
        sf.write(target, audio.T, sample_rate, subtype="FLOAT")
        sf.write(ref, reference.T, sample_rate, subtype="FLOAT")
        mg.process(target=target, reference=ref, results=[mg.Result(out, subtype="FLOAT")])
        y, rate = sf.read(out, dtype="float32", always_2d=True)
    y = resample(np.ascontiguousarray(y.T), rate, sample_rate)
    n = audio.shape[1]
    y = np.pad(y, ((0, 0), (0, max(0, n - y.shape[1]))))[:, :n]
    return y.mean(axis=0, keepdims=True).astype(np.float32) if audio.shape[0] == 1 else y.astype(np.float32)


def stito_options(cfg: dict, seed: int, restraint: str = "on") -> MatchOptions:
    """The match options of a stito run: the product's default (``cfg["options"]`` None) or the quick reduced one."""
    return MatchOptions.fast(seed=seed, loudness="reference", restraint=restraint, **(cfg["options"] or {}))


def stito_match(audio: np.ndarray, reference: np.ndarray, chain_name: str, metric_name: str, opts: MatchOptions,
                sample_rate: int) -> tuple[np.ndarray, dict]:
    """``match()`` with a shipped chain from its starting settings; the output and what the match did.

    Returns:
        The output (gained to the reference's loudness, as `stito match` writes it) and ``{"moved": share of the
        searched parameters moved by more than ``MOVED``, "accepted": the restraint's verdict (None when off),
        "chain_level_db": the chain output's integrated loudness minus the input's (LU)}``.
    """
    result = match(Audio(audio, sample_rate), Audio(reference, sample_rate), load_chain(chain_name),
                   get_metric(metric_name), opts)
    moved = np.abs(result.vector - result.start_vector) > MOVED
    lufs = result.loudness_lufs
    return result.output, {"moved": float(moved.mean()),
                           "accepted": None if result.restraint is None else result.restraint.accepted,
                           "chain_level_db": lufs["chain_output"] - lufs["input"]}


# --- the benchmark ---

def styled(style: str | None, source: np.ndarray, dry: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The reference and the oracle of one case: ``source`` and ``dry`` through the style's chain.

    A style's chain has every setting fixed, so it has no searchable parameter (``len(chain) == 0``): whether there
    is a style is asked of ``style``, never of the chain's truth value (which is its length).

    Args:
        style: One of ``STYLE_NAMES``, or None (the no-style control: ``source`` and ``dry`` as they are).
        source: ``(2, m)`` float32 clip the reference is made from.
        dry: ``(2, n)`` float32 input.
        sample_rate: In Hz.

    Returns:
        The reference, the oracle and the seconds the oracle took to render.
    """
    if style is None:
        return source, dry, 0.0
    chain = style_chain(style)
    reference = chain.process(source, sample_rate)
    t0 = time.perf_counter()
    oracle = chain.process(dry, sample_rate)
    return reference, oracle, time.perf_counter() - t0


def run_case(dry: np.ndarray, source: np.ndarray, style: str | None, metric_names: Sequence[str], cfg: dict,
             seed: int, unconstrained: bool = True, sample_rate: int = RATE) -> dict:
    """Every method on one case: transfer ``style`` from ``source`` onto ``dry``.

    Args:
        dry: ``(2, n)`` float32 input, peak-normalised.
        source: ``(2, m)`` float32 clip the reference is made from, peak-normalised.
        style: One of ``STYLE_NAMES``, or None: the reference is ``source`` itself and the oracle ``dry``.
        metric_names: Metrics similarities are taken with; stito runs the default search (restraint on) with the
            first, and the unconstrained one with each.
        cfg: Settings (``FULL`` or ``QUICK`` shape).
        seed: Seed of the optimiser.
        unconstrained: Also run stito with restraint off.
        sample_rate: In Hz.

    Returns:
        ``{method: {measure: value, "similarity": {metric: cosine to the reference}, "wall_s", stito: "moved",
        "accepted", "chain_level_db"}}``.
    """
    reference, oracle, oracle_s = styled(style, source, dry, sample_rate)
    runs: dict[str, Callable[[], np.ndarray | tuple[np.ndarray, dict]]] = {
        "input": lambda: dry,
        "rule_based": lambda: rule_based(dry, reference, sample_rate),
        "matchering": lambda: matchering(dry, reference, sample_rate),
    }
    chains = (("builtin", BUILTIN_CHAIN), ("vst3", VST3_CHAIN))
    stito = [(f"stito_{family}_{metric_names[0]}", c, metric_names[0], "on") for family, c in chains]
    if unconstrained:
        stito += [(f"stito_{family}_{m}_off", c, m, "off") for m in metric_names for family, c in chains]
    for method, chain_name, m, restraint in stito:
        opts = stito_options(cfg, seed, restraint)
        runs[method] = lambda c=chain_name, m=m, o=opts: stito_match(dry, reference, c, m, o, sample_rate)
    outputs, walls, extra = {}, {}, {}
    for method, fn in runs.items():
        t0 = time.perf_counter()
        y = fn()
        walls[method] = time.perf_counter() - t0
        outputs[method], extra[method] = y if isinstance(y, tuple) else (y, {})
    outputs["oracle"], walls["oracle"], extra["oracle"] = oracle, oracle_s, {}
    metrics = {m: get_metric(m) for m in metric_names}
    use_side = uses_side(dry, reference)
    ref_emb = {m: metric.embed(reference[None], sample_rate) for m, metric in metrics.items()}
    out = {}
    for method, y in outputs.items():
        sims = {m: float(metric.similarity(metric.embed(y[None], sample_rate), ref_emb[m], use_side)[0])
                for m, metric in metrics.items()}
        out[method] = measures(y, oracle, sample_rate) | {"similarity": sims, "wall_s": walls[method]} | extra[method]
    return out


def mean_interval(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval (``CI_LEVEL``, percentile method) of the mean of ``values`` ((nan, nan) without any)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    means = v[np.random.default_rng(seed).integers(0, v.size, (BOOTSTRAP_RESAMPLES, v.size))].mean(axis=1)
    tail = (1.0 - CI_LEVEL) / 2.0 * 100.0
    return float(np.percentile(means, tail)), float(np.percentile(means, 100.0 - tail))


def aggregate(cases: list[dict], methods: Sequence[str], metric_names: Sequence[str]) -> dict:
    """Per method over ``cases`` (each a ``run_case`` result): the mean of every measure, similarity and wall time,
    and for MR-STFT and log-mel the paired difference to the input unchanged and to Matchering with its interval.

    Methods missing from some cases (the unconstrained search runs on "cross" only) are averaged over the cases
    that have them, and compared on those same cases.
    """
    out = {}
    for method in methods:
        rows = [c["results"] for c in cases if method in c["results"]]
        if not rows:
            continue
        r = out[method] = {k: float(np.mean([x[method][k] for x in rows])) for k in (*MEASURES, "wall_s")}
        r["similarity"] = {m: float(np.mean([x[method]["similarity"][m] for x in rows])) for m in metric_names}
        r["n"] = len(rows)
        for key in ("moved", "chain_level_db"):
            if key in rows[0][method]:
                r[key] = float(np.mean([x[method][key] for x in rows]))
        if "chain_level_db" in rows[0][method]:
            r["chain_level_abs_max_db"] = float(np.max([abs(x[method]["chain_level_db"]) for x in rows]))
        if rows[0][method].get("accepted") is not None:
            r["accepted"] = float(np.mean([bool(x[method]["accepted"]) for x in rows]))
        for base in ("input", "matchering"):
            for k in ("mrstft_db", "logmel_db"):
                d = [x[method][k] - x[base][k] for x in rows]
                r[f"{k}_vs_{base}"] = float(np.mean(d))
                r[f"{k}_vs_{base}_interval"] = mean_interval(d)
    return out


def _cases_plan(cfg: dict, pools: dict, seed: int) -> list[dict]:
    """Every case to run, in order: (variant, style, content, clip indices, seed)."""
    plan = []
    for variant in cfg["variants"]:
        cells = (tuple((None, c) for c in dict.fromkeys(c for _, c in cfg["cells"]))
                 if variant == "none" else cfg["cells"])
        if variant != "cross":
            cells = cells[:cfg.get("control_cells")]
        repeats = cfg["none_repeats"] if variant == "none" else cfg["repeats"]
        for cell, (style, content) in enumerate(cells):
            if content not in pools:
                continue
            pool = pools[content]
            for k in range(repeats):
                case_seed = seed + 100 * cell + k + {"cross": 0, "same": 50_000, "none": 90_000}[variant]
                rng = np.random.default_rng(case_seed if variant != "same" else case_seed - 50_000)
                a = int(rng.integers(len(pool)))
                b = pool.same_recording(a, rng) if variant == "same" else pool.other_recording(a, rng)
                if b is None:  # a recording of one clip (vocals: one clip per phrase)
                    continue
                plan.append({"variant": variant, "style": style, "content": content, "a": a, "b": b,
                             "seed": case_seed})
    return plan


def run(quick: bool, out_dir: Path, metrics: Sequence[str] = ("mfcc",), seed: int = 0,
        cache: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Run task 4 and write ``transfer.md``, ``.json`` and ``.png``.

    Each case: input clip A and clip B (both peak-normalised to -1 dBFS), per ``VARIANTS``. Finished cases are
    appended to ``transfer.partial.jsonl`` in ``out_dir`` as they finish, so an interrupted run resumes where it
    stopped (the file is removed once the results are written).

    Args:
        quick: Quick data subset and the ``QUICK`` settings (else ``FULL``).
        out_dir: Folder for the result files.
        metrics: Metrics stito optimises (one stito run per chain and metric) and similarities are taken with.
        seed: Seed of everything random.
        cache: Data cache folder.
        log: Progress printer.

    Returns:
        ``{"task", "quick", "settings", "seed", "wall_s", "clips": {content: n}, "methods", "cases": [{"variant",
        "style", "content", "input", "source", "results": {method: measures}}], "results": {variant: {"all" |
        content | style | family: {method: means}}}, "files"}``.
    """
    import json

    t0 = time.perf_counter()
    cfg = QUICK if quick else FULL
    data_root, _ = build_eval(quick=quick, cache=cache, log=log)
    pools = {}
    for content in dict.fromkeys(c for _, c in cfg["cells"]):
        try:
            pools[content] = ClipPool(data_root, content, quick)
        except ValueError as exc:
            log(f"{TASK}: skipping {content}: {exc}")
    methods = method_names(metrics)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f"{TASK}.partial.jsonl"
    key = json.dumps({"settings": cfg, "metrics": list(metrics), "seed": seed}, sort_keys=True, default=list)
    done: dict[tuple, dict] = {}
    if partial.exists():
        lines = partial.read_text().splitlines()
        if lines and lines[0] == key:
            for line in lines[1:]:
                c = json.loads(line)
                done[(c["variant"], c["style"], c["content"], c["seed"])] = c
            log(f"{TASK}: resuming, {len(done)} cases already done")
        else:
            partial.write_text(key + "\n")
    else:
        partial.write_text(key + "\n")
    cases = []
    for item in _cases_plan(cfg, pools, seed):
        pool = pools[item["content"]]
        ident = (item["variant"], item["style"], item["content"], item["seed"])
        if ident in done:
            cases.append(done[ident])
            continue
        t_case = time.perf_counter()
        res = run_case(peak_normalize(pool.stereo(item["a"])), peak_normalize(pool.stereo(item["b"])),
                       item["style"], metrics, cfg, item["seed"], unconstrained=item["variant"] == "cross")
        case = {"variant": item["variant"], "style": item["style"], "content": item["content"],
                "input": pool.entries[item["a"]]["id"], "source": pool.entries[item["b"]]["id"], "seed": item["seed"],
                "results": res}
        cases.append(case)
        with partial.open("a") as f:
            f.write(json.dumps(case) + "\n")
        log(f"{TASK}: {item['variant']} {item['style'] or 'no style'} / {item['content']}: MR-STFT dB " + ", ".join(
            f"{m} {res[m]['mrstft_db']:.2f}" for m in methods if m in res) + f" ({time.perf_counter() - t_case:.0f} s)")
    if not cases:
        raise ValueError(f"no case could run: no clips for the content types of the cells {cfg['cells']}")
    results: dict[str, dict] = {}
    for variant in dict.fromkeys(c["variant"] for c in cases):
        vc = [c for c in cases if c["variant"] == variant]
        results[variant] = {"all": aggregate(vc, methods, metrics)}
        for field in ("content", "style"):
            for value in dict.fromkeys(c[field] for c in vc if c[field]):
                results[variant][value] = aggregate([c for c in vc if c[field] == value], methods, metrics)
        for family in dict.fromkeys(STYLES[c["style"]]["family"] for c in vc if c["style"]):
            results[variant][f"family:{family}"] = aggregate(
                [c for c in vc if c["style"] and STYLES[c["style"]]["family"] == family], methods, metrics)
    report = {"task": TASK, "quick": quick, "settings": cfg, "seed": seed,
              "clips": {c: len(p) for c, p in pools.items()}, "methods": methods, "metrics": list(metrics),
              "styles": {s: STYLES[s] for s in dict.fromkeys(c["style"] for c in cases if c["style"])},
              "wall_s": time.perf_counter() - t0 + sum(0.0 for _ in done), "resumed_cases": len(done),
              "cases": cases, "results": results}
    report = write_results(report, out_dir, markdown, plot)
    partial.unlink()
    return report


METHOD_LABELS = {"input": "input unchanged", "rule_based": "rule-based (matching EQ + compressor)",
                 "matchering": "Matchering 2", "oracle": "oracle (true chain)"}
VARIANT_TITLES = {"cross": "Reference from another recording (the task)",
                  "same": "Reference from the input's own recording (another clip)",
                  "none": "No-style control: another recording, unprocessed (the oracle is the input)"}


def method_label(method: str) -> str:
    """Table label of a method name from ``method_names``."""
    if method.startswith("stito_"):
        parts = method.split("_")
        family, off = parts[1], parts[-1] == "off"
        metric = "_".join(parts[2:-1] if off else parts[2:])
        chain = BUILTIN_CHAIN if family == "builtin" else VST3_CHAIN
        return f"stito, {chain}, {metric_label(metric)}" + (", restraint off" if off else "")
    return METHOD_LABELS[method]


def _ci(r: dict, key: str) -> str:
    lo, hi = r[key + "_interval"]
    return f"{r[key]:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def markdown(report: dict) -> str:
    """Tables per variant: every measure per method with paired intervals, then per style family, content, style."""
    cfg = report["settings"]
    metrics, methods = report["metrics"], report["methods"]
    search = ("the product's default search exactly as `stito match` runs it (fast preset with its 6.5 s time "
              "budget, restraint on, output gained to the reference's loudness)" if cfg["options"] is None else
              f"a reduced search ({', '.join(f'{k} {v}' for k, v in cfg['options'].items())}; quick run only)")
    counts = {v: sum(c["variant"] == v for c in report["cases"]) for v in report["results"]}
    lines = [f"# Task 4: real-world style transfer{' (quick)' if report['quick'] else ''}", "",
             f"Command: `{command_line('transfer', report)}` · {len(report['cases'])} cases ("
             + ", ".join(f"{v} {n}" for v, n in counts.items()) + f") · seed {report['seed']} · wall time "
             f"{report['wall_s']:.0f} s · clips: " + ", ".join(f"{c} {n}" for c, n in report["clips"].items()), "",
             "Each case: input clip A and a clip B, both peak-normalised to -1 dBFS; the reference is B through the "
             "style's chain, the oracle A through the same chain (no-style control: the reference is B itself, "
             "the oracle is A). Distances are to the oracle after gaining each output to the oracle's loudness "
             f"(level is scored by the loudness error alone). stito runs {search}, with `{BUILTIN_CHAIN}` and "
             f"`{VST3_CHAIN}` from their starting settings; 'restraint off' is the same search unconstrained (the "
             "behaviour before the do-no-harm rules), run on the cross-recording cases only. "
             f"vs input / vs Matchering: mean paired difference in MR-STFT dB (negative: closer to the oracle) with "
             f"its {CI_LEVEL:.0%} bootstrap interval. Moved: share of searched parameters moved by more than "
             f"{MOVED} (normalised). Accepted: share of matches the acceptance rule kept. Chain level: the chain "
             "output's integrated loudness minus the input's (mean, and the largest absolute value), before the "
             "file's loudness gain. Similarity: cosine of the output's embedding to the reference's.", ""]
    for variant, res in report["results"].items():
        all_ = res["all"]
        lines += [f"## {VARIANT_TITLES[variant]}: {counts[variant]} cases", "",
                  "| Method | MR-STFT dB | log-mel dB | vs input (MR-STFT) | vs Matchering (MR-STFT) | vs input "
                  "(log-mel) | loudness error LU | width error | moved | accepted | chain level LU (max) | "
                  + " | ".join(f"sim {metric_label(m)}" for m in metrics) + " | wall s | n |",
                  "|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * (len(metrics) + 2)]
        for method in methods:
            if method not in all_:
                continue
            r = all_[method]
            level = (f"{r['chain_level_db']:+.1f} ({r['chain_level_abs_max_db']:.1f})" if "chain_level_db" in r
                     else "")
            cells = [method_label(method), fmt(r["mrstft_db"]), fmt(r["logmel_db"]), _ci(r, "mrstft_db_vs_input"),
                     _ci(r, "mrstft_db_vs_matchering"), _ci(r, "logmel_db_vs_input"), fmt(r["loudness_error_lu"]),
                     f"{r['width_error']:.3f}", f"{r['moved']:.2f}" if "moved" in r else "",
                     f"{r['accepted']:.2f}" if "accepted" in r else "", level,
                     *(f"{r['similarity'][m]:.3f}" for m in metrics), f"{r['wall_s']:.1f}", str(r["n"])]
            lines.append("| " + " | ".join(cells) + " |")
        groups = [("style family", [g for g in res if g.startswith("family:")]),
                  ("content type", [c for c in report["clips"] if c in res]),
                  ("style", [s for s in report["styles"] if s in res])]
        for title, keys in groups:
            if not keys:
                continue
            lines += ["", f"### Per {title}: MR-STFT dB, and the paired difference to the input unchanged", "",
                      "| Method | " + " | ".join(k.removeprefix("family:") for k in keys) + " |",
                      "|---|" + "---|" * len(keys)]
            for method in methods:
                if method not in all_ or method == "input":
                    continue
                cells = [f"{fmt(res[k][method]['mrstft_db'])} ({_ci(res[k][method], 'mrstft_db_vs_input')})"
                         if method in res[k] else "" for k in keys]
                lines.append(f"| {method_label(method)} | " + " | ".join(cells) + " |")
            lines.append("| input unchanged | " + " | ".join(fmt(res[k]["input"]["mrstft_db"]) for k in keys) + " |")
        lines.append("")
    lines += ["## Styles", ""]
    for style, spec in report["styles"].items():
        parts = []
        for e in spec["effects"]:
            kind = "builtin" if "builtin" in e else "vst3"
            settings = ", ".join(f"{k} {v:g}" for k, v in e["fix"].items())
            parts.append(f"{e[kind]} ({settings})")
        lines.append(f"- **{style}** ({spec['family']}): " + " -> ".join(parts))
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Bars per method and variant: mean MR-STFT and log-mel distance to the oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = report["methods"]
    variants = list(report["results"])
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5), sharex=True)
    for ax, (key, label) in zip(axes, (("mrstft_db", "MR-STFT distance (dB)"), ("logmel_db", "log-mel distance (dB)"))):
        grouped_bars(ax, [method_label(m) for m in methods],
                     {v: [report["results"][v]["all"].get(m, {}).get(key, float("nan")) for m in methods]
                      for v in variants}, rotation=60, ha="right", fontsize=7)
        ax.set_title(label)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Style transfer, distance to the oracle ({len(report['cases'])} cases"
                 f"{', quick' if report['quick'] else ''})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
