"""Offline pretext pairs: (dry, wet, effect, preset) rendered once into log-mel memmaps, trained on for many epochs."""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import numpy as np

from stito_server.audio import save_atomically
from stito_server.metrics.base import normalized_mid_side
from stito_server.metrics.encoder import EncoderConfig, FrontEnd

from .data.clips import RATE, load_clip, load_manifest
from .data.fetch import cache_dir
from .plans import PairPlan

PAIRS_VERSION = 1
CHUNK = 64  # items per work unit (progress is saved per chunk)


@dataclass
class PairSet:
    """A rendered pair set on disk (read-only memmaps).

    Attributes:
        dry: ``(clips, 2, frames, n_mels)`` float16 log-mel of each dry clip (mid, side).
        wet: ``(items, 2, 2, frames, n_mels)`` float16 log-mel of the wet clips (a/b, mid/side).
        dry_index: ``(items, 2)`` int, the dry clip of a and b.
        effect: ``(items,)`` int effect index into ``effects``; -1 for a chain item.
        preset: ``(items,)`` int preset index (0..n_presets-1); -1 for a chain item.
        effects: Effect ids.
        n_presets: Presets per effect.
        ready: ``(items,)`` bool, rendered.
        style: ``(items,)`` int style id: ``effect * n_presets + preset`` for a single effect, and one id
            above those per distinct (effect, preset) sequence for chain items (equal ids: same style).
    """

    dry: np.ndarray
    wet: np.ndarray
    dry_index: np.ndarray
    effect: np.ndarray
    preset: np.ndarray
    effects: list[str]
    n_presets: int
    ready: np.ndarray
    style: np.ndarray


def frame_count(seconds: float, config: EncoderConfig) -> int:
    """Mel frames of a clip of ``seconds`` at the corpus rate under ``config``'s FFT size and hop."""
    return (int(round(seconds * RATE)) - config.n_fft) // config.hop + 1


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """``(2, samples)`` padded with zeros or trimmed to ``n`` samples."""
    if x.shape[-1] >= n:
        return x[:, :n]
    return np.pad(x, ((0, 0), (0, n - x.shape[-1])))


def as_stereo(x: np.ndarray) -> np.ndarray:
    """``(channels, samples)`` audio as ``(2, samples)``: mono repeated, stereo as it is."""
    return np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x


def mid_side_mel(audio: np.ndarray, front: FrontEnd) -> np.ndarray:
    """``(batch, 2, samples)`` -> ``(batch, 2, frames, n_mels)`` float16, peak-normalised as the metric does."""
    mid, side = normalized_mid_side(audio, RATE, RATE)
    mel = front(np.concatenate([mid, side], axis=0))
    b = audio.shape[0]
    return np.stack([mel[:b], mel[b:]], axis=1).astype(np.float16)


def _open(out: Path, name: str, shape: tuple[int, ...], mode: str) -> np.memmap:
    return np.memmap(out / name, dtype=np.float16, mode=mode, shape=shape)


def content_pools(train_root: Path, content_weights: dict[str, float]) -> dict[str, list[dict]]:
    """The training clips of each weighted content type that has at least two (manifest entries).

    Raises:
        FileNotFoundError: no content type has two clips (``stito data train`` not run).
    """
    pools: dict[str, list[dict]] = {}
    for ct in content_weights:
        try:
            pools[ct] = load_manifest(train_root, ct, quick=False)
        except FileNotFoundError:
            pools[ct] = []
    pools = {ct: p for ct, p in pools.items() if len(p) >= 2}
    if not pools:
        raise FileNotFoundError(f"no training clips under {train_root}; run `stito data train` first")
    return pools


def ready_mask(out: Path, items: int, key: str, chunk: int) -> np.ndarray:
    """``(items,)`` bool: the items of the chunks ``progress.json`` lists under ``key`` as rendered."""
    progress = out / "progress.json"
    ready = np.zeros(items, dtype=bool)
    for lo in json.loads(progress.read_text()).get(key, []) if progress.exists() else []:
        ready[lo:lo + chunk] = True
    return ready


