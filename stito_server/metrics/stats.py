"""Production statistics: log-domain descriptors compared as processing deltas, weighted by how recordings differ."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..resources import package_dir
from .base import Embedding, StyleMetric, normalized_mid_side
from .logmel import mel_filterbank

N_FFT, HOP, N_MELS, BANDS, BROAD = 2048, 1024, 128, 16, 4
SIDE_FLOOR_DB = -60.0  # side level below the mid's by more than this is taken as this (mono: no side)
ACTIVE_DB = 35.0  # frames within this of the loudest frame count (the loudest passages, not the gaps)
PRIOR_FILE = "stats-prior.json"  # in the package's models folder, written by `stito train stats-prior`


# Optional descriptors, computed when the prior file names them (``stito train stats-prior --amplitude-histogram``):
# the share of the mid's samples within 6 and 12 dB of its peak, in dB (limiting, compression with make-up and
# saturation pile samples up near the peak; measured by `stito bench visibility`).
AMPLITUDE = ("share_above_-6dB", "share_above_-12dB")
# ... and with ``--echo``, the strength of an echo per band of delay times (``echo_strengths``: a delay adds a copy of
# the signal, a ripple in every frame's log spectrum that content does not make; `stito bench separation --candidates`).
ECHO_WINDOW_S, ECHO_HOP_S = 1.0, 0.25  # frames of the cepstrum: longer than the longest lag looked for, twice over
ECHO_LAGS_S = (0.03, 0.45)  # lags an echo is looked for at (slapback to long delays; pitch periods are shorter)
ECHO_BANDS = 6  # bands of lags (one strength each: the delay time shows)
ECHO = tuple(f"echo_{int(ms)}ms_db" for ms in 1000 * np.geomspace(*ECHO_LAGS_S, ECHO_BANDS))


def descriptor_names(amplitude: bool = False, echo: bool = False) -> list[str]:
    """Name of each descriptor, in vector order (then ``AMPLITUDE`` with ``amplitude``, ``ECHO`` with ``echo``)."""
    return ([f"shape_{k}" for k in range(BANDS)] + [f"range_{k}" for k in range(BANDS)]
            + [f"side_{k}" for k in range(BANDS)] + [f"decay_{k}" for k in range(BROAD)]
            + [f"flux_{k}" for k in range(BROAD)] + ["crest_db"] + (list(AMPLITUDE) if amplitude else [])
            + (list(ECHO) if echo else []))


def amplitude_shares(mid: np.ndarray) -> np.ndarray:
    """``(batch, 2)`` float64: the share of each clip's samples within 6 and 12 dB of its peak, 10 log10.

    Args:
        mid: ``(batch, samples)`` float32.
    """
    a = np.abs(mid.astype(np.float64)) / np.maximum(np.abs(mid).max(axis=1, keepdims=True), 1e-9)
    return np.stack([10 * np.log10(np.mean(a > 10 ** (db / 20), axis=1) + 1e-6) for db in (-6.0, -12.0)], axis=1)


def echo_strengths(mid: np.ndarray, sample_rate: int, bands: int = 1) -> np.ndarray:
    """``(batch, bands)`` float64: how strongly one lag stands out in the mean real cepstrum of each clip's frames, dB.

    A delayed copy, y = x + g x(t - L), multiplies every frame's spectrum by |1 + g exp(-i 2 pi f L)|: a ripple of
    period 1 / L in the log spectrum, the same in every frame, so a peak at quefrency L in the frames' mean cepstrum;
    content's own peaks (pitch periods, under 30 ms) fall outside ``ECHO_LAGS_S`` or move from frame to frame. A
    lag's height is its cepstrum above the median over those lags, in units of their median absolute deviation;
    the strength is ``10 log10(1 + height)`` of the highest. With ``bands`` > 1, one strength per band of lags:
    bands centred at log-spaced lags over ``ECHO_LAGS_S``, each weighing a lag's height by a triangle in log lag that
    reaches 0 at the neighbouring centres (so an echo between two centres shows in both, in proportion, and the
    strengths move smoothly with the delay time). 0 for a clip shorter than one frame. Level does not change them.

    Args:
        mid: ``(batch, samples)`` float.
        sample_rate: In Hz.
        bands: 1: the highest lag anywhere; more: per band of lags (``ECHO`` names their centres).
    """
    n, hop = int(ECHO_WINDOW_S * sample_rate), int(ECHO_HOP_S * sample_rate)
    x = np.asarray(mid, dtype=np.float64)
    if x.shape[-1] < n:
        return np.zeros((len(x), bands))
    frames = np.lib.stride_tricks.sliding_window_view(x, n, axis=-1)[:, ::hop] * np.hanning(n)
    mag = np.abs(np.fft.rfft(frames, axis=-1))
    logs = np.log(np.maximum(mag / np.maximum(mag.max(axis=-1, keepdims=True), 1e-30), 1e-6))  # 120 dB below peaks
    cepstrum = np.fft.irfft(logs - logs.mean(axis=-1, keepdims=True), n=n, axis=-1).mean(axis=1)
    first = int(ECHO_LAGS_S[0] * sample_rate)
    lags = cepstrum[:, first:int(ECHO_LAGS_S[1] * sample_rate)]
    med = np.median(lags, axis=1, keepdims=True)
    mad = np.median(np.abs(lags - med), axis=1, keepdims=True) + 1e-12
    height = np.maximum((lags - med) / mad, 0.0)  # (batch, lags)
    if bands == 1:
        return 10 * np.log10(1 + height.max(axis=1))[:, None]
    position = np.log(np.arange(first, first + lags.shape[1]) / sample_rate / ECHO_LAGS_S[0]) / np.log(
        ECHO_LAGS_S[1] / ECHO_LAGS_S[0]) * (bands - 1)  # 0 .. bands - 1 along log lag
    tri = np.maximum(1 - np.abs(position[None, :] - np.arange(bands)[:, None]), 0.0)  # (bands, lags)
    return 10 * np.log10(1 + (height[:, None, :] * tri[None]).max(axis=2))


def descriptors(mid: np.ndarray, side: np.ndarray, fb: np.ndarray, amplitude: bool = False, echo: bool = False,
                sample_rate: int = 48000) -> np.ndarray:
    """Production descriptors of peak-normalised clips, in dB.

    Per clip: the mid's band levels with the overall level removed (spectral shape, 16 bands), each band's
    short-term level range (90th minus 10th percentile over the active frames: dynamics), the side's level
    against the mid's per band (width), the steepest decays per broad band (10th percentile of the frame-to-
    frame level change: reverb slows them), the mean absolute frame-to-frame change per broad band (envelope
    modulation: echoes and reverb smooth it) and the crest factor of the mid.

    Args:
        mid: ``(batch, samples)`` float32.
        side: Same shape.
        fb: ``(N_MELS, N_FFT // 2 + 1)`` mel filterbank.
        amplitude: Also the amplitude histogram (``amplitude_shares``).
        echo: Also the echo strengths per band of lags (``echo_strengths``, ``ECHO_BANDS``).
        sample_rate: Of ``mid``, in Hz (the echo's lags).

    Returns:
        ``(batch, len(descriptor_names(amplitude, echo)))`` float64.
    """
    def band_db(x: np.ndarray) -> np.ndarray:  # (batch, frames, BANDS)
        if x.shape[-1] < N_FFT:
            x = np.pad(x, ((0, 0), (0, N_FFT - x.shape[-1])))
        frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT, axis=-1)[:, ::HOP]
        power = np.abs(np.fft.rfft(frames * np.hanning(N_FFT).astype(np.float32), axis=-1)) ** 2
        mel = power @ fb.T
        bands = mel.reshape(*mel.shape[:-1], BANDS, N_MELS // BANDS).mean(axis=-1)
        return 10 * np.log10(np.maximum(bands, 1e-12))

    m, s = band_db(mid), band_db(side)
    total = 10 * np.log10(np.maximum((10 ** (m / 10)).sum(axis=-1), 1e-12))  # (batch, frames)
    active = total >= total.max(axis=1, keepdims=True) - ACTIVE_DB
    w = active / np.maximum(active.sum(axis=1, keepdims=True), 1)
    mean_m = np.einsum("bt,btk->bk", w, m)
    mean_s = np.einsum("bt,btk->bk", w, s)
    shape = mean_m - mean_m.mean(axis=1, keepdims=True)
    lo, hi = (np.array([[np.percentile(m[b, active[b], k], q) for k in range(BANDS)] for b in range(len(m))])
              for q in (10, 90))
    side_db = np.maximum(mean_s - mean_m, SIDE_FLOOR_DB)
    broad = m.reshape(*m.shape[:-1], BROAD, BANDS // BROAD)
    broad = 10 * np.log10(np.maximum((10 ** (broad / 10)).mean(axis=-1), 1e-12))  # (batch, frames, BROAD)
    diff = np.diff(broad, axis=1)
    both = active[:, 1:] & active[:, :-1]
    decay = np.array([[np.percentile(diff[b, both[b], k], 10) if both[b].any() else 0.0 for k in range(BROAD)]
                      for b in range(len(m))])
    flux = np.array([[np.mean(np.abs(diff[b, both[b], k])) if both[b].any() else 0.0 for k in range(BROAD)]
                     for b in range(len(m))])
    rms = np.sqrt(np.mean(np.square(mid, dtype=np.float64), axis=1))
    crest = 20 * np.log10(np.maximum(np.abs(mid).max(axis=1), 1e-9) / np.maximum(rms, 1e-9))
    parts = ([shape, hi - lo, side_db, decay, flux, crest[:, None]] + ([amplitude_shares(mid)] if amplitude else [])
             + ([echo_strengths(mid, sample_rate, ECHO_BANDS)] if echo else []))
    return np.concatenate(parts, axis=1)


class StatsMetric(StyleMetric):
    """Production statistics compared as processing deltas (``delta = True``).

    ``embed`` returns raw descriptors (in ``Embedding.mid``; ``side`` is empty: the side's share is among the
    descriptors). The match compares what the chain does to each excerpt, ``d(chain(A_c)) - d(A_c)``, with
    what the reference's processing is estimated to be, ``d(B) - [reference_prior * prior(A) + (1 -
    reference_prior) * d(A)]`` (``targets``), where ``prior(A)`` is the mean of the raw training recordings
    most like the input (``content_prior``): the best guess of the reference's raw content is partly the
    input's own and partly what recordings like it are. ``similarity`` is minus the mean squared difference in
    units of how much recordings naturally differ per descriptor (``scale``, fit on the training corpus), so 0
    is a perfect match and a gap of one recording-to-recording spread in every descriptor scores -1.

    Attributes:
        prior: ``(dims,)`` mean descriptors of raw training recordings (every content type alike).
        scale: ``(dims,)`` spread of a descriptor between recordings (its standard deviation).
        whiten: ``(dims, dims)`` inverse square root of the between-recording covariance (shrunk), or None.
        weights: ``(dims,)`` each descriptor's weight in the mean squared gap (a family of a few descriptors can
            count as many), or None: one each.
        names: The descriptors it computes, in vector order (those its prior file names).
        recordings: ``(recordings, dims)`` mean descriptors of each raw training recording (none: the content
            prior is ``prior``).
        neighbours: How many of ``recordings`` make the content prior.
        reference_prior: 1: the reference's processing is measured against the content prior ("apply the
            reference's processing"); 0 (the shipped default): against the input ("sound like the reference",
            as Matchering does). A 0.75 blend guesses another recording's raw descriptors better on training
            recordings, but its matches ended further from the oracle with the floors calibrated at 0
            (docs/match-quality.md).
    """

    name = "stats"
    delta = True

    def __init__(self, sample_rate: int = 48000, prior_path: Path | None = None,
                 reference_prior: float | None = None) -> None:
        self.sample_rate = sample_rate
        self.fb = mel_filterbank(sample_rate, N_FFT, N_MELS, 20.0, min(20000.0, sample_rate / 2))
        data = json.loads((prior_path or package_dir("models") / PRIOR_FILE).read_text(encoding="utf-8"))
        self.amplitude = set(AMPLITUDE) <= set(data["names"])  # the families the prior names
        self.echo = set(ECHO) <= set(data["names"])
        self.names = descriptor_names(self.amplitude, self.echo)
        if data["names"] != self.names:
            raise ValueError(f"{PRIOR_FILE} was fit for other descriptors; re-run `stito train stats-prior`")
        self.prior = np.asarray(data["mean"], dtype=np.float64)
        self.scale = np.asarray(data["scale"], dtype=np.float64)
        # (dims,) how many descriptors' worth each one counts in the mean squared gap (None: one each)
        self.weights = np.asarray(data["weights"], dtype=np.float64) if data.get("weights") is not None else None
        # (dims, dims) inverse square root of the between-recording covariance, when fit; else per-descriptor
        self.whiten = np.asarray(data["whiten"], dtype=np.float64) if data.get("whiten") is not None else None
        self.recordings = np.asarray(data.get("recordings", []), dtype=np.float64).reshape(-1, len(self.prior))
        self.neighbours = int(data.get("neighbours", 0))
        self.reference_prior = float(data["reference_prior"] if reference_prior is None else reference_prior)

    def content_prior(self, input_mean: np.ndarray) -> np.ndarray:
        """The expected raw descriptors of a recording like the input: the mean of the ``neighbours`` training
        recordings nearest to it (mean squared gap in spreads, ``scale``), or ``prior`` when the prior file
        has no recordings.

        Args:
            input_mean: ``(dims,)`` the input's mean descriptors.

        Returns:
            ``(dims,)`` float64.
        """
        if not len(self.recordings) or self.neighbours < 1:
            return self.prior
        gaps = np.mean(np.square((self.recordings - np.asarray(input_mean, np.float64)) / self.scale), axis=1)
        nearest = np.argsort(gaps, kind="stable")[:self.neighbours]
        return self.recordings[nearest].mean(axis=0)

    def embed(self, audio: np.ndarray, sample_rate: int) -> Embedding:
        mid, side = normalized_mid_side(audio, sample_rate, self.sample_rate)
        d = descriptors(mid, side, self.fb, self.amplitude, self.echo, self.sample_rate).astype(np.float32)
        return Embedding(d, np.zeros((len(d), 0), np.float32))

    def distance(self, similarity: float) -> float:
        """How far a similarity is from a perfect match: its mean squared gap in spreads."""
        return max(-float(similarity), 0.0)

    def average(self, emb: Embedding) -> Embedding:
        return Embedding(emb.mid.mean(axis=0, keepdims=True), emb.side.mean(axis=0, keepdims=True))

    def targets(self, reference: Embedding, input_mean: Embedding, dry: Embedding,
                reference_prior: float | None = None) -> Embedding:
        """What each excerpt's descriptors should become: its own plus the reference's estimated processing.

        Args:
            reference: The reference's mean descriptors (one row).
            input_mean: The input's mean descriptors (one row).
            dry: The unprocessed excerpts' descriptors (one row each).
            reference_prior: 0: the reference's processing is what it has beyond the input ("sound like the
                reference"); 1: beyond the raw training recordings most like the input (``content_prior``:
                "apply the reference's processing"); in between, a blend (None: ``self.reference_prior``).

        Returns:
            One row per excerpt.
        """
        lam = self.reference_prior if reference_prior is None else reference_prior
        raw = input_mean.mid.astype(np.float64)
        guess = raw if lam == 0 else lam * self.content_prior(raw.reshape(-1)) + (1.0 - lam) * raw
        processing = reference.mid - guess
        return Embedding((dry.mid + processing).astype(np.float32), dry.side)

    def similarity(self, a: Embedding, b: Embedding, use_side: bool = True) -> np.ndarray:
        """Minus the mean squared gap in units of how recordings differ: whitened by the between-recording
        covariance when the prior has one (``whiten``: descriptors that move together between recordings, such
        as the high bands of a darker recording, count once), else divided by each descriptor's spread; each squared
        gap weighted by ``weights`` when the prior has them."""
        gap = a.mid.astype(np.float64) - b.mid.astype(np.float64)
        z = gap @ self.whiten.T if self.whiten is not None else gap / self.scale
        if self.weights is not None:
            return -(np.square(z) @ self.weights) / float(self.weights.sum())
        return -np.mean(np.square(z), axis=-1)
