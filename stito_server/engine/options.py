"""MatchOptions: how a match runs, and its named presets (fast, the default; paper)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

from ..amounts import amount_value, parse_amounts
from ..errors import StitoError
from .optimize import OptimizerOptions

EXCERPT_CHOICES = ("content", "random")
RESTRAINT_CHOICES = ("on", "off")
SEARCH_CHOICES = ("effects", "joint")
SAME_PERFORMANCE_CHOICES = ("auto", "off")
CEILING_RANGE_DBTP = (-60.0, 0.0)


@dataclass(frozen=True)
class MatchOptions:
    """How a match runs. ``MatchOptions.fast()`` is the default preset, ``MatchOptions.paper()`` the paper's.

    ``MatchOptions()`` is the fast preset without its time budget: a fixed seed then gives a fixed result
    on any machine (the budget ends the search after as many generations as fit, so a busy machine runs fewer).

    Attributes:
        optimizer: CMA-ES settings (popsize, generations, sigma0, early stop, seed).
        amount: Blend from the chain's starting settings (0) to the matched ones (1): one number for every
            effect, or "effect=amount,..." per effect (``parse_amounts``; effects not named take 1).
        start: "current" starts from the chain's settings, "center" from 0.5 in every coordinate.
        excerpt_seconds: Length of each analysis excerpt of the input, in seconds.
        excerpts: Analysis excerpts every candidate is rendered on.
        validation_excerpts: Further excerpts used only to pick the final candidate and report it.
        reference_windows: Windows of the reference averaged into its embedding.
        preroll_seconds: Audio rendered before each excerpt and dropped, to warm effect state.
        workers: Rendering threads or processes (default one per CPU core).
        loudness: Gain applied to the *output audio* after the match (not a chain parameter): "off",
            "input" (same integrated loudness as the input) or "reference". The metric is level-blind
            (peak-normalised), so without it the output level is whatever the chain's gains ended at.
        renderer: "threads" (in-process), "processes" (worker processes: a crashing plugin fails the
            match, not the caller) or "auto": threads when every effect may render off the main
            thread, else processes when the chain can be rebuilt from its spec, else one thread.
        excerpt_choice: "content": the most active (loud, eventful) excerpt in each zone of the file,
            analysis and validation excerpts disjoint, no randomness; "random": the loudest of a few
            random crops per zone (the original behaviour, drawn from the optimiser's seed).
        pipeline: Embed each block of renders as soon as it is rendered, overlapping the embedding
            with the rest of the population's rendering (False: render all, then embed all in one batch).
        recreate_plugins: Render every candidate on new plugin instances, as a naive host would (only
            for measuring what keeping one instance per worker saves; much slower).
        coarse_fraction: Share of the generations in a first, coarse stage scored on the first
            ``coarse_length`` of each analysis excerpt (cheaper renders), before the rest on the whole
            excerpts (one CMA-ES throughout); 0: no coarse stage.
        coarse_length: Length of the coarse stage's excerpts, as a fraction of ``excerpt_seconds``.
        restraint: "on": do no harm: the search pays a prior penalty for distance from the starting settings
            and a level penalty; afterwards every effect whose contribution is below the metric's calibrated
            floor goes back to its start, and the match is kept only when its gain over the start reaches the
            floor (``engine/restraint.py``); "off": the unconstrained search (the paper's).
        prior_weight: Weight of the prior penalty (squared normalised distance from the start, summed over the
            parameters), in the metric's similarity units; None: the metric's calibrated weight
            (``models/restraint.json``, 0 for a metric without one). Only with ``restraint="on"``.
        level_tolerance_db: Level change of the renders against the unprocessed excerpts that costs nothing,
            in dB; only with ``restraint="on"``.
        level_weight: Penalty per dB squared of level change beyond ``level_tolerance_db``; None: the metric's
            calibrated weight (a quarter of the median no-style gain: 2 dB beyond the tolerance cost that much).
            Only with ``restraint="on"``.
        gain_floor: Gain over the start (objective units) a match needs to change anything; None: the metric's
            calibrated floor (``models/restraint.json``). Only with ``restraint="on"``.
        effect_floor: Contribution an effect needs to stay engaged; None: the metric's calibrated floor.
        evidence: What gains are weighed in against the floors: "objective" (penalties included) or
            "similarity" (the prior left out); None: what the metric's floors were measured in.
        reference_prior: Delta metrics (``stats``) only: 0 "sound like the reference" (its processing is what it
            has beyond the input; the default), 1 "apply the reference's processing" (beyond the raw training
            recordings most like the input), or a blend; None: the metric's default.
        search: "effects": each effect's parameters searched alone first (the others at their start), then the
            whole chain from the effects' bests (``optimize.optimize_by_group``; a chain of one effect, or
            fewer than two generations per effect, searches jointly); "joint": one CMA-ES over the whole chain
            throughout (the paper's).
        ceiling_dbtp: True-peak ceiling of the output audio, in dBTP, after the ``loudness`` gain: when the gained
            output peaks above it, the whole output is turned down until it does not (a gain, not a limiter: the
            sound is unchanged, the loudness falls short of its target by as much, and the report says so).
            None: no ceiling (the output may exceed full scale; float files keep it, PCM ones are refused).
        same_performance: "auto": when the one reference is the input's own performance, processed (a before/after
            pair, ``engine/alignment.py``), the match compares each render with the reference at the same moment
            (``engine/aligned_scoring.py``: nothing of another recording to fit, so no prior; the restraint keeps
            its level penalty and the same-performance floors of ``models/alignment.json``) and searches longer
            (``same_performance_search``); "off": never.
        whole_check: Render the starting settings beside the chosen ones on the whole input (a second
            worker: no extra wall time) and, when the chosen ones score below the start there though
            better on the excerpts (a build-up the excerpts miss, such as delay feedback), fall back to
            the next finalist that does not, or to the start, with a warning.
    """

    optimizer: OptimizerOptions = field(default_factory=OptimizerOptions)
    amount: float | str = 1.0
    start: str = "current"
    excerpt_seconds: float = 4.0
    excerpts: int = 1
    validation_excerpts: int = 3
    reference_windows: int = 4
    preroll_seconds: float = 0.5
    workers: int | None = None
    renderer: str = "auto"
    loudness: str = "off"
    excerpt_choice: str = "content"
    pipeline: bool = True
    recreate_plugins: bool = False
    coarse_fraction: float = 0.5
    coarse_length: float = 0.375
    restraint: str = "on"
    prior_weight: float | None = None
    level_tolerance_db: float = 3.0
    level_weight: float | None = None
    gain_floor: float | None = None
    search: str = "effects"
    reference_prior: float | None = None
    effect_floor: float | None = None
    evidence: str | None = None
    whole_check: bool = True
    ceiling_dbtp: float | None = -1.0
    same_performance: str = "auto"

    def __post_init__(self) -> None:
        for owner in (self, self.optimizer):
            for f in fields(owner):
                value = getattr(owner, f.name)
                if isinstance(value, float) and not math.isfinite(value):
                    raise StitoError(f"{f.name} must be a finite number, got {value!r}")
        if self.loudness not in ("off", "input", "reference"):
            raise StitoError(f"loudness must be off, input or reference, got {self.loudness!r}")
        if self.renderer not in ("auto", "threads", "processes"):
            raise StitoError(f"renderer must be auto, threads or processes, got {self.renderer!r}")
        if isinstance(self.amount, str):
            parse_amounts(self.amount)
        elif not 0.0 <= self.amount <= 1.0:
            raise StitoError(f"amount must be between 0 and 1, got {self.amount:g}")
        if self.start not in ("current", "center"):
            raise StitoError(f"start must be 'current' or 'center', got {self.start!r}")
        if self.excerpt_seconds <= 0.5:
            raise StitoError(f"excerpt_seconds must be above 0.5 s, got {self.excerpt_seconds:g}")
        if self.excerpts < 1 or self.validation_excerpts < 1 or self.reference_windows < 1:
            raise StitoError("excerpts, validation_excerpts and reference_windows must each be at least 1")
        if self.excerpt_choice not in EXCERPT_CHOICES:
            raise StitoError(f"excerpt_choice must be one of {', '.join(EXCERPT_CHOICES)}, "
                             f"got {self.excerpt_choice!r}")
        if self.workers is not None and self.workers < 1:
            raise StitoError(f"workers must be at least 1, got {self.workers}")
        if not 0.0 <= self.coarse_fraction < 1.0:
            raise StitoError(f"coarse_fraction must be at least 0 and below 1, got {self.coarse_fraction:g}")
        if self.reference_prior is not None and not 0.0 <= self.reference_prior <= 1.0:
            raise StitoError(f"reference_prior must be between 0 and 1, got {self.reference_prior!r}")
        if self.search not in SEARCH_CHOICES:
            raise StitoError(f"search must be one of {', '.join(SEARCH_CHOICES)}, got {self.search!r}")
        if self.restraint not in RESTRAINT_CHOICES:
            raise StitoError(f"restraint must be one of {', '.join(RESTRAINT_CHOICES)}, got {self.restraint!r}")
        if self.same_performance not in SAME_PERFORMANCE_CHOICES:
            raise StitoError(f"same_performance must be one of {', '.join(SAME_PERFORMANCE_CHOICES)}, "
                             f"got {self.same_performance!r}")
        if self.evidence not in (None, "objective", "similarity"):
            raise StitoError(f"evidence must be objective or similarity, got {self.evidence!r}")
        for name in ("prior_weight", "level_tolerance_db", "level_weight", "gain_floor", "effect_floor"):
            if getattr(self, name) is not None and not getattr(self, name) >= 0.0:
                raise StitoError(f"{name} must be a number at least 0, got {getattr(self, name)!r}")
        if self.ceiling_dbtp is not None and not CEILING_RANGE_DBTP[0] <= self.ceiling_dbtp <= CEILING_RANGE_DBTP[1]:
            raise StitoError(f"ceiling must be a number of dBTP from {CEILING_RANGE_DBTP[0]:g} to "
                             f"{CEILING_RANGE_DBTP[1]:g}, got {self.ceiling_dbtp!r}")
        if not 0.0 < self.coarse_length < 1.0:
            raise StitoError(f"coarse_length must be above 0 and below 1, got {self.coarse_length:g}")

    @property
    def coarse_generations(self) -> int:
        """Generations of the coarse stage (``coarse_fraction`` of ``max_generations``, rounded down)."""
        return int(self.coarse_fraction * self.optimizer.max_generations)

    def same_performance_search(self) -> OptimizerOptions:
        """The search of a same-performance match: its objective is well posed (no other recording's content to
        fit), so it gets half as many generations again, twice the time budget and coordinate probes (when none are
        set) at 0, 0.5 and 1 and 0.1 either side of the start: a filter such as a 600 Hz low cut, or a shelf a few
        dB up, is found by one coordinate moved alone."""
        o = self.optimizer
        return replace(o, max_generations=o.max_generations * 3 // 2,
                       time_budget_s=None if o.time_budget_s is None else 2 * o.time_budget_s,
                       probe_values=o.probe_values or (0.0, 0.5, 1.0), probe_steps=o.probe_steps or (-0.1, 0.1))

    @classmethod
    def preset(cls, name: str, **changes: Any) -> "MatchOptions":
        """Options of a named preset (``PRESETS``), with ``changes`` applied.

        Args:
            name: "fast" (the default: seconds on 2 cores; 8 generations, then more while 6.5 s of search
                last) or "paper" (the paper's search: popsize 64, 25 generations, two 5.5 s excerpts, random
                crops; the original behaviour exactly).
            changes: MatchOptions fields, or OptimizerOptions fields (popsize, max_generations, seed, ...).

        Raises:
            StitoError: unknown preset or option name (the valid ones listed), or a bad value.
        """
        if name not in PRESETS:
            raise StitoError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
        return _with_changes(PRESETS[name], changes)

    @classmethod
    def paper(cls, **changes: Any) -> "MatchOptions":
        """The paper's settings (see ``preset``)."""
        return cls.preset("paper", **changes)

    @classmethod
    def fast(cls, **changes: Any) -> "MatchOptions":
        """The fast default settings (see ``preset``)."""
        return cls.preset("fast", **changes)


def _with_changes(base: dict[str, Any], changes: dict[str, Any]) -> MatchOptions:
    match_keys = {f.name for f in fields(MatchOptions)} - {"optimizer"}
    opt_keys = {f.name for f in fields(OptimizerOptions)}
    unknown = sorted(set(changes) - match_keys - opt_keys)
    if unknown:
        raise StitoError(f"unknown option {unknown[0]!r}; valid: {', '.join(sorted(match_keys | opt_keys))}")
    settings = {**base, **changes}
    try:
        optimizer = OptimizerOptions(**{k: v for k, v in settings.items() if k in opt_keys})
    except ValueError as exc:
        raise StitoError(str(exc)) from None
    return MatchOptions(optimizer=optimizer, **{k: v for k, v in settings.items() if k in match_keys})


# Preset settings (MatchOptions and OptimizerOptions fields). "fast" is the dataclasses' defaults plus a
# 6.5 s budget for the search beyond its first 8 generations (4 coarse + 4 fine; the budget splits between
# the stages by what they render): on 2 idle cores pedalboard-strip runs 13-16 of its 16 generations (since its
# built-ins render in numpy/scipy, effects/fast_dsp.py; 12-13 before), zam-strip 8 (Dragonfly's reverb is ~70%
# of its render). Chosen by measurement (oracle distance, 6 seeds, fixed generations, at sigma0 0.3):
# pedalboard-strip 8 / 10 / 16 generations 14.8 / 14.2 / 11.8 dB, zam-strip 6 / 8 / 16 generations
# 6.4 / 5.4 / 5.2 dB; later, pedalboard-strip at sigma0 0.2 over 3 cases x 3 seeds against the paper's settings
# on the same pairs (median 11.56 dB): 13 / 16 / 20 / 24 / 32 generations 13.05 / 10.66 / 11.15 / 11.79 /
# 11.22 dB — differences of about 1 dB are within the spread of single runs. Timings in bench/results/speed.md.
# "paper" reproduces the original engine's results (same seed, same parameters: pinned in tests/test_speed.py;
# embedding renders as they complete changes no number).
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"time_budget_s": 6.5, "min_generations": 8},
    "paper": {"popsize": 64, "max_generations": 25, "sigma0": 0.3, "patience": 10, "min_delta": 1e-3,
              "excerpt_seconds": 5.5, "excerpts": 2, "validation_excerpts": 3, "reference_windows": 4,
              "preroll_seconds": 0.5, "excerpt_choice": "random", "pipeline": True, "coarse_fraction": 0.0,
              "whole_check": False, "restraint": "off", "search": "joint", "same_performance": "off"},
}


