"""Ranking fine-tune: the processed version of b that matches anchor a's setting must outscore b's nearby versions."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from stito_server.metrics.encoder import EncoderConfig, StyleEncoder

from .plans import CHECKPOINT, RankTrainPlan
from .ranking import RankSet, load_rankset
from .train import lr_at, pick_device, resume, save_checkpoint, step_loop, validation_means

LOG = "train_log.csv"
# A negative whose crop differs from the positive's by less than this (mean |log-mel| difference, in the
# front end's [-1, 1] units; 0.005 is ~0.3 dB) sounds the same: it is left out of the softmax, not taught
# apart (e.g. a redrawn parameter that does nothing at the item's other settings).
SAME_AUDIO = 0.005
FIELDS = ["step", "wall_s", "lr"] + [f"{s}_{k}" for s in ("train", "val")
                                     for k in ("loss", "hard_acc", "batch_acc", "margin")]


class Ranker(nn.Module):
    """The encoder alone, under the attribute name ``encoder`` (so ``export_weights`` reads its checkpoints)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.encoder = StyleEncoder(config)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``(n, 2, frames, n_mels)`` log-mel (mid, side) -> ``(n, 2 * dim)`` (mid and side, each unit norm)."""
        zm, zs = self.encoder(mel[:, 0], mel[:, 1])
        return torch.cat([zm, zs], dim=-1)


def make_batch(ranks: RankSet, items: np.ndarray, frames: int, rng: np.random.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of a batch of items.

    The anchor's crop and b's crop start independently; all of b's versions share b's crop, so they hold the
    same audio and differ only in processing.

    Returns:
        anchors ``(B, 2, frames, n_mels)`` and candidates ``(B, C, 2, frames, n_mels)`` float32 (C = negatives
        + 2: the positive first, the dry b last).
    """
    total = ranks.anchor.shape[2]
    anchors, cands = [], []
    for i in items:
        s_a, s_b = rng.integers(0, total - frames + 1, size=2)
        anchors.append(np.asarray(ranks.anchor[i, :, s_a:s_a + frames], dtype=np.float32))
        cands.append(np.asarray(ranks.cands[i, :, :, s_b:s_b + frames], dtype=np.float32))
    return torch.from_numpy(np.stack(anchors)), torch.from_numpy(np.stack(cands))


def losses(model: Ranker, batch: tuple[torch.Tensor, torch.Tensor], plan: RankTrainPlan) -> dict[str, torch.Tensor]:
    """Ranking cross-entropy of one batch and its accuracies.

    Each anchor scores (cosine averaged over mid and side, as the search does) its own candidates and the
    other items' positives; the target is its own positive. Own negatives that sound like the positive
    (``SAME_AUDIO``) are left out.

    Returns:
        "loss"; "hard_acc" (the positive beats the item's own negatives and dry b); "batch_acc" (it beats those
        and the other items' positives); "margin" (positive's score minus the best own negative's, over items
        with a negative left).
    """
    anchors, cands = batch
    b, c = cands.shape[:2]
    same = (cands[:, 1:] - cands[:, :1]).abs().mean(dim=(2, 3, 4)) < SAME_AUDIO
    z = model(torch.cat([anchors, cands.flatten(0, 1)], dim=0))
    za, zc = z[:b], z[b:].view(b, c, -1)
    own = torch.einsum("bd,bcd->bc", za, zc) / 2.0  # rows have norm sqrt(2): cosine averaged over mid/side
    own = torch.cat([own[:, :1], own[:, 1:].masked_fill(same, float("-inf"))], dim=1)
    others = za @ zc[:, 0].T / 2.0
    others = others.masked_fill(torch.eye(b, dtype=torch.bool, device=z.device), float("-inf"))
    logits = torch.cat([own, others], dim=1) / plan.temperature
    target = torch.zeros(b, dtype=torch.long, device=z.device)
    out = {"loss": nn.functional.cross_entropy(logits, target)}
    with torch.no_grad():
        out["hard_acc"] = (own.argmax(-1) == 0).float().mean()
        out["batch_acc"] = (logits.argmax(-1) == 0).float().mean()
        gap = own[:, 0] - own[:, 1:].max(-1).values
        out["margin"] = gap[gap.isfinite()].mean() if bool(gap.isfinite().any()) else gap.new_zeros(())
    return out


