"""Pretext training of the encoder: effect + preset classification heads and a same-style contrastive term."""

from __future__ import annotations

import csv
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from stito_server.metrics.encoder import EncoderConfig, StyleEncoder

from .pairs import PairSet, load_pairs
from .plans import CHECKPOINT, TrainPlan

LOG = "train_log.csv"


class Pretext(nn.Module):
    """The encoder plus the paper's heads: effect from (dry, wet) embeddings; preset from those + effect logits."""

    def __init__(self, config: EncoderConfig, n_effects: int, n_presets: int) -> None:
        super().__init__()
        self.encoder = StyleEncoder(config)
        feat = 4 * config.dim
        self.effect_head = nn.Sequential(nn.Linear(feat, 256), nn.ReLU(), nn.Linear(256, n_effects))
        self.preset_head = nn.Sequential(nn.Linear(feat + n_effects, 256), nn.ReLU(),
                                         nn.Linear(256, n_effects * n_presets))

    def forward(self, dry: torch.Tensor, wet: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Heads and embeddings.

        Args:
            dry: ``(pairs, 2, frames, n_mels)`` log-mel (mid, side) of the dry crops.
            wet: Same for the wet crops.

        Returns:
            effect logits ``(pairs, n_effects)``, preset logits ``(pairs, n_effects * n_presets)``, wet
            embeddings ``(pairs, 2 * dim)`` (mid and side concatenated, each unit norm).
        """
        n = dry.shape[0]
        both = torch.cat([dry, wet], dim=0)
        zm, zs = self.encoder(both[:, 0], both[:, 1])
        feat = torch.cat([zm[:n], zs[:n], zm[n:], zs[n:]], dim=-1)
        eff = self.effect_head(feat)
        pre = self.preset_head(torch.cat([feat, eff.softmax(dim=-1)], dim=-1))
        return eff, pre, torch.cat([zm[n:], zs[n:]], dim=-1)


def _crop(x: np.ndarray, start: int, frames: int) -> np.ndarray:
    return np.asarray(x[..., start:start + frames, :], dtype=np.float32)


def make_batch(pairs: PairSet, items: np.ndarray, frames: int, rng: np.random.Generator
               ) -> tuple[torch.Tensor, ...]:
    """Crops of a batch of items.

    Returns:
        dry ``(2B, 2, frames, n_mels)``, wet (same), effect labels ``(2B,)``, preset-class labels ``(2B,)``
        (both -1 for chain items, which have none), style ids ``(2B,)``; rows ``[0, B)`` are the items'
        "a" pairs and ``[B, 2B)`` their "b" pairs.
    """
    total = pairs.wet.shape[3]
    dry, wet = [], []
    for j in range(2):
        for i in items:
            s_dry, s_wet = rng.integers(0, total - frames + 1, size=2)
            dry.append(_crop(pairs.dry[pairs.dry_index[i, j]], s_dry, frames))
            wet.append(_crop(pairs.wet[i, j], s_wet, frames))
    eff = np.concatenate([pairs.effect[items]] * 2)
    cls = np.where(eff >= 0, eff * pairs.n_presets + np.concatenate([pairs.preset[items]] * 2), -1)
    style = np.concatenate([pairs.style[items]] * 2)
    return (torch.from_numpy(np.stack(dry)), torch.from_numpy(np.stack(wet)), torch.from_numpy(eff),
            torch.from_numpy(cls), torch.from_numpy(style))


def losses(model: Pretext, batch: tuple[torch.Tensor, ...], plan: TrainPlan) -> dict[str, torch.Tensor]:
    """Loss terms and accuracies of one batch (see ``make_batch`` for its layout)."""
    dry, wet, eff, cls, style = batch
    b = dry.shape[0] // 2
    eff_logits, pre_logits, z = model(dry, wet)
    ce = nn.functional.cross_entropy
    logits = z[:b] @ z[b:].T / (2.0 * plan.temperature)  # z rows have norm sqrt(2)
    same = (style[:b, None] == style[None, b:]) & ~torch.eye(b, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(same, float("-inf"))  # other items of the same style are not negatives
    target = torch.arange(b, device=z.device)
    nce = 0.5 * (ce(logits, target) + ce(logits.T, target))
    labelled = eff >= 0  # chain items train only the contrastive term
    if bool(labelled.any()):
        out = {"effect": ce(eff_logits[labelled], eff[labelled]), "preset": ce(pre_logits[labelled], cls[labelled])}
    else:
        out = {"effect": eff_logits.sum() * 0.0, "preset": pre_logits.sum() * 0.0}
    out["nce"] = nce
    out["loss"] = out["effect"] + out["preset"] + plan.contrastive_weight * nce
    with torch.no_grad():
        n = labelled.sum().clamp(min=1)
        out["effect_acc"] = ((eff_logits.argmax(-1) == eff) & labelled).sum() / n
        out["preset_acc"] = ((pre_logits.argmax(-1) == cls) & labelled).sum() / n
        out["nce_acc"] = (logits.argmax(-1) == target).float().mean()
    return out


def lr_at(step: int, plan: TrainPlan) -> float:
    """Learning rate at ``step``: linear warm-up over 200 steps to ``plan.lr``, then cosine down to 1 % of it."""
    if step < 200:
        return plan.lr * (step + 1) / 200
    t = min(1.0, (step - 200) / max(1, plan.steps - 200))
    return plan.lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * t)))


def pick_device(device: str) -> torch.device:
    """"auto" (CUDA when available), "cpu" or "cuda" as a torch device."""
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                        ("cpu" if device == "auto" else device))


def resume(ckpt_path: Path, model: nn.Module, opt: torch.optim.Optimizer, rng: np.random.Generator, plan,
           dev: torch.device) -> dict:
    """Restore model, optimiser and RNG states from a checkpoint written by a run with the same plan.

    Args:
        plan: The run's settings (a dataclass); every field but ``steps`` must equal the checkpoint's.

    Returns:
        The checkpoint (``step``, ``wall_s`` and whatever else the run stored).

    Raises:
        RuntimeError: the checkpoint was trained with other settings (named).
    """
    ck = torch.load(ckpt_path, map_location=dev, weights_only=False)
    changed = {k for k, v in asdict(plan).items() if k != "steps" and ck["plan"].get(k) != v}
    if changed:
        raise RuntimeError(f"{ckpt_path} was trained with other settings ({sorted(changed)}); "
                           "use another --out folder or the same settings")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    rng.bit_generator.state = ck["numpy_rng"]
    torch.set_rng_state(ck["torch_rng"])
    return ck


def step_loop(model: nn.Module, opt: torch.optim.Optimizer, plan, step: int, wall: float,
              batch_losses: Callable[[], dict[str, torch.Tensor]], validate: Callable[[], dict[str, float]],
              checkpoint: Callable[[int, float, dict[str, float], dict[str, float]], None]) -> None:
    """Optimiser steps from ``step`` up to ``plan.steps``, with the warm-up + cosine learning rate.

    Args:
        batch_losses: Draws a batch and returns its loss terms (``"loss"`` is minimised; every term is averaged
            into the train columns).
        validate: Validation figures, run every ``plan.checkpoint_every`` steps and at the end.
        checkpoint: Called after each validation with (step, wall seconds trained in all, validation
            included; train means since the last call; validation figures); it logs and saves (the batches'
            numpy RNG and the torch RNG state with the weights, for an exact resume).
        wall: Seconds trained before ``step`` (a resumed run's).
    """
    model.train()
    running: dict[str, float] = {}
    since = 0  # steps summed in ``running`` (fewer than checkpoint_every after a resume from an odd step)
    t0 = time.perf_counter()
    while step < plan.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, plan)
        out = batch_losses()
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        step += 1
        since += 1
        for k, v in out.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        if step % plan.checkpoint_every == 0 or step == plan.steps:
            means = {k: v / since for k, v in running.items()}
            running, since = {}, 0
            figures = validate()
            wall += time.perf_counter() - t0
            t0 = time.perf_counter()
            checkpoint(step, wall, means, figures)


def save_checkpoint(path: Path, obj: dict) -> None:
    """``torch.save`` through a temporary file and a rename, so a killed run never leaves half a checkpoint."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def validation_means(model: nn.Module, val: np.ndarray, batch: int, seed: int,
                     figures: Callable[[np.ndarray, np.random.Generator], dict[str, torch.Tensor]]
                     ) -> dict[str, float]:
    """Item-weighted means of ``figures(items, rng)`` over ``val`` in batches, in eval mode without gradients.

    The crops' RNG is seeded with ``[seed, 1]``, so every validation of a run sees the same crops.
    """
    rng = np.random.default_rng([seed, 1])
    sums: dict[str, float] = {}
    model.eval()
    with torch.inference_mode():
        for k in range(0, len(val), batch):
            part = val[k:k + batch]
            for name, v in figures(part, rng).items():
                sums[name] = sums.get(name, 0.0) + float(v) * len(part)
    model.train()
    return {k: v / len(val) for k, v in sums.items()}


def train(pairs_dir: Path, out_dir: Path, plan: TrainPlan = TrainPlan(), device: str = "auto",
          threads: int | None = None, log: Callable[[str], None] = print) -> Path:
    """Train (or resume training) the encoder; checkpoints and a CSV log go to ``out_dir``.

    Args:
        pairs_dir: Rendered pair set (``build_pairs``).
        out_dir: Checkpoint folder: ``checkpoint.pt`` (model, optimiser, step, RNG states) and
            ``train_log.csv`` (one row per checkpoint: train and validation loss/accuracy, wall time).
        plan: Training settings; a resumed run must use the same ones except ``steps``.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        threads: torch CPU threads (default: torch's choice).
        log: Progress printer.

    Returns:
        The checkpoint path.
    """
    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    pairs = load_pairs(pairs_dir)
    ready = np.flatnonzero(pairs.ready)
    if len(ready) <= plan.val_items + plan.batch:
        raise RuntimeError(f"only {len(ready)} items are rendered in {pairs_dir}; render more first")
    val, train_items = ready[-plan.val_items:], ready[:-plan.val_items]
    config = EncoderConfig.from_dict(_meta_config(pairs_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT
    torch.manual_seed(plan.seed)
    model = Pretext(config, len(pairs.effects), pairs.n_presets).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
    rng = np.random.default_rng(plan.seed)
    step, wall = 0, 0.0
    if ckpt_path.exists():
        ck = resume(ckpt_path, model, opt, rng, plan, dev)
        step, wall = ck["step"], ck["wall_s"]
        log(f"resuming from step {step} ({wall / 60:.1f} min trained)")
    elif plan.init:
        _init_from(model, Path(plan.init), pairs, config, dev)
        log(f"starting from the weights of {plan.init}")
    log_path = out_dir / LOG
    fields = ["step", "wall_s", "lr"] + [f"{s}_{k}" for s in ("train", "val")
                                         for k in ("loss", "effect", "preset", "nce", "effect_acc", "preset_acc",
                                                   "nce_acc")]
    if not log_path.exists():
        with log_path.open("w", newline="") as f:
            csv.writer(f).writerow(fields)

    def batch_losses() -> dict[str, torch.Tensor]:
        items = rng.choice(train_items, size=plan.batch, replace=False)
        return losses(model, [t.to(dev) for t in make_batch(pairs, items, plan.crop_frames, rng)], plan)

    def checkpoint(step: int, wall: float, tr: dict[str, float], va: dict[str, float]) -> None:
        row = {"step": step, "wall_s": round(wall, 1), "lr": lr_at(step - 1, plan)}
        row.update({f"train_{k}": round(v, 4) for k, v in tr.items()})
        row.update({f"val_{k}": round(v, 4) for k, v in va.items()})
        with log_path.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in fields])
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                    "wall_s": wall, "numpy_rng": rng.bit_generator.state,
                                    "torch_rng": torch.get_rng_state(), "plan": asdict(plan),
                                    "config": config.to_dict(), "effects": pairs.effects,
                                    "n_presets": pairs.n_presets})
        log(f"step {step}/{plan.steps} {wall / 60:.1f} min  train loss {tr['loss']:.3f} "
            f"eff {tr['effect_acc']:.2f} pre {tr['preset_acc']:.2f} nce {tr['nce_acc']:.2f} | val loss "
            f"{va['loss']:.3f} eff {va['effect_acc']:.2f} pre {va['preset_acc']:.2f} nce {va['nce_acc']:.2f}")

    def validate() -> dict[str, float]:
        return validation_means(model, val, plan.batch, plan.seed, lambda part, r: losses(
            model, [t.to(dev) for t in make_batch(pairs, part, plan.crop_frames, r)], plan))

    step_loop(model, opt, plan, step, wall, batch_losses, validate, checkpoint)
    return ckpt_path


def _init_from(model: Pretext, path: Path, pairs: PairSet, config: EncoderConfig, dev: torch.device) -> None:
    """Load a checkpoint's model weights into ``model``; the effects, preset count and network must match."""
    ck = torch.load(path, map_location=dev, weights_only=False)
    theirs = (ck["effects"], ck["n_presets"], ck["config"])
    ours = (pairs.effects, pairs.n_presets, config.to_dict())
    for name, a, b in zip(("effects", "preset count", "network config"), theirs, ours):
        if a != b:
            raise RuntimeError(f"--init {path}: its {name} ({a}) differ from this pair set's ({b})")
    model.load_state_dict(ck["model"])


def _meta_config(pairs_dir: Path) -> dict:
    import json

    return json.loads((pairs_dir / "meta.json").read_text())["config"]
