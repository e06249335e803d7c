"""Presets per pretext effect: random settings, MFCC of the output, k-means, the medoid of each cluster."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from stito_server.audio import save_atomically
from stito_server.metrics.mfcc import MFCCMetric

from .effects import make_effect

SILENT_RATIO_DB = -60.0  # output this far below the input's RMS counts as silenced
UNCHANGED_TOL = 1e-3  # peak-normalised output within this of the peak-normalised input counts as unchanged
PRESETS_VERSION = 1


def _peak_normalise(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.abs(x).max()), 1e-12)


def _medoid(points: np.ndarray) -> int:
    """Index of the point with the smallest summed distance to the others, ``points`` ``(n, dims)``."""
    d = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)
    return int(d.sum(axis=1).argmin())


def effect_presets(effect_id: str, probe: np.ndarray, sample_rate: int, n_settings: int = 1000,
                   n_presets: int = 10, seed: int = 0) -> dict:
    """Presets of one effect.

    Renders ``n_settings`` uniformly random settings of every parameter on ``probe``, drops settings that
    silence the audio, leave it unchanged (after peak normalisation, so a pure level change counts as
    unchanged) or produce NaN, embeds the rest with MFCC statistics (mid and side), clusters them with
    k-means (scikit-learn) and keeps the medoid of each cluster.

    Args:
        effect_id: "builtin:KIND" or "vst3:PLUGIN".
        probe: ``(2, samples)`` float32 probe audio.
        sample_rate: Rate of ``probe``, in Hz.
        n_settings: Random settings to try.
        n_presets: Clusters (= presets).
        seed: Seed of the settings and of k-means.

    Returns:
        ``{"effect": id, "params": [names], "presets": [[normalized values]...], "kept": n, "dropped": {...}}``.
    """
    from sklearn.cluster import KMeans

    effect = make_effect(effect_id)
    rng = np.random.default_rng([seed, zlib.crc32(effect_id.encode())])
    settings = rng.random((n_settings, len(effect.params)))
    dry = _peak_normalise(probe)
    in_rms = float(np.sqrt(np.mean(probe ** 2)))
    kept_x, outs = [], []
    dropped = {"silent": 0, "unchanged": 0, "nan": 0}
    for x in settings:
        effect.set_normalized(x)
        y = effect.process(probe, sample_rate)
        if not np.all(np.isfinite(y)):
            dropped["nan"] += 1
            continue
        if np.sqrt(np.mean(y ** 2)) < in_rms * 10 ** (SILENT_RATIO_DB / 20):
            dropped["silent"] += 1
            continue
        n = min(y.shape[-1], dry.shape[-1])
        if np.abs(_peak_normalise(y)[:, :n] - dry[:, :n]).max() < UNCHANGED_TOL:
            dropped["unchanged"] += 1
            continue
        kept_x.append(effect.get_normalized())
        outs.append(y[:, : probe.shape[-1]].astype(np.float32))
    if len(outs) < n_presets:
        raise RuntimeError(f"{effect_id}: only {len(outs)} of {n_settings} random settings change the audio "
                           f"(dropped {dropped}); need at least {n_presets}")
    metric = MFCCMetric(sample_rate)
    emb = metric.embed(np.stack(outs), sample_rate)
    feats = np.concatenate([emb.mid, emb.side], axis=1)
    km = KMeans(n_clusters=n_presets, n_init=4, random_state=seed).fit(feats)
    presets = []
    for c in range(n_presets):
        members = np.flatnonzero(km.labels_ == c)
        presets.append(kept_x[members[_medoid(feats[members])]].tolist())
    return {"effect": effect_id, "params": [p.name for p in effect.params], "presets": presets,
            "kept": len(outs), "dropped": dropped}


def build_presets(effect_ids: list[str], probe: np.ndarray, sample_rate: int, out: str | Path,
                  n_settings: int = 1000, n_presets: int = 10, seed: int = 0,
                  log: Callable[[str], None] = print) -> dict:
    """Presets of every effect, written to ``out`` (JSON) after each effect so an interrupted run resumes.

    Returns:
        ``{"version", "seed", "n_settings", "effects": {effect_id: effect_presets(...)}}``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": PRESETS_VERSION, "seed": seed, "n_settings": n_settings, "n_presets": n_presets,
            "effects": {}}
    if out.exists():
        old = json.loads(out.read_text())
        if all(old.get(k) == data[k] for k in ("version", "seed", "n_settings", "n_presets")):
            data["effects"] = {k: v for k, v in old["effects"].items() if k in effect_ids}
    for eid in effect_ids:
        if eid in data["effects"]:
            continue
        data["effects"][eid] = effect_presets(eid, probe, sample_rate, n_settings, n_presets, seed)
        e = data["effects"][eid]
        log(f"  presets {eid}: kept {e['kept']}/{n_settings} (dropped {e['dropped']})")
        save_atomically(out, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1) + "\n"))
    data["effects"] = {k: data["effects"][k] for k in effect_ids}
    return data
