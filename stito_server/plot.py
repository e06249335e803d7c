"""Match plot: long-term spectra of input, reference and output, and the similarity trajectory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio import mid_side


def _spectrum_db(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.signal import welch

    mid, _ = mid_side(x)
    f, p = welch(mid, sample_rate, nperseg=4096)
    # 1/6-octave smoothing: average the power in bands around log-spaced centres
    centres = np.geomspace(20.0, sample_rate / 2, 160)
    smooth = np.array([p[(f >= c * 2 ** (-1 / 12)) & (f <= c * 2 ** (1 / 12))].mean()
                       if np.any((f >= c * 2 ** (-1 / 12)) & (f <= c * 2 ** (1 / 12))) else np.interp(c, f, p)
                       for c in centres])
    return centres, 10 * np.log10(np.maximum(smooth, 1e-14))


def save_plot(path: str | Path, input_audio: np.ndarray, input_rate: int, reference: np.ndarray, reference_rate: int,
              output: np.ndarray, trajectory: list[dict], title: str = "") -> None:
    """Write a PNG with two panels: mid-channel spectra (dB vs log Hz) and best similarity per generation.

    Args:
        path: PNG path (written whole or not at all).
        input_audio: ``(channels, n)`` input. reference: ``(channels, m)``. output: ``(channels, n)``.
        input_rate: Rate of input and output, in Hz. reference_rate: Rate of the reference, in Hz.
        trajectory: The optimiser's per-generation records (keys generation, best, generation_median).
        title: Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .audio import save_atomically

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for x, rate, label in ((input_audio, input_rate, "input"), (reference, reference_rate, "reference"),
                           (output, input_rate, "output")):
        f, db = _spectrum_db(x, rate)
        keep = f > 20
        ax1.semilogx(f[keep], db[keep], label=label, lw=1.2)
    ax1.set(xlabel="frequency [Hz]", ylabel="power [dB]", title="long-term spectrum (mid, 1/6 octave)")
    ax1.legend()
    ax1.grid(alpha=0.3)
    gens = [t["generation"] for t in trajectory]
    ax2.plot(gens, [t["best"] for t in trajectory], marker="o", label="best so far")
    ax2.plot(gens, [t["generation_median"] for t in trajectory], ls="--", label="generation median")
    ax2.set(xlabel="generation", ylabel="cosine similarity", title="similarity to reference")
    ax2.legend()
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
