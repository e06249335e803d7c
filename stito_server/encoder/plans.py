"""The settings of pair rendering and training, torch-free so that `stito`'s parser builds without torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class PairPlan:
    """What to render.

    Attributes:
        items: Pretext items. Each item is one (effect, preset) applied to two different dry clips of one
            content type (a and b), so it yields two (dry, wet) pairs and one same-style positive pair.
        seconds: Clip length, in seconds (training crops are cut from these at training time).
        gain_db: Range of the random gain applied to the dry clip before the effect, in dB (level-dependent
            effects such as compressors and distortion then see different drive).
        content_weights: Probability of each content type.
        seed: Seed of every choice.
        chain_share: Share of items that are chains of several different effects, each at a random preset,
            in a random order (the benchmarks' and users' styles are chains). Chain items carry no effect or
            preset label: they train only the same-style contrastive term. 0 reproduces the single-effect
            plan exactly (the chain choices are drawn after everything else).
        chain_lengths: Effects per chain item, drawn uniformly from these.
    """

    items: int = 12000
    seconds: float = 6.0
    gain_db: tuple[float, float] = (-12.0, 0.0)
    content_weights: dict[str, float] = field(default_factory=lambda: {
        "music": 0.4, "speech": 0.2, "guitar": 0.15, "drums": 0.25})
    seed: int = 0
    chain_share: float = 0.0
    chain_lengths: tuple[int, ...] = (2, 3)

    def __post_init__(self) -> None:
        if not 0.0 <= self.chain_share <= 1.0:
            raise ValueError(f"chain_share must be between 0 and 1, got {self.chain_share:g}")
        if not self.chain_lengths or min(self.chain_lengths) < 2:
            raise ValueError(f"chain_lengths must be 2 or more effects each, got {list(self.chain_lengths)}")


@dataclass(frozen=True)
class TrainPlan:
    """Training settings.

    Attributes:
        steps: Optimiser steps in all (a resumed run continues up to this).
        batch: Items per step (each gives 2 dry/wet pairs and 1 same-style positive pair).
        crop_frames: Frames of each random crop (188 frames = 4.0 s at hop 1024); dry and wet are cropped
            independently, so the heads cannot rely on sample alignment.
        lr: Peak learning rate of AdamW (cosine decay to 1 % of it, 200 warm-up steps).
        weight_decay: AdamW weight decay.
        contrastive_weight: Weight of the same-style InfoNCE term (wet a vs wet b of one item).
        temperature: InfoNCE temperature.
        val_items: Items held out (the last ones) for validation.
        checkpoint_every: Steps between checkpoints (and validation rows in the log).
        seed: Seed of initialisation, batches and crops.
        init: Checkpoint whose model weights start a new run (a fine-tune: fresh optimiser and learning-rate
            schedule); "" starts from random weights.
    """

    steps: int = 20000
    batch: int = 32
    crop_frames: int = 188
    lr: float = 1e-3
    weight_decay: float = 1e-4
    contrastive_weight: float = 1.0
    temperature: float = 0.1
    val_items: int = 384
    checkpoint_every: int = 250
    seed: int = 0
    init: str = ""
