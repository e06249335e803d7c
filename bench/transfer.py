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
from stito_server.engine.optimize import OptimizerOptions
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
# cells: (style, content type) pairs, each run ``repeats`` times with other clips; popsize and generations:
# stito's search budget per match (the paper's is 64 x 25) on the whole 5 s input clip; sigma0: the step size
# the recorded results were measured with (the engine's default was 0.3 then).
FULL = {"cells": tuple((s, c) for s in STYLE_NAMES for c in CONTENTS), "repeats": 1, "popsize": 12,
        "generations": 8, "excerpt_s": 5.0, "sigma0": 0.3}
QUICK = {"cells": (("lowpass", "speech"), ("delay", "music")), "repeats": 1, "popsize": 4, "generations": 2,
         "excerpt_s": 3.0, "sigma0": 0.3}
MEASURES = ("mrstft_db", "logmel_db", "loudness_error_lu", "width_error")


def style_chain(style: str) -> Chain:
    """The chain of one style, every setting fixed (see ``STYLES``).

    Raises:
        ValueError: unknown style (valid ones listed).
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid: {', '.join(STYLE_NAMES)}")
    return chain_from_dict({"name": style, "effects": STYLES[style]["effects"]})


def method_names(metrics: Sequence[str]) -> list[str]:
    """Methods in table order: input, random, rule-based, Matchering, stito per chain and metric, oracle."""
    stito = [f"stito_{family}_{m}" for family in ("builtin", "vst3") for m in metrics]
    return ["input", "random", "rule_based", "matchering", *stito, "oracle"]


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


def stito_match(audio: np.ndarray, reference: np.ndarray, chain_name: str, metric_name: str, cfg: dict, seed: int,
          sample_rate: int) -> np.ndarray:
    """``match()`` with a shipped chain from its starting settings, output gained to the reference's loudness."""
    opts = MatchOptions(optimizer=OptimizerOptions(popsize=cfg["popsize"], max_generations=cfg["generations"],
                                                   sigma0=cfg["sigma0"], seed=seed),
                        excerpt_seconds=cfg["excerpt_s"], excerpts=1, validation_excerpts=1, reference_windows=1,
                        loudness="reference")
    result = match(Audio(audio, sample_rate), Audio(reference, sample_rate), load_chain(chain_name),
                   get_metric(metric_name), opts)
    return result.output


# --- the benchmark ---

def run_case(dry: np.ndarray, source: np.ndarray, style: str, metric_names: Sequence[str], cfg: dict, seed: int,
             sample_rate: int = RATE) -> dict:
    """Every method on one case: transfer ``style`` from ``source`` (another recording) onto ``dry``.

    Args:
        dry: ``(2, n)`` float32 input, peak-normalised.
        source: ``(2, m)`` float32 clip the reference is made from, peak-normalised.
        style: One of ``STYLE_NAMES``.
        metric_names: Metrics stito optimises (one run per chain and metric) and similarities are taken with.
        cfg: Settings (``FULL`` or ``QUICK`` shape).
        seed: Seed of the random baseline and the optimiser.
        sample_rate: In Hz.

    Returns:
        ``{method: {measure: value, "similarity": {metric: cosine to the reference}, "wall_s"}}``.
    """
    chain = style_chain(style)
    reference = chain.process(source, sample_rate)
    oracle_t0 = time.perf_counter()
    oracle = chain.process(dry, sample_rate)
    oracle_s = time.perf_counter() - oracle_t0
    ref_lufs = loudness_lufs(reference, sample_rate)
    rng = np.random.default_rng(seed)
    runs: dict[str, Callable[[], np.ndarray]] = {
        "input": lambda: dry,
        "random": lambda: gain_to(random_settings(dry, load_chain(BUILTIN_CHAIN), rng, sample_rate), ref_lufs,
                                  sample_rate),
        "rule_based": lambda: rule_based(dry, reference, sample_rate),
        "matchering": lambda: matchering(dry, reference, sample_rate),
    }
    for family, chain_name in (("builtin", BUILTIN_CHAIN), ("vst3", VST3_CHAIN)):
        for m in metric_names:
            runs[f"stito_{family}_{m}"] = (lambda c=chain_name, m=m: stito_match(dry, reference, c, m, cfg, seed,
                                                                           sample_rate))
    outputs, walls = {}, {}
    for method, fn in runs.items():
        t0 = time.perf_counter()
        outputs[method] = fn()
        walls[method] = time.perf_counter() - t0
    outputs["oracle"], walls["oracle"] = oracle, oracle_s
    metrics = {m: get_metric(m) for m in metric_names}
    use_side = uses_side(dry, reference)
    ref_emb = {m: metric.embed(reference[None], sample_rate) for m, metric in metrics.items()}
    out = {}
    for method, y in outputs.items():
        sims = {m: float(metric.similarity(metric.embed(y[None], sample_rate), ref_emb[m], use_side)[0])
                for m, metric in metrics.items()}
        out[method] = measures(y, oracle, sample_rate) | {"similarity": sims, "wall_s": walls[method]}
    return out