def plan_items(train_root: Path, plan: PairPlan, effects: list[str], n_presets: int) -> dict:
    """Choose every item (seeded): clips, effect, preset, gains.

    Returns:
        A JSON-able dict: "clips" (manifest entries used), "dry_index", "effect", "preset", "gain_db",
        "chain" (per item, the ``[effect, preset]`` steps in processing order; effect and preset are -1 for
        chain items of two or more steps).
    """
    rng = np.random.default_rng(plan.seed)
    pools = content_pools(train_root, plan.content_weights)
    clips = [e for ct in pools for e in pools[ct]]
    offset, start = 0, {}
    for ct in pools:
        start[ct] = offset
        offset += len(pools[ct])
    cts = list(pools)
    w = np.array([plan.content_weights[c] for c in cts], dtype=float)
    kinds = rng.choice(len(cts), size=plan.items, p=w / w.sum())
    dry = np.zeros((plan.items, 2), dtype=np.int64)
    for i, k in enumerate(kinds):
        pool = pools[cts[k]]
        recs = np.array([e.get("recording", e["id"]) for e in pool])
        a = int(rng.integers(len(pool)))
        others = np.flatnonzero(recs != recs[a])
        b = int(rng.choice(others)) if others.size else int((a + 1) % len(pool))
        dry[i] = (start[cts[k]] + a, start[cts[k]] + b)
    effect = rng.integers(len(effects), size=plan.items)
    preset = rng.integers(n_presets, size=plan.items)
    gain_db = rng.uniform(*plan.gain_db, size=(plan.items, 2))
    chain = [[[int(e), int(p)]] for e, p in zip(effect, preset)]
    if plan.chain_share > 0:
        lengths = [n for n in plan.chain_lengths if n <= len(effects)]
        if not lengths:
            raise ValueError(f"chains of {list(plan.chain_lengths)} effects need more than {len(effects)} effects")
        for i in np.flatnonzero(rng.random(plan.items) < plan.chain_share):
            fx = rng.choice(len(effects), size=int(rng.choice(lengths)), replace=False)
            chain[i] = [[int(e), int(rng.integers(n_presets))] for e in fx]
            effect[i] = preset[i] = -1
    return {"clips": clips, "dry_index": dry.tolist(), "effect": effect.tolist(), "preset": preset.tolist(),
            "gain_db": gain_db.tolist(), "chain": chain}


def item_chains(items: dict) -> list[list[list[int]]]:
    """Each item's ``[effect, preset]`` steps (pair sets from before chain items have none stored)."""
    return items.get("chain") or [[[e, p]] for e, p in zip(items["effect"], items["preset"])]


def style_ids(chains: list[list[list[int]]], n_effects: int, n_presets: int) -> np.ndarray:
    """``(items,)`` int: equal for items of the same style (see ``PairSet.style``)."""
    seen: dict[tuple, int] = {}
    out = np.empty(len(chains), dtype=np.int64)
    for i, steps in enumerate(chains):
        if len(steps) == 1:
            out[i] = steps[0][0] * n_presets + steps[0][1]
        else:
            out[i] = seen.setdefault(tuple(map(tuple, steps)), n_effects * n_presets + len(seen))
    return out


def _dry_chunk(out: str, train_root: str, lo: int, hi: int) -> int:
    import torch

    torch.set_num_threads(1)
    out_p = Path(out)
    meta = json.loads((out_p / "meta.json").read_text())
    config = EncoderConfig.from_dict(meta["config"])
    front, n = FrontEnd(config), int(round(meta["plan"]["seconds"] * RATE))
    dry = _open(out_p, "dry.f16", tuple(meta["dry_shape"]), "r+")
    audio = np.stack([fit_length(as_stereo(load_clip(Path(train_root), e)), n) for e in meta["clips"][lo:hi]])
    dry[lo:hi] = mid_side_mel(audio, front)
    dry.flush()
    return hi - lo