def _number_or_none(value: Any) -> float | None:
    """A number, or None (JSON null: the default)."""
    return None if value is None else float(value)


def _seconds_or_none(value: Any) -> float | None:
    """A number of seconds, or None (JSON null: no limit)."""
    return None if value is None else float(value)


@dataclass(frozen=True)
class OptionSpec:
    """One match option, as the command line, the wire protocol and ``MatchOptions`` know it.

    Attributes:
        name: The ``MatchOptions`` (or ``OptimizerOptions``) field, and the key in ``match_request.options``.
        cast: Turns a wire (JSON) value into the field's type; raises TypeError/ValueError on a bad one.
        kind: What the value is, for error messages ("an integer", "a number", ...).
        help: The CLI help text.
        flag: The CLI flag.
        cli_default: The CLI's default (None: the preset's value).
        choices: The valid values, where there is a fixed set.
        metavar: The CLI's name for the value.
        wire: Accepted over the wire (False: set by the server itself, e.g. ``workers``).
    """

    name: str
    cast: Callable[[Any], Any]
    kind: str
    help: str
    flag: str
    cli_default: Any = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    wire: bool = True


# The one table of match options: `stito match`'s flags, the wire options the server accepts (with their casts
# and errors) and the report's "options" are all derived from it. A new option is added here (and to
# MatchOptions or OptimizerOptions, whose validation stays the judge of a value).
MATCH_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("amount", amount_value, "a number or effect=amount list",
               "0..1 blend from the starting to the matched settings, for every effect (0.7) or per effect "
               "(eq=0.5,reverb=1: effects not named take 1; names as in the chain or REAPER's FX names)",
               "--amount", 1.0, metavar="AMOUNT"),
    OptionSpec("seed", int, "an integer", "random seed (default: %(default)s)", "--seed", 0),
    OptionSpec("max_generations", int, "an integer", "CMA-ES generations at most (default: preset's)",
               "--max-generations"),
    OptionSpec("popsize", int, "an integer", "candidates per generation (default: preset's)", "--popsize"),
    OptionSpec("time_budget_s", _seconds_or_none, "a number of seconds or null",
               "wall seconds for the search, 0 for no limit (default: preset's: fast 6.5, paper none; a budget "
               "makes the generations run depend on the machine's speed)", "--time-budget", metavar="SECONDS"),
    OptionSpec("start", str, "a string", "start from the chain's settings or from the centre of every range",
               "--start", "current", choices=("current", "center")),
    OptionSpec("excerpt_seconds", float, "a number", "analysis excerpt length (default: preset's)",
               "--excerpt-seconds"),
    OptionSpec("excerpts", int, "an integer", "analysis excerpts per candidate (default: preset's)", "--excerpts"),
    OptionSpec("workers", int, "an integer", "rendering threads (default: one per core)", "--workers", wire=False),
    OptionSpec("restraint", str, "a string",
               "do no harm: a prior towards the starting settings, a level penalty, effects that do not beat the "
               "metric's noise floor left at their start, and no change unless the match beats that floor "
               "(default: preset's: fast on, paper off)", "--restraint", choices=RESTRAINT_CHOICES),
    OptionSpec("search", str, "a string",
               "search each effect alone first, then the whole chain (effects), or the whole chain throughout "
               "(joint) (default: preset's: fast effects, paper joint)", "--search", choices=SEARCH_CHOICES),
    OptionSpec("reference_prior", _number_or_none, "a number or null",
               "stats metric: 0 makes the input sound like the reference (default), 1 applies only the processing "
               "the reference has beyond raw recordings like the input, between: a blend", "--reference-prior"),
    OptionSpec("same_performance", str, "a string",
               "when the reference is the input's own performance, processed (a before/after pair), compare them "
               "moment by moment and search longer (auto), or never (off) (default: preset's: fast auto, paper off)",
               "--same-performance", choices=SAME_PERFORMANCE_CHOICES),
    OptionSpec("loudness", str, "a string",
               "gain the output file to the reference's or the input's integrated loudness, or leave the chain's "
               "level (default: %(default)s; a gain on the file, not a chain parameter)", "--loudness",
               "reference", choices=("reference", "input", "off")),
    OptionSpec("ceiling_dbtp", _number_or_none, "a number or null",
               "true-peak ceiling of the output file in dBTP, -60 to 0 (default: -1): after the loudness gain, the "
               "file is turned down as far as it needs to stay below it", "--ceiling", metavar="DBTP"),
)
_CLI_TYPES = {"a number": float, "an integer": int, "a string": str, "a number of seconds or null": float,
              "a number or null": float, "a number or effect=amount list": str}


