"""Ranking sets: recording a under a setting vs recording b under that setting and nearby ones, as log-mel memmaps."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from stito_server.audio import save_atomically
from stito_server.errors import RenderError
from stito_server.metrics.encoder import EncoderConfig

from .data.clips import RATE, load_clip
from .data.fetch import cache_dir
from .pairs import (
    as_stereo,
    content_pools,
    fit_length,
    frame_count,
    mid_side_mel,
    read_set,
    ready_mask,
    render_chunks,
    render_worker,
)
from .plans import RankPlan

if TYPE_CHECKING:
    from stito_server.effects.chain import Chain

RANK_VERSION = 1
CHUNK = 32  # items per work unit (progress is saved per chunk)
RETRIES = 8  # settings redrawn when a render fails (NaN, runaway level)


@dataclass
class RankSet:
    """A rendered ranking set on disk (read-only memmaps).

    Attributes:
        anchor: ``(items, 2, frames, n_mels)`` float16 log-mel (mid, side) of recording a at the item's setting.
        cands: ``(items, negatives + 2, 2, frames, n_mels)`` float16 log-mel of recording b: index 0 at the
            item's setting (the positive), 1..negatives at nearby settings, the last one dry.
        family: ``(items,)`` str, the chain family of each item ("effect:<id>" or a chain name).
        ready: ``(items,)`` bool, rendered.
    """

    anchor: np.ndarray
    cands: np.ndarray
    family: np.ndarray
    ready: np.ndarray


def family_chain(family: str) -> "Chain":
    """The chain of a family: "effect:<effect id>" is that one effect; anything else a shipped chain name.

    Returns:
        A ``Chain`` at its starting settings.

    Raises:
        ChainError: unknown effect or chain (the message lists the valid ones).
    """
    from stito_server.effects.chain import Chain
    from stito_server.effects.specs import load_chain

    from .effects import make_effect

    if family.startswith("effect:"):
        fx = make_effect(family[len("effect:"):])
        return Chain([fx], name=fx.name)
    return load_chain(family)


def cached_family(cache: dict[str, tuple["Chain", np.ndarray]], family: str) -> tuple["Chain", np.ndarray]:
    """A family's chain and its starting vector ``(dims,)``, made once per ``cache`` (plugins load slowly)."""
    if family not in cache:
        made = family_chain(family)
        cache[family] = (made, made.get_vector())
    return cache[family]


def _families(plan: RankPlan, effects: list[str]) -> list[tuple[str, float]]:
    out = []
    for name, w in plan.family_weights.items():
        if name == "effect":
            out += [(f"effect:{e}", w / len(effects)) for e in effects]
        elif w > 0:
            out.append((name, w))
    return out


def draw_setting(rng: np.random.Generator, plan: RankPlan, family: str, start: np.ndarray) -> np.ndarray:
    """A setting ``theta`` of a family: ``(dims,)`` float64 in [0, 1].

    One-effect families take the effect's defaults with 1-3 coordinates redrawn (share
    ``plan.effect_defaults_share``) or a uniform setting; chain families spread ``plan.start_sigma`` around
    the chain's start.
    """
    d = start.shape[0]
    if family.startswith("effect:"):
        if rng.random() < plan.effect_defaults_share:
            theta = start.copy()
            idx = rng.choice(d, size=min(d, int(rng.integers(1, 4))), replace=False)
            theta[idx] = rng.random(idx.size)
            return theta
        return rng.random(d)
    return np.clip(start + rng.normal(0.0, plan.start_sigma, d), 0.0, 1.0)


def draw_negative(rng: np.random.Generator, plan: RankPlan, theta: np.ndarray) -> np.ndarray:
    """A nearby setting: one coordinate redrawn (at least ``plan.min_move`` away) or all perturbed."""
    if rng.random() < 0.5:
        out = theta.copy()
        j = int(rng.integers(theta.shape[0]))
        lo, hi = theta[j] - plan.min_move, theta[j] + plan.min_move
        room = max(0.0, lo) + max(0.0, 1.0 - hi)
        if room <= 0:
            out[j] = 1.0 - theta[j]
        else:
            v = rng.random() * room
            out[j] = v if v < max(0.0, lo) else hi + (v - max(0.0, lo))
        return np.clip(out, 0.0, 1.0)
    sigma = rng.uniform(*plan.near_sigma)
    return np.clip(theta + rng.normal(0.0, sigma, theta.shape[0]), 0.0, 1.0)