def render_worker(out: str) -> tuple[Path, dict, dict, EncoderConfig, FrontEnd]:
    """Set up a render worker process for the set in ``out``: plugin stderr silenced (a failure reaches the
    parent as the future's exception), one torch thread, and the set's meta.json, items.json, network config
    and log-mel front end."""
    import torch

    from stito_server.engine.render import silence_plugin_stderr

    silence_plugin_stderr()
    torch.set_num_threads(1)
    out_p = Path(out)
    meta = json.loads((out_p / "meta.json").read_text())
    items = json.loads((out_p / "items.json").read_text())
    config = EncoderConfig.from_dict(meta["config"])
    return out_p, meta, items, config, FrontEnd(config)


def _wet_chunk(out: str, train_root: str, lo: int, hi: int) -> int:
    from .effects import make_effect

    out_p, meta, items, _, front = render_worker(out)
    presets = json.loads((out_p / "presets.json").read_text())["effects"]
    n = int(round(meta["plan"]["seconds"] * RATE))
    wet = _open(out_p, "wet.f16", tuple(meta["wet_shape"]), "r+")
    made: dict[str, object] = {}
    rendered = []
    chains = item_chains(items)
    for i in range(lo, hi):
        pair = []
        for j in range(2):
            entry = items["clips"][items["dry_index"][i][j]]
            y = fit_length(as_stereo(load_clip(Path(train_root), entry)), n) * np.float32(10 ** (items["gain_db"][i][j] / 20))
            for e, p in chains[i]:
                eid = meta["effects"][e]
                fx = made.get(eid) or made.setdefault(eid, make_effect(eid))
                fx.set_normalized(np.array(presets[eid]["presets"][p]))
                y = fit_length(as_stereo(fx.process(y, RATE)), n)
            pair.append(np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0))
        rendered.append(mid_side_mel(np.stack(pair), front))
    wet[lo:hi] = np.stack(rendered)
    wet.flush()
    return hi - lo


def build_pairs(train_root: Path, presets_file: Path, out: Path, plan: PairPlan = PairPlan(),
                config: EncoderConfig = EncoderConfig(), workers: int = 2,
                log: Callable[[str], None] = print) -> Path:
    """Render the pair set into ``out`` (resumable: finished chunks are recorded in ``progress.json``).

    Args:
        train_root: Training clips folder (``stito data train``).
        presets_file: Presets JSON (``build_presets``).
        out: Output folder (outside git; a few GB).
        plan: What to render.
        config: Encoder front-end settings (the log-mel must match the encoder's).
        workers: Worker processes (each renders its chunks with its own plugin instances).
        log: Progress printer.

    Returns:
        ``out``.
    """
    out.mkdir(parents=True, exist_ok=True)
    presets = json.loads(Path(presets_file).read_text())
    effects = list(presets["effects"])
    meta_now = {"version": PAIRS_VERSION, "plan": asdict(plan), "config": config.to_dict(), "effects": effects,
                "n_presets": presets["n_presets"]}
    meta_file = out / "meta.json"
    if meta_file.exists():
        old = json.loads(meta_file.read_text())
        old["plan"] = {**json.loads(json.dumps(asdict(PairPlan()))), **old["plan"]}  # sets from before new fields
        if any(old[k] != json.loads(json.dumps(v)) for k, v in meta_now.items()):
            raise RuntimeError(f"{out} holds pairs of a different plan/config/effects; choose another folder "
                               "or delete it")
        meta = old
    else:
        items = plan_items(train_root, plan, effects, presets["n_presets"])
        frames = frame_count(plan.seconds, config)
        meta = dict(meta_now, clips=items["clips"], dry_shape=[len(items["clips"]), 2, frames, config.n_mels],
                    wet_shape=[plan.items, 2, 2, frames, config.n_mels])
        save_atomically(out / "items.json", lambda tmp: Path(tmp).write_text(json.dumps(items)))
        save_atomically(out / "presets.json", lambda tmp: Path(tmp).write_text(json.dumps(presets)))
        _open(out, "dry.f16", tuple(meta["dry_shape"]), "w+").flush()
        _open(out, "wet.f16", tuple(meta["wet_shape"]), "w+").flush()
        save_atomically(meta_file, lambda tmp: Path(tmp).write_text(json.dumps(meta)))
    progress_file = out / "progress.json"
    progress = json.loads(progress_file.read_text()) if progress_file.exists() else {"dry": [], "wet": []}
    jobs = [("dry", lo, min(lo + CHUNK, meta["dry_shape"][0])) for lo in range(0, meta["dry_shape"][0], CHUNK)]
    jobs += [("wet", lo, min(lo + CHUNK, plan.items)) for lo in range(0, plan.items, CHUNK)]
    todo = [j for j in jobs if j[1] not in progress[j[0]]]
    log(f"pairs: {len(todo)} of {len(jobs)} chunks to render into {out} with {workers} worker(s)")
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_dry_chunk if kind == "dry" else _wet_chunk, str(out), str(train_root), lo, hi):
                   (kind, lo) for kind, lo, hi in todo if kind == "dry"}
        for fut, (kind, lo) in list(futures.items()):
            fut.result()
            progress[kind].append(lo)
        save_atomically(progress_file, lambda tmp: Path(tmp).write_text(json.dumps(progress)))
        render_chunks(pool, _wet_chunk, out, train_root, [(lo, hi) for kind, lo, hi in todo if kind == "wet"],
                      progress, "wet", log)
    return out