def add_option_arguments(parser: Any, exclude: tuple[str, ...] = ()) -> None:
    """Add every option of ``MATCH_OPTIONS`` (but those named in ``exclude``) to an ``argparse`` parser, as its flag."""
    for spec in MATCH_OPTIONS:
        if spec.name in exclude:
            continue
        parser.add_argument(spec.flag, dest=spec.name, type=_CLI_TYPES[spec.kind], default=spec.cli_default,
                            choices=spec.choices, metavar=spec.metavar, help=spec.help)


def cli_changes(args: Any) -> dict[str, Any]:
    """The options an ``argparse`` namespace sets (None: the preset's), ``--time-budget 0`` as no limit.

    Raises:
        StitoError: a negative or non-numeric ``--time-budget``.
    """
    changes = {s.name: getattr(args, s.name) for s in MATCH_OPTIONS if getattr(args, s.name, None) is not None}
    if "amount" in changes:
        try:
            changes["amount"] = amount_value(changes["amount"])
        except (TypeError, ValueError):
            raise StitoError(f"--amount must be a number from 0 to 1, or effect=amount pairs such as eq=0.5,reverb=1; "
                             f"got {changes['amount']!r}") from None
    if "time_budget_s" in changes:
        budget = changes["time_budget_s"]
        if not budget >= 0:
            raise StitoError(f"--time-budget must be a number of seconds above 0, or 0 for no limit; got {budget:g}")
        changes["time_budget_s"] = budget or None  # 0: no limit
    return changes