def aggregate(cases: list[dict], methods: Sequence[str], metric_names: Sequence[str]) -> dict:
    """Mean of every measure, similarity and wall time per method over ``cases`` (each a ``run_case`` result)."""
    out = {}
    for method in methods:
        rows = [c["results"][method] for c in cases]
        out[method] = {k: float(np.mean([r[k] for r in rows])) for k in (*MEASURES, "wall_s")}
        out[method]["similarity"] = {m: float(np.mean([r["similarity"][m] for r in rows])) for m in metric_names}
        out[method]["n"] = len(rows)
    return out


def run(quick: bool, out_dir: Path, metrics: Sequence[str] = ("mfcc", "mir"), seed: int = 0,
        cache: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Run task 4 and write ``transfer.md``, ``.json`` and ``.png``.

    Each case: input clip A and clip B from another recording of the same content type (both peak-normalised
    to -1 dBFS); the reference is B through the style's chain, the oracle is A through it.

    Args:
        quick: Quick data subset and the ``QUICK`` settings (else ``FULL``).
        out_dir: Folder for the result files.
        metrics: Metrics stito optimises (one stito run per chain and metric) and similarities are taken with.
        seed: Seed of everything random.
        cache: Data cache folder.
        log: Progress printer.

    Returns:
        ``{"task", "quick", "settings", "seed", "wall_s", "clips": {content: n}, "methods", "cases": [{"style",
        "content", "input", "source", "results": {method: measures}}], "results": {"all" | content | style:
        {method: means}}, "files"}``.
    """
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
    cases = []
    for cell, (style, content) in enumerate(cfg["cells"]):
        if content not in pools:
            continue
        pool = pools[content]
        for k in range(cfg["repeats"]):
            case_seed = seed + 100 * cell + k
            rng = np.random.default_rng(case_seed)
            a = int(rng.integers(len(pool)))
            b = pool.other_recording(a, rng)
            t_case = time.perf_counter()
            res = run_case(peak_normalize(pool.stereo(a)), peak_normalize(pool.stereo(b)), style, metrics, cfg,
                           case_seed)
            cases.append({"style": style, "content": content, "input": pool.entries[a]["id"],
                          "source": pool.entries[b]["id"], "seed": case_seed, "results": res})
            log(f"{TASK}: {style} / {content} #{k}: log-mel dB " + ", ".join(
                f"{m} {res[m]['logmel_db']:.1f}" for m in methods) + f" ({time.perf_counter() - t_case:.0f} s)")
    if not cases:
        raise ValueError(f"no case could run: no clips for the content types of the cells {cfg['cells']}")
    results = {"all": aggregate(cases, methods, metrics)}
    for key in ("content", "style"):
        for value in dict.fromkeys(c[key] for c in cases):
            results[value] = aggregate([c for c in cases if c[key] == value], methods, metrics)
    report = {"task": TASK, "quick": quick, "settings": cfg, "seed": seed,
              "clips": {c: len(p) for c, p in pools.items()}, "methods": methods, "metrics": list(metrics),
              "styles": {s: STYLES[s] for s in dict.fromkeys(c["style"] for c in cases)},
              "wall_s": time.perf_counter() - t0, "cases": cases, "results": results}
    return write_results(report, out_dir, markdown, plot)


METHOD_LABELS = {"input": "input unchanged", "random": f"random settings ({BUILTIN_CHAIN})",
                 "rule_based": "rule-based (matching EQ + compressor)", "matchering": "Matchering 2",
                 "oracle": "oracle (true chain)"}


def method_label(method: str) -> str:
    """Table label of a method name from ``method_names``."""
    if method.startswith("stito_"):
        _, family, metric = method.split("_", 2)
        return f"stito, {BUILTIN_CHAIN if family == 'builtin' else VST3_CHAIN}, {metric_label(metric)}"
    return METHOD_LABELS[method]


def markdown(report: dict) -> str:
    """Tables: every measure per method over all cases, log-mel distance per content type and per style."""
    cfg = report["settings"]
    metrics, methods = report["metrics"], report["methods"]
    contents = [c for c in report["clips"] if c in report["results"]]
    styles = list(report["styles"])
    lines = [f"# Task 4: real-world style transfer{' (quick)' if report['quick'] else ''}", "",
             f"Command: `{command_line('transfer', report)}` · {len(report['cases'])} cases ({len(styles)} styles, "
             f"{len(contents)} content types, {cfg['repeats']} per pair) · seed {report['seed']} · wall time "
             f"{report['wall_s']:.0f} s · clips: " + ", ".join(f"{c} {n}" for c, n in report["clips"].items()), "",
             "Each case: input clip A and clip B from another recording of the same content type (vocals: one "
             "singer's pack, so other phrases of the same voice), both peak-normalised to -1 dBFS. The reference is "
             "B through the style's chain; the oracle is A through the same chain. Distances are to the oracle, "
             "after gaining each output to the oracle's loudness (level is scored by the loudness error alone). "
             f"stito runs `match()` with `{BUILTIN_CHAIN}` and `{VST3_CHAIN}` from their starting settings, "
             f"once per metric, at a reduced budget: popsize {cfg['popsize']} x {cfg['generations']} generations "
             f"on the {cfg['excerpt_s']:g} s clip (the paper: 64 x 25), output gained to the reference's loudness "
             "(as `stito match` does); the random baseline and the rule-based one are gained the same way. "
             "Methods gained to the reference's loudness all get the same loudness error: the gap between the "
             "reference and the oracle (two recordings through one chain). Width: side energy over total energy "
             "(0 mono). Similarity: cosine of the output's embedding to the reference's, per metric (the quantity "
             "stito maximises with that metric). Wall s: mean seconds the method took per case (stito: the whole "
             "`match()` call, worker start-up included).", "",
             "## All cases (mean)", "",
             "| Method | MR-STFT dB | log-mel dB | loudness error LU | width error | "
             + " | ".join(f"sim {metric_label(m)}" for m in metrics) + " | wall s |",
             "|---|---|---|---|---|" + "---|" * (len(metrics) + 1)]
    for method in methods:
        r = report["results"]["all"][method]
        lines.append(f"| {method_label(method)} | {fmt(r['mrstft_db'])} | {fmt(r['logmel_db'])} | "
                     f"{fmt(r['loudness_error_lu'])} | {r['width_error']:.3f} | "
                     + " | ".join(f"{r['similarity'][m]:.3f}" for m in metrics) + f" | {r['wall_s']:.1f} |")
    for title, groups in (("content type", contents), ("style", styles)):
        lines += ["", f"## Per {title}: MR-STFT dB / log-mel dB", "",
                  "| Method | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
        for method in methods:
            rows = [report["results"][g][method] for g in groups]
            cells = [f"{fmt(r['mrstft_db'])} / {fmt(r['logmel_db'])}" for r in rows]
            lines.append(f"| {method_label(method)} | " + " | ".join(cells) + " |")
    lines += ["", "## Styles", ""]
    for style, spec in report["styles"].items():
        parts = []
        for e in spec["effects"]:
            kind = "builtin" if "builtin" in e else "vst3"
            settings = ", ".join(f"{k} {v:g}" for k, v in e["fix"].items())
            parts.append(f"{e[kind]} ({settings})")
        lines.append(f"- **{style}** ({spec['family']}): " + " -> ".join(parts))
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Bars per method: MR-STFT and log-mel distance to the oracle and loudness error, one colour per content."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = report["methods"]
    groups = ["all"] + [c for c in report["clips"] if c in report["results"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharex=True)
    colors = ["black" if g == "all" else f"C{k}" for k, g in enumerate(groups)]
    for ax, (key, label) in zip(axes, (("mrstft_db", "MR-STFT distance (dB)"), ("logmel_db", "log-mel distance (dB)"),
                                       ("loudness_error_lu", "loudness error (LU)"))):
        grouped_bars(ax, [method_label(m) for m in methods],
                     {g: [report["results"][g][m][key] for m in methods] for g in groups}, colors=colors,
                     rotation=60, ha="right", fontsize=7)
        ax.set_title(label)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Style transfer, distance to the oracle ({len(report['cases'])} cases"
                 f"{', quick' if report['quick'] else ''})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