def render_chunks(pool: ProcessPoolExecutor, work: Callable[[str, str, int, int], int], out: Path, train_root: Path,
                  bounds: list[tuple[int, int]], progress: dict[str, list[int]], key: str,
                  log: Callable[[str], None]) -> None:
    """Run ``work(out, train_root, lo, hi)`` for each chunk on ``pool``, in order; record each finished chunk's
    ``lo`` under ``progress[key]`` in ``out/progress.json`` as it completes (so a killed run resumes there), and
    log the rate every 10 chunks."""
    t0 = time.perf_counter()
    futures = [(pool.submit(work, str(out), str(train_root), lo, hi), lo, hi) for lo, hi in bounds]
    items = 0
    for k, (fut, lo, hi) in enumerate(futures, 1):
        fut.result()
        items += hi - lo
        progress[key].append(lo)
        save_atomically(out / "progress.json", lambda tmp: Path(tmp).write_text(json.dumps(progress)))
        if k % 10 == 0 or k == len(futures):
            log(f"  {key} chunks {k}/{len(futures)} ({items / (time.perf_counter() - t0):.1f} items/s)")


def read_set(out: Path, what: str, command: str) -> tuple[dict, dict]:
    """A rendered set's meta.json and items.json.

    Raises:
        FileNotFoundError: no set in ``out`` (the message names ``what`` and the ``command`` that renders one).
    """
    if not (out / "meta.json").exists():
        raise FileNotFoundError(f"no {what} in {out}; run `{command}` first")
    return json.loads((out / "meta.json").read_text()), json.loads((out / "items.json").read_text())


def load_pairs(out: Path) -> PairSet:
    """Open a rendered pair set (memmaps, read-only)."""
    meta, items = read_set(out, "pair set", "stito train pairs")
    ready = ready_mask(out, meta["wet_shape"][0], "wet", CHUNK)
    return PairSet(dry=_open(out, "dry.f16", tuple(meta["dry_shape"]), "r"),
                   wet=_open(out, "wet.f16", tuple(meta["wet_shape"]), "r"),
                   dry_index=np.array(items["dry_index"]), effect=np.array(items["effect"]),
                   preset=np.array(items["preset"]), effects=meta["effects"], n_presets=meta["n_presets"],
                   ready=ready, style=style_ids(item_chains(items), len(meta["effects"]), meta["n_presets"]))


def default_pairs_dir(cache: str | Path | None = None) -> Path:
    """``pairs`` inside the data cache (``$STITO_DATA_DIR`` or ``~/.cache/stito/data`` unless ``cache``)."""
    return cache_dir(cache) / "pairs"