def cli_options(preset: str, args: Any) -> "MatchOptions":
    """The match options of a command line: ``preset`` with ``cli_changes(args)``; an error names the value by its
    flag ("--excerpt-seconds must be above 0.5 s"), as the user typed it, not by its field name.

    Raises:
        StitoError: a bad value or preset.
    """
    try:
        return MatchOptions.preset(preset, **cli_changes(args))
    except StitoError as exc:
        text = str(exc)
        for spec in sorted(MATCH_OPTIONS, key=lambda s: -len(s.name)):  # max_generations before generations
            # the option a message is about: "NAME must ...", or one of a list "NAME, OTHER and ... must"
            text = re.sub(rf"(?<![\w.-]){re.escape(spec.name)}(?=,| and | must )", spec.flag, text)
        raise StitoError(text) from None


def wire_changes(options: dict[str, Any]) -> dict[str, Any]:
    """The match options of a request's ``options`` object, each cast to its type.

    Raises:
        StitoError: a value that is not of its option's kind (the message names the option and the value).
    """
    changes = {}
    for spec in MATCH_OPTIONS:
        if spec.wire and spec.name in options:
            value = options[spec.name]
            try:
                if spec.cast is int and (isinstance(value, bool) or (isinstance(value, float) and value != int(value))):
                    raise ValueError("not a whole number")  # 2.7 is not silently 2
                changes[spec.name] = spec.cast(value)
            except (TypeError, ValueError, OverflowError):
                raise StitoError(f"options.{spec.name} must be {spec.kind}, got {value!r}") from None
    return changes


