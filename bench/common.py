"""Shared benchmark helpers: the results folder, clip pools from the evaluation manifests, stereo batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from training.data.clips import load_clip, load_manifest

RESULTS_DIR = Path(__file__).resolve().parent / "results"  # bench/results/, beside this code


# How a reference clip B is drawn for an input clip A: from another recording (the tasks), or another clip of
# A's own recording (their control: same content, so what a metric loses between the two is what content
# differences cost it).
PAIRINGS = ("other recording", "same recording")


class ClipPool:
    """The clips of one content type, loaded on demand (at most ``cache_size`` kept in memory).

    Attributes:
        entries: Manifest entries.
        recordings: ``(clips,)`` recording id of each clip (clips of one recording share it).
    """

    def __init__(self, data_root: Path, content_type: str, quick: bool, cache_size: int = 256) -> None:
        self.root = data_root
        self.content_type = content_type
        self.entries = load_manifest(data_root, content_type, quick)
        if len(self.entries) < 2:
            raise ValueError(f"{content_type}: the benchmark needs at least 2 clips, the manifest has "
                             f"{len(self.entries)}; run `stito data eval` without --quick for this content type")
        self.recordings = np.array([e["recording"] for e in self.entries])
        # One recording only (e.g. a single voice pack joined into clips): clips hold different utterances,
        # so each clip counts as its own recording.
        self.single_recording = len(set(self.recordings.tolist())) < 2
        if self.single_recording:
            self.recordings = np.array([e["id"] for e in self.entries])
        self._cache: dict[int, np.ndarray] = {}
        self._cache_size = cache_size

    def __len__(self) -> int:
        return len(self.entries)

    def stereo(self, i: int) -> np.ndarray:
        """Clip ``i`` as ``(2, samples)`` float32 at 48 kHz (mono duplicated)."""
        if i not in self._cache:
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            x = load_clip(self.root, self.entries[i])
            self._cache[i] = np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x
        return self._cache[i]

    def is_mono(self, i: int) -> bool:
        """Whether clip ``i`` was recorded in mono."""
        return int(self.entries[i]["channels"]) == 1

    def same_recording(self, i: int, rng: np.random.Generator) -> int | None:
        """A random other clip of clip ``i``'s recording, or None when the recording has no other clip."""
        ok = np.flatnonzero(self.recordings == self.recordings[i])
        ok = ok[ok != i]
        return int(rng.choice(ok)) if ok.size else None

    def partner(self, i: int, rng: np.random.Generator, pairing: str) -> int | None:
        """A clip to pair with clip ``i``: from another recording, or from its own (None when it has no other).

        Raises:
            ValueError: ``pairing`` not in ``PAIRINGS``.
        """
        if pairing == PAIRINGS[0]:
            return self.other_recording(i, rng)
        if pairing == PAIRINGS[1]:
            return self.same_recording(i, rng)
        raise ValueError(f"unknown pairing {pairing!r}; valid: {', '.join(PAIRINGS)}")

    def other_recording(self, i: int, rng: np.random.Generator, exclude: set[str] = frozenset()) -> int:
        """A random clip from a recording other than clip ``i``'s (and not in ``exclude``)."""
        ok = np.flatnonzero((self.recordings != self.recordings[i]) & ~np.isin(self.recordings, list(exclude)))
        if ok.size == 0:
            ok = np.flatnonzero(self.recordings != self.recordings[i])
        return int(rng.choice(ok))


def fmt(x: float | None) -> str:
    """Two-decimal figure for tables ("n/a" for None)."""
    return "n/a" if x is None else f"{x:.2f}"


def grouped_bars(ax: Any, labels: Sequence[str], series: dict[str, Sequence[float]], chance: float | None = None,
                 colors: Sequence[str] | None = None, **tick_kw: Any) -> None:
    """Draw grouped bars on a matplotlib axis: for each x label, one bar per series, side by side.

    Args:
        ax: The axis.
        labels: X tick labels, one per group.
        series: Legend label -> one value per x label.
        chance: Height of a dashed grey reference line (None: no line).
        colors: One colour per series (None: matplotlib's cycle).
        **tick_kw: Passed to ``ax.set_xticks`` (e.g. ``fontsize``, ``rotation``).
    """
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    for k, (name, vals) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, vals, width, label=name,
               **({} if colors is None else {"color": colors[k]}))
    if chance is not None:
        ax.axhline(chance, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, labels, **tick_kw)


def peak_normalize(audio: np.ndarray, peak_dbfs: float = -1.0) -> np.ndarray:
    """``(channels, samples)`` float32 scaled so its peak sits at ``peak_dbfs`` (a new array).

    Raises:
        ValueError: silent audio (peak 0).
    """
    x = np.asarray(audio, dtype=np.float32)
    peak = float(np.abs(x).max())
    if peak <= 0.0:
        raise ValueError("cannot peak-normalise silent audio (peak 0)")
    return x * np.float32(10 ** (peak_dbfs / 20) / peak)


def metric_label(name: str) -> str:
    """A metric's name as tables show it: "MFCC", or for ``afx:PATH`` the encoder file's name ("AFX-REP-1A2B3C4D")."""
    return (Path(name[4:]).stem if name.startswith("afx:") else name).upper()


def command_line(task: str, report: dict) -> str:
    """The ``stito bench`` command that reproduces ``report`` (its metrics, --quick and seed), for the tables."""
    metrics = report["metrics"] if "metrics" in report else list(report["results"])
    flags = (" --quick" if report.get("quick") else "") + f" --metrics {','.join(metrics)}"
    if report.get("seed", 0) != 0:
        flags += f" --seed {report['seed']}"
    return f"stito bench {task}{flags}"


def write_results(report: dict, out_dir: str | Path, markdown: Callable[[dict], str],
                  plot: Callable[[dict, Path], None]) -> dict:
    """Write ``<task>.md``, ``<task>.json`` and ``<task>.png`` into ``out_dir``; returns the report with "files"."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task = report["task"]
    files = [out_dir / f"{task}.md", out_dir / f"{task}.json", out_dir / f"{task}.png"]
    files[0].write_text(markdown(report))
    files[1].write_text(json.dumps(report, indent=1) + "\n")
    plot(report, files[2])
    report["files"] = [str(f) for f in files]
    return report