def plan_items(train_root: Path, plan: RankPlan, effects: list[str], starts: dict[str, list[float]]) -> dict:
    """Choose every item (seeded): family, clips a and b (different recordings), gains, settings.

    Args:
        train_root: Training clips folder.
        plan: What to render.
        effects: Pretext effect ids of the "effect" family.
        starts: Each family's starting vector.

    Returns:
        A JSON-able dict: "clips" (manifest entries), "dry_index" ``[a, b]`` per item, "family", "gain_db"
        ``[a, b]``, "theta" (the item's setting), "negatives" (the nearby settings).
    """
    rng = np.random.default_rng(plan.seed)
    pools = content_pools(train_root, plan.content_weights)
    clips = [e for ct in pools for e in pools[ct]]
    offsets = np.cumsum([0] + [len(p) for p in pools.values()])[:-1]
    cts = list(pools)
    w = np.array([plan.content_weights[c] for c in cts], dtype=float)
    fams = _families(plan, effects)
    fw = np.array([f[1] for f in fams], dtype=float)
    items: dict[str, list] = {"clips": clips, "dry_index": [], "family": [], "gain_db": [], "theta": [],
                              "negatives": []}
    for _ in range(plan.items):
        k = int(rng.choice(len(cts), p=w / w.sum()))
        pool = pools[cts[k]]
        recs = np.array([e.get("recording", e["id"]) for e in pool])
        a = int(rng.integers(len(pool)))
        others = np.flatnonzero(recs != recs[a])
        b = int(rng.choice(others)) if others.size else int((a + 1) % len(pool))
        family = fams[int(rng.choice(len(fams), p=fw / fw.sum()))][0]
        start = np.array(starts[family])
        theta = draw_setting(rng, plan, family, start)
        items["dry_index"].append([int(offsets[k] + a), int(offsets[k] + b)])
        items["family"].append(family)
        items["gain_db"].append(rng.uniform(*plan.gain_db, size=2).round(3).tolist())
        items["theta"].append(theta.round(6).tolist())
        items["negatives"].append([draw_negative(rng, plan, theta).round(6).tolist() for _ in range(plan.negatives)])
    return items


def _open(out: Path, name: str, shape: tuple[int, ...], mode: str) -> np.memmap:
    return np.memmap(out / name, dtype=np.float16, mode=mode, shape=shape)


def render_setting(chain, x: np.ndarray, setting: np.ndarray, n: int) -> np.ndarray | None:
    """``(2, n)`` float32: ``x`` (``(channels, samples)``) through ``chain`` at ``setting``, fitted to ``n``
    samples; None when the render fails (NaN/Inf or runaway level)."""
    chain.set_vector(setting)
    try:
        return fit_length(as_stereo(chain.process(x, RATE)), n)
    except RenderError:
        return None