def option_values(opts: MatchOptions, wire_only: bool = False) -> dict[str, Any]:
    """Every option of ``MATCH_OPTIONS`` as ``opts`` holds it (what a report lists and a client sends)."""
    return {s.name: getattr(opts, s.name) if hasattr(opts, s.name) else getattr(opts.optimizer, s.name)
            for s in MATCH_OPTIONS if s.wire or not wire_only}


def option_spec(key: str) -> OptionSpec | None:
    """The option a key names, by its field name (``time_budget_s``) or its flag without dashes (``time-budget``)."""
    for spec in MATCH_OPTIONS:
        if key in (spec.name, spec.flag.lstrip("-")):
            return spec
    return None


def table_changes(table: dict[str, Any], where: str) -> dict[str, Any]:
    """The match options of a table (a batch manifest's options: TOML values, or CSV cells as text), each cast to its
    option's type; 0 seconds of time budget is no limit, as on the command line.

    Args:
        table: Option names (field or flag spelling) to values; empty text cells are left out by the caller.
        where: Where the table is, for error messages ("manifest.csv row 3").

    Raises:
        StitoError: an unknown option (the valid ones listed) or a value that is not of its option's kind.
    """
    changes: dict[str, Any] = {}
    for key, value in table.items():
        spec = option_spec(key)
        if spec is None or not spec.wire:
            valid = ", ".join(s.name for s in MATCH_OPTIONS if s.wire)
            raise StitoError(f"{where}: unknown option {key!r}; valid: {valid}")
        try:
            cast = _CLI_TYPES[spec.kind] if isinstance(value, str) and spec.kind != "a string" else spec.cast
            if spec.name == "amount":
                cast = amount_value
            if cast is int and isinstance(value, float) and value != int(value):
                raise ValueError("not a whole number")
            if isinstance(value, bool):
                raise ValueError("not a number or text")
            changes[spec.name] = cast(value)
        except (TypeError, ValueError, OverflowError):
            raise StitoError(f"{where}: option {key} must be {spec.kind}, got {value!r}") from None
        if spec.choices and changes[spec.name] not in spec.choices:
            raise StitoError(f"{where}: option {key} must be one of {', '.join(spec.choices)}, got {value!r}")
    if "time_budget_s" in changes:
        budget = changes["time_budget_s"]
        if not budget >= 0:
            raise StitoError(f"{where}: option time_budget_s must be a number of seconds above 0, or 0 for no limit; "
                             f"got {budget:g}")
        changes["time_budget_s"] = budget or None
    return changes
