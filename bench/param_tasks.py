"""The 12 single-parameter effects of benchmark task 3, and which effects the encoder never sees in training."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ParamTask:
    """One effect with one free parameter; every other parameter stays at ``fixed`` or its default.

    Attributes:
        key: Short id used in tables, e.g. "zam_eq_high".
        kind: "builtin" or "vst3".
        effect: Built-in kind (``BUILTINS`` key) or VST3 plugin name.
        param: The free parameter's name, as the effect names it.
        unseen: True when the encoder's training never uses this effect (``training.effects.UNSEEN_EFFECTS``).
        fixed: Other parameters held at these normalized [0, 1] values (e.g. ZamEQ2's peak gains kept off
            exactly 0 dB, where the plugin renders NaN).
    """

    key: str
    kind: str
    effect: str
    param: str
    unseen: bool = False
    fixed: dict[str, float] = field(default_factory=dict)

    @property
    def effect_id(self) -> str:
        """``"builtin:NAME"`` or ``"vst3:NAME"``."""
        return f"{self.kind}:{self.effect}"


PARAM_TASKS: tuple[ParamTask, ...] = (
    ParamTask("distortion_drive", "builtin", "distortion", "drive_db"),
    # ratio 4:1 (the built-in compressor's default ratio is 1:1, where the threshold does nothing)
    ParamTask("compressor_threshold", "builtin", "compressor", "threshold_db", fixed={"ratio": 0.46276}),
    ParamTask("eq_high_shelf", "builtin", "parametric_eq", "high_shelf_gain_db"),
    ParamTask("reverb_wet", "builtin", "reverb", "wet_level"),
    ParamTask("lowpass_cutoff", "builtin", "lowpass", "cutoff_hz"),
    ParamTask("bitcrush_depth", "builtin", "bitcrush", "bit_depth", unseen=True),
    # Boost/Cut spans -50..+20 dB, so 0 dB sits at 50/70 = 0.714286; 0.7145 is +0.015 dB
    ParamTask("zam_eq_high", "vst3", "ZamEQ2", "Boost/Cut H",
              fixed={"Boost/Cut 1": 0.7145, "Boost/Cut 2": 0.7145}),
    ParamTask("zam_comp_threshold", "vst3", "ZamCompX2", "Threshold"),
    ParamTask("zam_delay_mix", "vst3", "ZamDelay", "Dry/Wet"),
    ParamTask("dragonfly_room_late", "vst3", "DragonflyRoomReverb", "Late Level"),
    ParamTask("zam_gate_threshold", "vst3", "ZamGateX2", "Threshold", unseen=True),
    ParamTask("dragonfly_plate_wet", "vst3", "DragonflyPlateReverb", "Wet Level", unseen=True),
)

