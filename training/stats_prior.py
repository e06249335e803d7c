"""`stito train stats-prior`: the stats metric's raw-recording prior (mean descriptors) and between-recording spread."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stito_server.metrics.base import normalized_mid_side
from stito_server.metrics.logmel import mel_filterbank
from stito_server.metrics.stats import N_FFT, N_MELS, PRIOR_FILE, descriptor_names, descriptors
from stito_server.resources import package_dir

from .data.clips import RATE, load_clip, load_manifest

CONTENTS = ("speech", "music", "guitar", "drums")


NEIGHBOURS = 10  # training recordings most like the input whose mean is the content prior (``StatsMetric``)
CLIPS_PER_RECORDING = 4  # clips per recording in its mean descriptors


def fit_stats_prior(root: Path, clips_per_type: int = 150, seconds: float = 4.0, reference_prior: float = 0.0,
                    seed: int = 0, out: Path | None = None, whiten_covariance: bool = False,
                    amplitude: bool = False, echo: bool = False, family_weight: float = 1.0) -> dict:
    """Fit the prior of ``metrics/stats.py`` on raw training clips and write it.

    Each content type counts equally: the prior is the mean of the types' mean descriptors, the scale the root
    of the types' mean variance across clips (how much recordings of one kind differ), floored at a tenth of the
    median scale so no descriptor gets an unbounded weight. With ``whiten_covariance``, also the whitening of
    the between-recording covariance (``nuisance_whitening``): descriptors that move together from one recording
    to the next (a darker recording lowers every high band) then count as one nuisance direction, not many.
    Also each training recording's mean descriptors (``recording_means``): the metric's content prior for an
    input is the mean of the ``NEIGHBOURS`` recordings most like it.

    Args:
        root: The training corpus (``stito data train``).
        clips_per_type: Clips drawn per content type (fewer if it has fewer).
        seconds: Crop length from each clip's middle, in seconds (the match's excerpt length).
        reference_prior: The metric's default ``reference_prior`` written with it.
        seed: Seed of the clip draw.
        out: Output file (default: the package's ``models/stats-prior.json``).
        whiten_covariance: Fit the full covariance's whitening (else the metric divides by ``scale`` alone).
        amplitude: Also the amplitude histogram (``stats.AMPLITUDE``); the metric computes the descriptors the
            prior names.
        echo: Also the echo strengths per band of delay times (``stats.ECHO``).
        family_weight: How many descriptors' worth each of those added descriptors counts in the metric's mean
            squared gap (1: as one; the 57 others otherwise drown a family of a few).

    Returns:
        What was written.
    """
    rng = np.random.default_rng(seed)
    fb = mel_filterbank(RATE, N_FFT, N_MELS, 20.0, min(20000.0, RATE / 2))
    n = int(seconds * RATE)
    means, variances, centred, counts = [], [], [], {}
    for content in CONTENTS:
        try:
            entries = load_manifest(root, content, False)
        except (FileNotFoundError, ValueError):
            continue
        picks = rng.choice(len(entries), size=min(clips_per_type, len(entries)), replace=False)
        d = _descriptors(root, [entries[int(i)] for i in picks], n, fb, amplitude, echo)
        means.append(d.mean(axis=0))
        variances.append(d.var(axis=0))
        centred.append(d - d.mean(axis=0))
        counts[content] = len(d)
    if not means:
        raise ValueError(f"no training clips under {root}; run `stito data train` first")
    scale = np.sqrt(np.mean(variances, axis=0))
    scale = np.maximum(scale, 0.1 * float(np.median(scale)))
    whiten = nuisance_whitening(centred, scale) if whiten_covariance else None
    recordings = recording_means(root, seconds, seed, amplitude, echo)
    names = descriptor_names(amplitude, echo)
    base = len(descriptor_names())
    weights = None if family_weight == 1.0 else [1.0] * base + [float(family_weight)] * (len(names) - base)
    result = {"names": names, "mean": np.mean(means, axis=0).tolist(), "scale": scale.tolist(),
              "whiten": None if whiten is None else whiten.tolist(), "weights": weights,
              "neighbours": NEIGHBOURS, "recordings": [[round(float(v), 3) for v in r] for r in recordings],
              "reference_prior": reference_prior, "clips": counts, "seconds": seconds, "seed": seed,
              "command": f"stito train stats-prior --clips {clips_per_type} --reference-prior {reference_prior:g} "
                         f"--seed {seed}" + (" --whiten" if whiten_covariance else "")
                         + (" --amplitude-histogram" if amplitude else "") + (" --echo" if echo else "")
                         + (f" --family-weight {family_weight:g}" if weights else "")}
    path = out or package_dir("models") / PRIOR_FILE
    path.write_text(_dumps(result), encoding="utf-8")
    return result


def _dumps(result: dict) -> str:
    """The prior as JSON, indented, with each recording's row on one line (a reviewable file)."""
    rows = result["recordings"]
    text = json.dumps(result | {"recordings": "@ROWS@"}, indent=1)
    return text.replace('"@ROWS@"', "[\n" + ",\n".join("  " + json.dumps(r) for r in rows) + "\n ]") + "\n"


def _descriptors(root: Path, entries: list[dict], n: int, fb: np.ndarray, amplitude: bool = False,
                 echo: bool = False) -> np.ndarray:
    """``(len(entries), dims)`` descriptors of each clip's middle ``n`` samples (stereo, peak-normalised)."""
    batch = []
    for e in entries:
        x = load_clip(root, e)
        x = np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x
        start = max(0, (x.shape[1] - n) // 2)
        batch.append(x[:, start:start + n])
    length = min(b.shape[1] for b in batch)
    mid, side = normalized_mid_side(np.stack([b[:, :length] for b in batch]), RATE, RATE)
    return descriptors(mid, side, fb, amplitude, echo, RATE)


def recording_means(root: Path, seconds: float = 4.0, seed: int = 0, amplitude: bool = False,
                    echo: bool = False) -> np.ndarray:
    """Mean descriptors of every training recording, over up to ``CLIPS_PER_RECORDING`` of its clips.

    Args:
        root: The training corpus.
        seconds: Crop length from each clip's middle, in seconds.
        seed: Seed of the clip draw within a recording.

    Returns:
        ``(recordings, dims)`` float64, content types in ``CONTENTS`` order, recordings sorted by id.
    """
    rng = np.random.default_rng(seed)
    fb = mel_filterbank(RATE, N_FFT, N_MELS, 20.0, min(20000.0, RATE / 2))
    out = []
    for content in CONTENTS:
        try:
            entries = load_manifest(root, content, False)
        except (FileNotFoundError, ValueError):
            continue
        ids = np.array([e["recording"] for e in entries])
        for rec in sorted(set(ids.tolist())):
            members = np.flatnonzero(ids == rec)
            picks = rng.choice(members, size=min(CLIPS_PER_RECORDING, len(members)), replace=False)
            out.append(_descriptors(root, [entries[int(i)] for i in picks], int(seconds * RATE), fb,
                                    amplitude, echo).mean(axis=0))
    return np.array(out)


def nuisance_whitening(centred: list[np.ndarray], scale: np.ndarray) -> np.ndarray:
    """The inverse square root of the pooled between-recording covariance, shrunk by Ledoit-Wolf.

    Args:
        centred: Per content type, ``(clips, dims)`` descriptors minus that type's mean (content type is not
            a nuisance: the prior is per type in spirit, the covariance within types).
        scale: ``(dims,)`` per-descriptor spread; the covariance is estimated in these units (a correlation-like
            matrix), so the shrinkage target is the diagonal form the metric had without whitening.

    Returns:
        ``(dims, dims)`` W with ``W @ gap`` white for gaps between two recordings' descriptors (up to a factor 2).
    """
    from sklearn.covariance import LedoitWolf  # the train extra

    # each type weighs equally, as in the scale: rows weighted so that rows.T @ rows / len(rows) is the mean of
    # the types' covariances
    total = sum(len(c) for c in centred)
    rows = np.concatenate([c / scale * np.sqrt(total / (len(centred) * len(c))) for c in centred])
    cov = LedoitWolf(assume_centered=True).fit(rows).covariance_
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, 1e-6 * float(values.max()))
    inv_sqrt = (vectors / np.sqrt(values)) @ vectors.T
    return inv_sqrt / scale[None, :]