def _init(model: Ranker, path: Path, config: EncoderConfig, dev: torch.device) -> tuple[list[str], int]:
    """Load exported weights (``afx-rep-*.pt``, hash verified) or a checkpoint's encoder into ``model``.

    Returns:
        The effects and preset count the weights were pretrained with (carried into exports).
    """
    from stito_server.metrics.weights import NAME_RE, read_weights

    if NAME_RE.match(path.name):
        payload = read_weights(path, str(dev))
        state, got, effects, n_presets = (payload["state_dict"], payload["config"], payload["effects"],
                                          payload["n_presets"])
    else:
        ck = torch.load(path, map_location=dev, weights_only=False)
        state = {k[len("encoder."):]: v for k, v in ck["model"].items() if k.startswith("encoder.")}
        got, effects, n_presets = ck["config"], ck["effects"], ck["n_presets"]
    if got != config.to_dict():
        raise RuntimeError(f"--init {path}: its network config ({got}) differs from the ranking set's "
                           f"({config.to_dict()})")
    model.encoder.load_state_dict(state)
    return list(effects), int(n_presets)


def train_ranking(ranks_dir: Path, out_dir: Path, plan: RankTrainPlan = RankTrainPlan(), device: str = "auto",
                  threads: int | None = None, log: Callable[[str], None] = print) -> Path:
    """Fine-tune (or resume fine-tuning) the encoder on a ranking set; checkpoints and a CSV log go to ``out_dir``.

    Args:
        ranks_dir: Rendered ranking set (``build_rankset``).
        out_dir: Checkpoint folder: ``checkpoint.pt`` (model, optimiser, step, RNG states; ``stito train
            export`` reads it) and ``train_log.csv`` (one row per checkpoint).
        plan: Settings; a resumed run must use the same ones except ``steps``.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        threads: torch CPU threads (default: torch's choice).
        log: Progress printer.

    Returns:
        The checkpoint path.

    Raises:
        RuntimeError: too few rendered items, or a checkpoint/init that does not fit.
    """
    import json

    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    ranks = load_rankset(ranks_dir)
    ready = np.flatnonzero(ranks.ready)
    n_val = min(plan.val_items, len(ready) // 4)
    if len(ready) - n_val < plan.batch:
        raise RuntimeError(f"only {len(ready)} items are rendered in {ranks_dir}; render more first")
    val, train_items = ready[-n_val:], ready[:-n_val]
    config = EncoderConfig.from_dict(json.loads((ranks_dir / "meta.json").read_text())["config"])
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT
    torch.manual_seed(plan.seed)
    model = Ranker(config).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
    rng = np.random.default_rng(plan.seed)
    step, wall, effects, n_presets = 0, 0.0, [], 0
    if ckpt_path.exists():
        ck = resume(ckpt_path, model, opt, rng, plan, dev)
        step, wall, effects, n_presets = ck["step"], ck["wall_s"], ck["effects"], ck["n_presets"]
        log(f"resuming from step {step} ({wall / 60:.1f} min trained)")
    elif plan.init:
        effects, n_presets = _init(model, Path(plan.init), config, dev)
        log(f"starting from the weights of {plan.init}")
    def validate() -> dict[str, float]:
        return validation_means(model, val, plan.batch, plan.seed, lambda part, r: losses(
            model, tuple(t.to(dev) for t in make_batch(ranks, part, plan.crop_frames, r)), plan))

    log_path = out_dir / LOG
    if not log_path.exists():
        with log_path.open("w", newline="") as f:
            csv.writer(f).writerow(FIELDS)
        if step == 0:  # the starting point's validation, so the log shows what the fine-tune changed
            _log_row(log_path, 0, 0.0, 0.0, {}, validate())

    def batch_losses() -> dict[str, torch.Tensor]:
        items = rng.choice(train_items, size=plan.batch, replace=False)
        return losses(model, tuple(t.to(dev) for t in make_batch(ranks, items, plan.crop_frames, rng)), plan)

    def checkpoint(step: int, wall: float, tr: dict[str, float], va: dict[str, float]) -> None:
        _log_row(log_path, step, wall, lr_at(step - 1, plan), tr, va)
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                    "wall_s": wall, "numpy_rng": rng.bit_generator.state,
                                    "torch_rng": torch.get_rng_state(), "plan": asdict(plan),
                                    "config": config.to_dict(), "effects": effects, "n_presets": n_presets})
        log(f"step {step}/{plan.steps} {wall / 60:.1f} min  train loss {tr['loss']:.3f} hard "
            f"{tr['hard_acc']:.2f} batch {tr['batch_acc']:.2f} | val loss {va['loss']:.3f} hard "
            f"{va['hard_acc']:.2f} batch {va['batch_acc']:.2f} margin {va['margin']:.3f}")

    step_loop(model, opt, plan, step, wall, batch_losses, validate, checkpoint)
    return ckpt_path


def _log_row(path: Path, step: int, wall: float, lr: float, tr: dict[str, float], va: dict[str, float]) -> None:
    row = {"step": step, "wall_s": round(wall, 1), "lr": lr}
    row.update({f"train_{k}": round(v, 4) for k, v in tr.items()})
    row.update({f"val_{k}": round(v, 4) for k, v in va.items()})
    with path.open("a", newline="") as f:
        csv.writer(f).writerow([row.get(k, "") for k in FIELDS])
