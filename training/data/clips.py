"""Cut seeded, deterministic 48 kHz clips from unpacked packages and write one manifest per content type."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from stito_server.audio import resample, save_atomically

from .sources import CONTENT_TYPES, Source

RATE = 48000
AUDIO_SUFFIXES = (".ogg", ".opus", ".mp3", ".flac", ".wav")
ARCHIVE_SUFFIXES = (".pk3", ".zip")
FRAME_S = 0.05  # activity frames, in seconds
ACTIVE_DBFS = -45.0  # a frame is active when its RMS is above this
MIN_ACTIVE = 0.75  # a window clip needs this fraction of active frames
GAP_S = 0.2  # silence between joined utterances, in seconds
PEAK_CEILING = 0.999
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ClipPlan:
    """How many clips to cut.

    Attributes:
        clip_seconds: Clip length, in seconds.
        seed: Seed of every random choice (per file, combined with the file's name).
        quick: Cut only the quick subset.
        quick_files: Files (window/loop) or folders (concat) per source in the quick subset.
        quick_clips: Clips per file or folder in the quick subset.
    """

    clip_seconds: float = 5.0
    seed: int = 0
    quick: bool = False
    quick_files: int = 8
    quick_clips: int = 4


def _slug(text: str, n: int = 28) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[-n:] or "x"


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, int(_hash(key), 16)])


def list_files(source: Source, root: Path) -> list[str]:
    """Package-relative audio paths of a source, sorted (archive members as ``ARCHIVE!MEMBER``).

    Args:
        source: The source.
        root: Folder of the unpacked package.
    """
    out: list[str] = []
    for f in sorted(root.rglob("*")):
        if not f.is_file():
            continue
        rel = f.relative_to(root).as_posix()
        suffix = f.suffix.lower()
        if suffix in AUDIO_SUFFIXES and source.matches(rel):
            out.append(rel)
        elif suffix in ARCHIVE_SUFFIXES and any(p.startswith(rel + "!") for p in source.patterns):
            with zipfile.ZipFile(f) as zf:
                for name in sorted(zf.namelist()):
                    if name.lower().endswith(AUDIO_SUFFIXES) and source.matches(f"{rel}!{name}"):
                        out.append(f"{rel}!{name}")
    return out


def _open(root: Path, rel: str) -> io.BytesIO | str:
    if "!" in rel:
        archive, member = rel.split("!", 1)
        with zipfile.ZipFile(root / archive) as zf:
            return io.BytesIO(zf.read(member))
    return str(root / rel)


def read_source_file(root: Path, rel: str) -> tuple[np.ndarray, int]:
    """Decode one package file.

    Returns:
        ``(channels, samples)`` float32 at the file's own rate, and that rate in Hz.
    """
    data, rate = sf.read(_open(root, rel), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), int(rate)


def file_channels(root: Path, rel: str) -> int:
    """Channel count of a package file (header only)."""
    return int(sf.info(_open(root, rel)).channels)


def active_fraction(x: np.ndarray, rate: int) -> np.ndarray:
    """Per-frame activity of ``(channels, n)`` audio: True where a 50 ms frame's RMS exceeds -45 dBFS.

    Returns:
        ``(frames,)`` bool.
    """
    hop = max(1, int(FRAME_S * rate))
    n = x.shape[1] // hop
    if n == 0:
        return np.zeros(0, dtype=bool)
    power = (x[:, : n * hop].astype(np.float64) ** 2).mean(axis=0).reshape(n, hop).mean(axis=1)
    return 10 * np.log10(np.maximum(power, 1e-20)) > ACTIVE_DBFS


def trim_silence(x: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """Cut leading and trailing inactive frames of ``(channels, n)`` audio.

    Returns:
        The trimmed audio and its start offset in the input, in seconds.
    """
    act = active_fraction(x, rate)
    if not act.any():
        return x[:, :0], 0.0
    hop = max(1, int(FRAME_S * rate))
    first, last = int(np.argmax(act)), len(act) - int(np.argmax(act[::-1]))
    return x[:, first * hop: min(x.shape[1], last * hop)], first * hop / rate


def _finish(x: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """Resample ``(channels, n)`` to 48 kHz and scale under the peak ceiling; returns (audio, gain in dB)."""
    y = resample(x, rate, RATE)
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > PEAK_CEILING:
        y = y * (PEAK_CEILING / peak)
        return y.astype(np.float32), float(20 * np.log10(PEAK_CEILING / peak))
    return y.astype(np.float32), 0.0


def _window_clips(source: Source, root: Path, rel: str, plan: ClipPlan) -> Iterator[tuple[dict, Callable]]:
    x, rate = read_source_file(root, rel)
    length = int(round(plan.clip_seconds * rate))
    rng = _rng(plan.seed, f"{source.package}:{rel}")
    phase = int(rng.integers(0, length)) if x.shape[1] > 2 * length else 0
    starts = np.arange(phase, x.shape[1] - length + 1, length)
    act = active_fraction(x, rate)
    hop = max(1, int(FRAME_S * rate))
    ok = [int(s) for s in starts if act[s // hop: (s + length) // hop].size
          and act[s // hop: (s + length) // hop].mean() >= MIN_ACTIVE]
    order = [ok[i] for i in rng.permutation(len(ok))]
    keep = order[: plan.quick_clips if plan.quick else source.max_clips_per_file]
    for s in sorted(keep):
        meta = {"id": f"{source.package}-{_slug(rel)}-{_hash(rel)}-t{int(1000 * s / rate):08d}",
                "recording": f"{source.package}:{rel}",
                "segments": [{"file": rel, "offset_s": s / rate, "duration_s": length / rate}],
                "source_rate": rate}
        yield meta, (lambda s=s: _finish(x[:, s: s + length], rate))


def _loop_clips(source: Source, root: Path, rel: str, plan: ClipPlan) -> Iterator[tuple[dict, Callable]]:
    x, rate = read_source_file(root, rel)
    x, _ = trim_silence(x, rate)
    if x.shape[1] < int(0.25 * rate):
        return
    length = int(round(plan.clip_seconds * rate))
    rng = _rng(plan.seed, f"{source.package}:{rel}")
    n = x.shape[1]
    rotations = sorted(set(int(r) for r in rng.integers(0, n, size=3)))
    for k, r in enumerate(rotations[: plan.quick_clips if plan.quick else len(rotations)]):
        idx = (r + np.arange(length)) % n
        segs, pos = [], r
        remaining = length
        while remaining > 0:
            d = min(n - pos, remaining)
            segs.append({"file": rel, "offset_s": pos / rate, "duration_s": d / rate})
            remaining -= d
            pos = 0
        meta = {"id": f"{source.package}-{_slug(rel)}-{_hash(rel)}-r{k}", "recording": f"{source.package}:{rel}",
                "segments": segs, "source_rate": rate, "looped": True}
        yield meta, (lambda idx=idx: _finish(x[:, idx], rate))


def _concat_clips(source: Source, root: Path, folder: str, files: list[str],
                  plan: ClipPlan) -> Iterator[tuple[dict, Callable]]:
    mono = any(file_channels(root, f) == 1 for f in files)
    length = int(round(plan.clip_seconds * RATE))
    gap = np.zeros((1 if mono else 2, int(GAP_S * RATE)), dtype=np.float32)
    parts: list[np.ndarray] = []
    segs: list[dict] = []
    have, k = 0, 0
    limit = plan.quick_clips if plan.quick else None
    for rel in files:
        x, rate = read_source_file(root, rel)
        x = x.mean(axis=0, keepdims=True) if mono else (np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x)
        x, start = trim_silence(x, rate)
        if x.shape[1] == 0:
            continue
        y = resample(x, rate, RATE)
        take = min(y.shape[1], length - have)
        parts.append(y[:, :take])
        segs.append({"file": rel, "offset_s": start, "duration_s": take / RATE, "source_rate": rate})
        have += take
        if have < length:
            parts.append(gap[:, : min(gap.shape[1], length - have)])
            have += parts[-1].shape[1]
        if have >= length:
            audio = np.concatenate(parts, axis=1)[:, :length]
            meta = {"id": f"{source.package}-{_slug(folder)}-{_hash(folder)}-c{k:03d}",
                    "recording": f"{source.package}:{folder}", "segments": segs, "gap_s": GAP_S}
            yield meta, (lambda a=audio: _finish(a, RATE))
            parts, segs, have, k = [], [], 0, k + 1
            if limit is not None and k >= limit:
                return


def _units(source: Source, files: list[str], plan: ClipPlan) -> list[tuple[str, list[str]]]:
    """Work units of a source: (key, files): one per file, or one per folder for concat sources."""
    if source.assembly == "concat":
        groups: dict[str, list[str]] = defaultdict(list)
        for f in files:
            groups[f.rsplit("/", 1)[0]].append(f)
        units = sorted(groups.items())
    else:
        units = [(f, [f]) for f in files]
    return units[: plan.quick_files] if plan.quick else units


def build_source(source: Source, root: Path, version: str, out_root: Path, plan: ClipPlan,
                 log: Callable[[str], None] = print) -> list[dict]:
    """Cut (or find already cut) the clips of one source.

    Each work unit (a file, or a folder for concat sources) records its clip list in a small JSON file
    once all its clips are written, so a rerun skips decoding and an interrupted run resumes.

    Args:
        source: The source.
        root: Its unpacked package folder.
        version: Package version, for the manifest.
        out_root: Folder holding one sub-folder per content type.
        plan: Clip settings.

    Returns:
        Manifest entries (dicts) for the source's clips.
    """
    clip_dir = out_root / source.content_type
    plan_dir = out_root / ".units" / source.package
    clip_dir.mkdir(parents=True, exist_ok=True)
    plan_dir.mkdir(parents=True, exist_ok=True)
    entries: list[dict] = []
    files = list_files(source, root)
    if not files:
        raise FileNotFoundError(f"no audio matches {source.patterns} in package {source.package} ({root})")
    for key, unit_files in _units(source, files, plan):
        tag = f"{source.content_type}|{key}|{plan.clip_seconds}|{plan.seed}|" + (
            f"q{plan.quick_clips}" if plan.quick else f"f{source.max_clips_per_file}")
        unit_file = plan_dir / f"{_slug(key, 40)}-{_hash(tag)}.json"
        if unit_file.exists():
            done = json.loads(unit_file.read_text())
            if all((clip_dir / f"{e['id']}.flac").exists() for e in done):
                entries += done
                continue
        if source.assembly == "concat":
            gen = _concat_clips(source, root, key, unit_files, plan)
        elif source.assembly == "loop":
            gen = _loop_clips(source, root, key, plan)
        else:
            gen = _window_clips(source, root, key, plan)
        unit_entries = []
        for meta, render in gen:
            path = clip_dir / f"{meta['id']}.flac"
            audio, gain_db = render()  # cheap once the file is decoded; keeps the manifest independent of history
            if not path.exists():
                save_atomically(path, lambda tmp, a=audio: sf.write(tmp, a.T, RATE, subtype="PCM_24", format="FLAC"))
            info = sf.info(str(path))
            meta.update({"content_type": source.content_type, "package": source.package, "version": version,
                         "license": source.license, "dryness": source.dryness, "dryness_note": source.note,
                         "path": f"{source.content_type}/{meta['id']}.flac", "sample_rate": RATE,
                         "channels": int(info.channels), "duration_s": info.frames / RATE, "gain_db": gain_db})
            unit_entries.append(meta)
        _write_json(unit_file, unit_entries)
        entries += unit_entries
    log(f"  {source.package} ({source.content_type}): {len(entries)} clips")
    return entries


def _write_json(path: Path, obj) -> None:
    save_atomically(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n"))


def manifest_path(out_root: Path, content_type: str, quick: bool) -> Path:
    """Path of a content type's manifest (``manifest.json``, or ``manifest-quick.json`` for the subset)."""
    return out_root / content_type / ("manifest-quick.json" if quick else "manifest.json")


def write_manifests(out_root: Path, entries: list[dict], plan: ClipPlan) -> dict[str, float]:
    """Write one manifest per content type (every content type, empty ones included).

    Returns:
        Content type -> hours of clips.
    """
    hours = {}
    for ct in CONTENT_TYPES:
        clips = sorted((e for e in entries if e["content_type"] == ct), key=lambda e: e["id"])
        hours[ct] = sum(e["duration_s"] for e in clips) / 3600.0
        (out_root / ct).mkdir(parents=True, exist_ok=True)
        _write_json(manifest_path(out_root, ct, plan.quick), {
            "version": MANIFEST_VERSION, "content_type": ct, "quick": plan.quick, "seed": plan.seed,
            "clip_seconds": plan.clip_seconds, "sample_rate": RATE, "hours": hours[ct], "clips": clips})
    return hours


def load_manifest(out_root: Path, content_type: str, quick: bool) -> list[dict]:
    """Clip entries of one content type's manifest.

    Raises:
        ValueError: unknown content type (valid ones listed).
        FileNotFoundError: the manifest is missing (run ``stito data eval`` or ``stito data train`` first).
    """
    if content_type not in CONTENT_TYPES:
        raise ValueError(f"unknown content type {content_type!r}; valid: {', '.join(CONTENT_TYPES)}")
    path = manifest_path(out_root, content_type, quick)
    if not path.exists():
        which = "train" if path.parent.parent.name == "train" else "eval" + (" --quick" if quick else "")
        raise FileNotFoundError(f"{path} not found; run `stito data {which}` first")
    return json.loads(path.read_text())["clips"]


def load_clip(out_root: Path, entry: dict) -> np.ndarray:
    """A clip's audio, ``(channels, samples)`` float32 at 48 kHz."""
    data, rate = sf.read(str(out_root / entry["path"]), dtype="float32", always_2d=True)
    if rate != RATE:
        raise ValueError(f"clip {entry['path']} is at {rate} Hz, expected {RATE}")
    return np.ascontiguousarray(data.T)
