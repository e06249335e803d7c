"""The settings of pair rendering and training, torch-free so that `stito`'s parser builds without torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from stito_server.resources import package_dir

MODELS_DIR = package_dir("models")  # where `stito train export` writes by default: the product's weights
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


@dataclass(frozen=True)
class RankPlan:
    """What a ranking set renders: the transfer task itself, as a pretext.

    Each item draws a chain family and a setting ``theta`` of it, then renders recording a at ``theta`` (the
    anchor, like a reference) and a *different* recording b at ``theta`` (the positive) and at ``negatives``
    nearby settings (hard negatives: the same audio as the positive, processed differently). The dry b is
    kept as one more negative. An encoder that ranks the positive first among b's versions is a metric whose
    optimum over the chain's settings lies at the reference's setting, on content it never saw processed.

    Attributes:
        items: Ranking items.
        seconds: Clip length, in seconds (training crops are cut from these at training time).
        negatives: Nearby settings of b rendered per item.
        gain_db: Range of the random gain on each dry clip before the chain, in dB (a and b independently;
            b's negatives share b's gain).
        content_weights: Probability of each content type.
        family_weights: Probability of each chain family: "effect" (one pretext effect), or a shipped chain
            name ("pedalboard-strip", "zam-strip").
        effect_defaults_share: Share of "effect" items whose setting is the effect's defaults with 1-3
            parameters drawn at random (as in the parameter-estimation task); the rest are uniform in [0, 1].
        start_sigma: Spread of a chain family's setting around the chain's starting vector (Gaussian, clipped
            into [0, 1]).
        near_sigma: Range of the spread of a negative's perturbation of every coordinate; half the negatives
            instead redraw one coordinate uniformly (at least ``min_move`` away).
        min_move: Smallest change of a redrawn coordinate.
        seed: Seed of every choice.
    """

    items: int = 6000
    seconds: float = 6.0
    negatives: int = 4
    gain_db: tuple[float, float] = (-12.0, 0.0)
    content_weights: dict[str, float] = field(default_factory=lambda: {
        "music": 0.4, "speech": 0.2, "guitar": 0.15, "drums": 0.25})
    family_weights: dict[str, float] = field(default_factory=lambda: {
        "effect": 0.5, "pedalboard-strip": 0.25, "zam-strip": 0.25})
    effect_defaults_share: float = 0.5
    start_sigma: float = 0.3
    near_sigma: tuple[float, float] = (0.05, 0.3)
    min_move: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.items < 1 or self.negatives < 1:
            raise ValueError(f"items and negatives must be at least 1, got {self.items} and {self.negatives}")
        if not self.family_weights or min(self.family_weights.values()) < 0 or sum(self.family_weights.values()) <= 0:
            raise ValueError(f"family_weights must be non-negative with a positive sum, got {self.family_weights}")


@dataclass(frozen=True)
class RankTrainPlan:
    """Ranking fine-tune settings (``stito train rankfit``).

    Attributes:
        steps: Optimiser steps in all (a resumed run continues up to this).
        batch: Items per step; each anchor is scored against its own b versions (positive, negatives, dry)
            and the other items' positives.
        crop_frames: Frames of each crop (188 = 4.0 s); the anchor's crop and b's crop are cut independently,
            every version of b at the same position (so only the processing tells them apart).
        lr: Peak learning rate of AdamW (cosine decay to 1 % of it, 200 warm-up steps).
        weight_decay: AdamW weight decay.
        temperature: Softmax temperature of the ranking cross-entropy (scores are cosines in [-1, 1]).
        val_items: Items held out (the last ones) for validation.
        checkpoint_every: Steps between checkpoints (and validation rows in the log).
        seed: Seed of batches and crops.
        init: Exported encoder weights (``afx-rep-*.pt``) or a training checkpoint to start from; "" starts
            from random weights.
    """

    steps: int = 3000
    batch: int = 16
    crop_frames: int = 188
    lr: float = 3e-4
    weight_decay: float = 1e-4
    temperature: float = 0.05
    val_items: int = 256
    checkpoint_every: int = 250
    seed: int = 0
    init: str = ""