def _render_item(chain, family: str, start: np.ndarray, a: np.ndarray, b: np.ndarray, theta: np.ndarray,
                 negatives: list[np.ndarray], n: int, rng: np.random.Generator, plan: RankPlan
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Anchor ``(2, n)`` and candidates of one item.

    A setting whose render fails (NaN, runaway level; e.g. ZamEQ2 at exactly 0 dB) is redrawn, with new
    negatives around it, up to ``RETRIES`` times; a failed negative is redrawn around the setting
    (items.json keeps the planned settings, so it does not record such redraws).
    """
    for _ in range(RETRIES):
        wa, wb = render_setting(chain, a, theta, n), render_setting(chain, b, theta, n)
        if wa is not None and wb is not None:
            break
        theta = draw_setting(rng, dataclasses.replace(plan, effect_defaults_share=0.0), family, start)
        negatives = [draw_negative(rng, plan, theta) for _ in negatives]
    else:
        raise RenderError(f"chain {chain.name!r} failed to render {RETRIES} settings in a row")
    cands = [wb]
    for neg in negatives:
        y = render_setting(chain, b, neg, n)
        for _ in range(RETRIES):
            if y is not None:
                break
            y = render_setting(chain, b, draw_negative(rng, plan, theta), n)
        cands.append(y if y is not None else np.zeros_like(wb))
    cands.append(fit_length(b, n))
    return wa, cands


def _chunk(out: str, train_root: str, lo: int, hi: int) -> int:
    out_p, meta, items, _, front = render_worker(out)
    plan = RankPlan(**{**meta["plan"], "gain_db": tuple(meta["plan"]["gain_db"]),
                       "near_sigma": tuple(meta["plan"]["near_sigma"])})
    n = int(round(plan.seconds * RATE))
    anchor = _open(out_p, "anchor.f16", tuple(meta["anchor_shape"]), "r+")
    cands = _open(out_p, "cands.f16", tuple(meta["cands_shape"]), "r+")
    chains: dict[str, tuple["Chain", np.ndarray]] = {}
    rng = np.random.default_rng([plan.seed, lo])  # redraws after a failed render
    for i in range(lo, hi):
        fam = items["family"][i]
        chain, start = cached_family(chains, fam)
        a_i, b_i = items["dry_index"][i]
        dry = [fit_length(as_stereo(load_clip(Path(train_root), items["clips"][c])), n) * np.float32(10 ** (g / 20))
               for c, g in zip((a_i, b_i), items["gain_db"][i])]
        wa, wb = _render_item(chain, fam, start, dry[0], dry[1], np.array(items["theta"][i]),
                              [np.array(v) for v in items["negatives"][i]], n, rng, plan)
        anchor[i] = mid_side_mel(wa[None], front)[0]
        cands[i] = mid_side_mel(np.stack(wb), front)
    anchor.flush()
    cands.flush()
    return hi - lo


def build_rankset(train_root: Path, out: Path, plan: RankPlan = RankPlan(), config: EncoderConfig = EncoderConfig(),
                  workers: int = 2, log: Callable[[str], None] = print) -> Path:
    """Render a ranking set into ``out`` (resumable: finished chunks are recorded in ``progress.json``).

    Args:
        train_root: Training clips folder (``stito data train``).
        out: Output folder (outside git; about 1 MB per item).
        plan: What to render.
        config: Encoder front-end settings (the log-mel must match the encoder's).
        workers: Worker processes (each renders its chunks with its own plugin instances).
        log: Progress printer.

    Returns:
        ``out``.

    Raises:
        RuntimeError: ``out`` holds a set of another plan or config.
    """
    from .effects import pretext_effects

    out.mkdir(parents=True, exist_ok=True)
    effects = pretext_effects()
    meta_now = {"version": RANK_VERSION, "plan": json.loads(json.dumps(asdict(plan))), "config": config.to_dict(),
                "effects": effects}
    meta_file = out / "meta.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        if any(meta[k] != v for k, v in meta_now.items()):
            raise RuntimeError(f"{out} holds a ranking set of a different plan/config/effects; choose another "
                               "folder or delete it")
    else:
        fams = [f for f, _ in _families(plan, effects)]
        starts = {f: family_chain(f).get_vector().tolist() for f in fams}
        items = plan_items(train_root, plan, effects, starts)
        frames = frame_count(plan.seconds, config)
        meta = dict(meta_now, anchor_shape=[plan.items, 2, frames, config.n_mels],
                    cands_shape=[plan.items, plan.negatives + 2, 2, frames, config.n_mels])
        save_atomically(out / "items.json", lambda tmp: Path(tmp).write_text(json.dumps(items)))
        _open(out, "anchor.f16", tuple(meta["anchor_shape"]), "w+").flush()
        _open(out, "cands.f16", tuple(meta["cands_shape"]), "w+").flush()
        save_atomically(meta_file, lambda tmp: Path(tmp).write_text(json.dumps(meta)))
    progress_file = out / "progress.json"
    progress = json.loads(progress_file.read_text()) if progress_file.exists() else {"done": []}
    todo = [lo for lo in range(0, plan.items, CHUNK) if lo not in progress["done"]]
    log(f"rankset: {len(todo)} of {-(-plan.items // CHUNK)} chunks to render into {out} with {workers} worker(s)")
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        render_chunks(pool, _chunk, out, train_root, [(lo, min(lo + CHUNK, plan.items)) for lo in todo], progress,
                      "done", log)
    return out


def load_rankset(out: Path) -> RankSet:
    """Open a rendered ranking set (memmaps, read-only)."""
    meta, items = read_set(out, "ranking set", "stito train rankset")
    ready = ready_mask(out, meta["anchor_shape"][0], "done", CHUNK)
    return RankSet(anchor=_open(out, "anchor.f16", tuple(meta["anchor_shape"]), "r"),
                   cands=_open(out, "cands.f16", tuple(meta["cands_shape"]), "r"),
                   family=np.array(items["family"]), ready=ready)


def default_rankset_dir(cache: str | Path | None = None) -> Path:
    """``rankset`` inside the data cache (``$STITO_DATA_DIR`` or ``~/.cache/stito/data`` unless ``cache``)."""
    return cache_dir(cache) / "rankset"
