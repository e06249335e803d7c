"""match(): the one public entry point of a style match, used by the CLI, the server and the benchmarks."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from ..audio import Audio, gain_loudness_lufs, gain_under_ceiling, resample, validate_audio
from ..effects.chain import Chain
from ..errors import RenderError, StitoError
from ..metrics.base import StyleMetric
from .aligned_scoring import AlignedScorer
from .alignment import Alignment, align, load_same_performance_floors
from .optimize import FAILED_SIMILARITY, OptimizeResult, Progress, Stage, optimize, optimize_by_group
from ..amounts import parse_amounts
from .options import MatchOptions
from .render import Clip, ProcessRenderer, Renderer
from .restraint import Floors, Objective, Verdict, effect_kind, finite_or_none, load_floors, restrain
from .scoring import (Scorer, Target, as_references, objective_parts, rendered_seconds, uses_side,
                      whole_similarity)

__all__ = ["MatchOptions", "MatchResult", "ParamChange", "make_renderer", "match", "score_settings", "uses_side"]


@dataclass(frozen=True)
class ParamChange:
    """One parameter of the chain before and after a match (a row of the report and of the server's reply).

    Attributes:
        effect: Effect name in the chain. param: Parameter name, as the effect names it. unit: e.g. "dB".
        searched: Whether the search controlled it.
        before: Value before, in ``unit``. after: Value after, in ``unit``.
        before_text: Display text before (for VST3 the plugin's own). after_text: Display text after.
        normalized_before: Position in [0, 1] before. normalized_after: Position in [0, 1] after.
        changed: Whether the normalized position moved (by more than 1e-6).
    """

    effect: str
    param: str
    unit: str
    searched: bool
    before: float
    after: float
    before_text: str
    after_text: str
    normalized_before: float
    normalized_after: float
    changed: bool

    @classmethod
    def between(cls, before: dict[str, Any], after: dict[str, Any]) -> "ParamChange":
        """The change between two ``Chain.describe()`` rows of one parameter."""
        return cls(effect=after["effect"], param=after["param"], unit=after["unit"], searched=after["searched"],
                   before=before["value"], after=after["value"], before_text=before["text"],
                   after_text=after["text"], normalized_before=before["normalized"],
                   normalized_after=after["normalized"],
                   changed=abs(after["normalized"] - before["normalized"]) > 1e-6)


@dataclass
class MatchResult:
    """Outcome of a match.

    Attributes:
        output: The whole input rendered with the final settings, ``(channels, n)`` float32.
        sample_rate: Of ``output`` (the input's own rate).
        vector: Final search vector ``(dims,)`` (after ``amount``).
        matched_vector: The chosen candidate ``(dims,)`` before ``amount`` is applied.
        start_vector: Search vector of the starting settings ``(dims,)``.
        parameters: Per parameter of the chain, in chain order: its ``ParamChange``.
        similarity: Similarities to the reference on the validation excerpts: "dry" (unprocessed
            input), "before" (starting settings), "after" (final settings); for a same-performance match,
            ``AlignedScorer``'s (minus the mean log-mel difference to the reference, in tens of dB).
        pick: How the final candidate was chosen: finalists with analysis and validation similarities.
        search: The optimiser's result (trajectory, stop reason, evaluations).
        restraint: The do-no-harm verdict (per effect: engaged or not, and the evidence); None with
            ``restraint="off"``.
        same_performance: Whether the reference was found to be the input's own performance, processed, and the
            alignment's scores (``Alignment``); None when not looked for (``same_performance="off"``, several
            references).
        level_change_db: Level of the final settings' renders against the unprocessed validation excerpts, in dB.
        loudness_lufs: Integrated loudness of input, reference, the chain's raw output ("chain_output")
            and the written output ("output", after ``output_gain_db``).
        output_gain_db: Gain applied to the output: ``MatchOptions.loudness``'s, less any turned down for the
            ceiling (0 when neither applied).
        true_peak_dbtp: True peak of the output, in dBTP (``audio.true_peak_dbtp``; -inf for silence).
        ceiling_gain_db: How far the output was turned down for ``MatchOptions.ceiling_dbtp`` (0 or negative).
        amounts: The amount applied per effect, by effect name (``MatchOptions.amount``).
        references: Per reference, in order: its integrated loudness (LUFS) and the similarity of its own mean
            embedding to the target (the mean of all of them): how far each is from the combined target.
        wall_s: Seconds for the whole match.
        warnings: Things the user should know (e.g. starting settings failed to render).
    """

    output: np.ndarray
    sample_rate: int
    vector: np.ndarray
    matched_vector: np.ndarray
    start_vector: np.ndarray
    parameters: list[ParamChange]
    similarity: dict[str, float]
    pick: dict[str, Any]
    search: OptimizeResult
    restraint: Verdict | None
    level_change_db: float | None
    loudness_lufs: dict[str, float]
    output_gain_db: float
    wall_s: float
    warnings: list[str] = field(default_factory=list)
    true_peak_dbtp: float | None = None
    ceiling_gain_db: float = 0.0
    amounts: dict[str, float] = field(default_factory=dict)
    references: list[dict[str, float]] = field(default_factory=list)
    same_performance: Alignment | None = None

    def changed(self) -> list[ParamChange]:
        """The parameters whose value changed."""
        return [p for p in self.parameters if p.changed]

    def report(self, **extra: Any) -> dict[str, Any]:
        """A JSON-serialisable report of the match (``extra`` keys are added at the top)."""
        s = self.search
        return {
            **extra,
            "similarity": self.similarity,
            "loudness_lufs": self.loudness_lufs,
            "output_gain_db": self.output_gain_db,
            "true_peak_dbtp": self.true_peak_dbtp,
            "ceiling_gain_db": self.ceiling_gain_db,
            "amounts": self.amounts,
            "references": self.references,
            "parameters": [asdict(p) for p in self.parameters],
            "vector": self.vector.tolist(),
            "matched_vector": self.matched_vector.tolist(),
            "start_vector": self.start_vector.tolist(),
            "pick": self.pick,
            "restraint": None if self.restraint is None else self.restraint.report(),
            "same_performance": None if self.same_performance is None else self.same_performance.report(),
            "level_change_db": self.level_change_db,
            "search": {"stop_reason": s.stop_reason, "evaluations": s.evaluations, "failures": s.failures,
                       "generations": len(s.trajectory), "trajectory": s.trajectory},
            "wall_s": self.wall_s,
            "evaluations_per_s": s.evaluations / self.wall_s if self.wall_s > 0 else None,
            "warnings": self.warnings,
        }


def make_renderer(chain: Chain, opts: MatchOptions) -> Renderer | ProcessRenderer:
    """The renderer ``opts.renderer`` asks for (see MatchOptions)."""
    kind = opts.renderer
    if kind == "auto":
        kind = "threads" if chain.thread_safe or chain.spec is None else "processes"
    if kind == "processes":
        return ProcessRenderer(chain, opts.workers, recreate=opts.recreate_plugins)
    return Renderer(chain, opts.workers, recreate=opts.recreate_plugins)


def score_settings(input_audio: Audio, reference: Audio | Sequence[Audio], chain: Chain, metric: StyleMetric,
                   vectors: np.ndarray,
                   options: MatchOptions | None = None) -> dict[str, np.ndarray]:
    """The match objective at given settings, without searching (e.g. to map it over a grid).

    The excerpts, reference embedding, side decision and penalties are ``match()``'s for the same options and
    seed, so the scores are the ones its search and its final pick would see. The chain's settings are left as
    found.

    Args:
        input_audio: The raw recording, ``(channels, n)`` with 1 or 2 channels.
        reference: Audio in the wanted style, or several (``match``).
        chain: Effects to render.
        metric: Production-style metric.
        vectors: ``(k, len(chain))`` normalized settings in [0, 1].
        options: Match settings (excerpts, pre-roll, renderer, restraint, ``optimizer.seed`` for random excerpts).

    Returns:
        ``{"analysis": (k,), "validation": (k,)}`` mean objective values on the analysis and validation excerpts
        (similarity minus the restraint's penalties; NaN where a setting failed to render).

    Raises:
        StitoError: ``vectors`` of the wrong width or outside [0, 1].
    """
    opts = options or MatchOptions()
    xs = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if xs.shape[1] != len(chain) or not np.all((xs >= 0) & (xs <= 1)):
        raise StitoError(f"score_settings takes (k, {len(chain)}) settings in [0, 1] for chain {chain.name!r}, "
                         f"got shape {xs.shape}" + ("" if xs.shape[1] != len(chain) else " with values outside"))
    validate_audio(input_audio, role="input")
    reference = _checked_references(reference)
    kept = chain.get_vector()
    aligned = _detected(_alignment(input_audio, reference, opts))
    try:
        with make_renderer(chain, opts) as renderer:
            analysis, validation, target, use_side = objective_parts(input_audio, reference, metric, opts)
            floors = _floors(metric, opts, [], same_performance=aligned is not None)
            scorer = _scorers(renderer, metric, target, use_side, input_audio, reference[0], aligned, opts)
            scorers = {name: scorer(clips) for name, clips in (("analysis", analysis), ("validation", validation))}
            start = _start(chain, opts)
            floors = _scaled(floors, metric, scorers["validation"], start)
            return {name: _objective(sc, start, opts, floors)(xs) for name, sc in scorers.items()}
    finally:
        chain.set_vector(kept)


FINALISTS = ("start", "mean", "best", "last_best")
MAX_REFERENCES = 8
SEQUENTIAL_WHOLE_S = 120.0  # inputs longer than this keep one whole render in memory at a time


@dataclass
class _Pick:
    """The finalists of a search and the one the validation excerpts chose (indices into ``FINALISTS``)."""

    finalists: np.ndarray  # (4, dims)
    analysis: np.ndarray  # (4,) objective on the analysis excerpts
    validation: np.ndarray  # (4,) objective on the validation excerpts
    similarity: np.ndarray  # (4,) similarity (no penalties) on the validation excerpts
    chosen: int


def match(input_audio: Audio, reference: Audio | Sequence[Audio], chain: Chain, metric: StyleMetric,
          options: MatchOptions | None = None, progress: Callable[[Progress], None] | None = None,
          cancelled: Callable[[], bool] | None = None) -> MatchResult:
    """Search ``chain``'s parameters so the processed input matches the reference's production style.

    Steps: excerpts and the reference embedding; CMA-ES on the analysis excerpts (``search="effects"``: each
    effect alone on the excerpts' beginnings, then the whole chain on the whole excerpts; ``"joint"``: a coarse
    stage, then the whole excerpts, one CMA-ES throughout); the best of four finalists on the validation excerpts; with ``restraint="on"``, effect
    parsimony and the acceptance rule (``engine/restraint.py``); ``amount``; the whole input rendered, with a
    fall back to the start when the matched settings score below it there; the loudness gain.
    On return the chain holds the final settings. Neither audio array is modified.

    Args:
        input_audio: The raw recording, ``(channels, n)`` with 1 or 2 channels.
        reference: Audio in the wanted style, any rate and channel count of 1 or 2; or several, processed alike
            (each from another recording): their mean embedding is the target, so what they share (the
            processing) counts and what differs (their content) averages out; the loudness target is their mean.
        chain: Effects to control; its current settings are the starting point (``start="current"``).
        metric: Production-style metric.
        options: Match settings.
        progress: Called after each generation.
        cancelled: Polled before each generation and while candidates render (before each one, or every
            50 ms with worker processes); True stops the match with CancelledError.

    Returns:
        The match result with the full-length output.

    Raises:
        AudioError: unusable audio. RenderError: the final settings cannot be rendered.
        CancelledError: cancelled.
    """
    opts = options or MatchOptions()
    t0 = time.perf_counter()
    validate_audio(input_audio, role="input")
    reference = _checked_references(reference)
    if len(chain) == 0:
        raise StitoError(f"chain {chain.name!r} has no parameters to search")
    sr = input_audio.sample_rate
    warnings: list[str] = []
    before_rows = chain.describe()
    start = _start(chain, opts)
    amounts = effect_amounts(chain, opts.amount)  # unknown effect names fail here, before any work
    amount_of_dim = np.array([amounts[chain.effects[d.effect].name] for d in chain.dims])
    # Worker processes load the chain while the alignment, the excerpts and the reference embedding are prepared here.
    with make_renderer(chain, opts) as renderer:
        renderer.cancelled = cancelled  # a cancel takes effect within one candidate, not one generation
        alignment = _alignment(input_audio, reference, opts)
        aligned = _detected(alignment)
        if aligned is not None:  # a well-posed objective: worth a longer search
            opts = replace(opts, optimizer=opts.same_performance_search())
        floors = _floors(metric, opts, warnings, same_performance=aligned is not None)
        analysis, validation, target, use_side = objective_parts(input_audio, reference, metric, opts)
        to_target = [float(metric.similarity(e, target.reference, use_side)[0]) for e in target.references]
        scorer = _scorers(renderer, metric, target, use_side, input_audio, reference[0], aligned, opts)
        validation_scorer = scorer(validation)
        floors = _scaled(floors, metric, validation_scorer, start)

        score = _objective(scorer(analysis), start, opts, floors)
        check = _objective(validation_scorer, start, opts, floors)
        stages = _stages(scorer, score, analysis, start, sr, opts, floors)
        effect_of_dim = np.array([d.effect for d in chain.dims])
        groups = [np.flatnonzero(effect_of_dim == e) for e in range(len(chain.effects)) if (effect_of_dim == e).any()]
        # by effect: when the generations give every effect one and the whole chain as many (else one search)
        if opts.search == "effects" and 1 < len(groups) <= opts.optimizer.max_generations // 2:
            names = [chain.effects[int(effect_of_dim[g[0]])].name for g in groups]
            result = optimize_by_group(stages if isinstance(stages, list) else [Stage(stages, 1)], start, groups,
                                       names, opts.optimizer, progress, cancelled)
        else:
            result = optimize(stages, start, opts.optimizer, progress, cancelled)
        pick = _pick(result, start, score, check)
        start_failed = not np.isfinite(pick.validation[0])
        if start_failed:
            warnings.append(f"the starting settings failed to render: {check.last_errors[0]}")
        matched = pick.finalists[pick.chosen]
        verdict = None
        if opts.restraint == "on" and not start_failed:
            matched, verdict = restrain(matched, start, effect_of_dim, [fx.name for fx in chain.effects],
                                        [effect_kind(fx.source) for fx in chain.effects],
                                        check.evidence if floors.evidence == "similarity" else check,
                                        float(pick.validation[0]), floors)
        final = start + amount_of_dim * (matched - start)
        output, lufs, dry, whole_sims = _render_whole(renderer, check, input_audio, reference, final, start, metric,
                                                      target, use_side, opts)
        if whole_sims and whole_sims["matched"] < whole_sims["start"]:  # the output is the start's render
            warnings.append(
                f"the matched settings scored {whole_sims['matched']:.3f} on the whole input, below the starting "
                f"settings' {whole_sims['start']:.3f}, though better on the excerpts (something that builds up "
                "over time, such as delay feedback, that the excerpts miss); the starting settings were kept")
            final = start.copy()
        after = check(final[None])[0]  # the final settings' objective, raw similarity and level on validation
        after_similarity, after_level = check.last_similarity[0], check.last_levels_db[0]
    chain.set_vector(final)
    if verdict is None and np.array_equal(final, start) and not whole_sims:
        warnings.append("no candidate beat the starting settings on the validation excerpts; nothing changed")
    if result.failures:
        sample = "; ".join(sorted(set(score.errors))[:3])
        warnings.append(f"{result.failures} of {result.evaluations} candidates failed to render ({sample})")
    params = [ParamChange.between(b, a) for b, a in zip(before_rows, chain.describe())]
    output, gain_db, true_peak, ceiling_db = _loudness_gain(output, lufs, sr, opts)
    return MatchResult(
        output=output, sample_rate=sr, vector=final, matched_vector=pick.finalists[pick.chosen], start_vector=start,
        parameters=params,
        similarity={"dry": dry, "before": None if start_failed else float(pick.similarity[0]),
                    "after": finite_or_none(after_similarity)},
        pick={"chosen": FINALISTS[pick.chosen], "whole_input": whole_sims, "after": finite_or_none(after), "finalists": [
            {"name": n, "analysis": finite_or_none(a), "validation": finite_or_none(v)}
            for n, a, v in zip(FINALISTS, pick.analysis, pick.validation)]},
        search=result, restraint=verdict, level_change_db=finite_or_none(after_level),
        loudness_lufs=lufs, output_gain_db=gain_db,
        wall_s=time.perf_counter() - t0, warnings=warnings, true_peak_dbtp=finite_or_none(true_peak),
        ceiling_gain_db=ceiling_db, amounts=amounts,
        references=[{"loudness_lufs": float(lufs.get(f"reference {i + 1}", lufs["reference"])),
                     "similarity_to_target": t} for i, t in enumerate(to_target)],
        same_performance=alignment,
    )


def _checked_references(reference: Audio | Sequence[Audio]) -> list[Audio]:
    """The references as a list, each checked (``validate_audio``), at most ``MAX_REFERENCES``."""
    refs = as_references(reference)
    if len(refs) > MAX_REFERENCES:
        raise StitoError(f"{len(refs)} references; give at most {MAX_REFERENCES}")
    for i, ref in enumerate(refs):
        validate_audio(ref, role="reference" if len(refs) == 1 else f"reference {i + 1}")
    return refs


def effect_amounts(chain: Chain, amount: float | str) -> dict[str, float]:
    """The amount of every effect of ``chain``, by name, from ``MatchOptions.amount``.

    A name is an effect's name in the chain ("eq", "1:ZamEQ2") or, case aside, the part after a REAPER chain's
    "N:" (its FX's plugin name, "ZamEQ2") when only one effect has it; effects not named take 1.

    Raises:
        StitoError: a name that is no effect's, or that fits several (the valid names are listed).
    """
    names = [fx.name for fx in chain.effects]
    if not isinstance(amount, str):
        return {n: float(amount) for n in names}
    out = dict.fromkeys(names, 1.0)
    for given, value in parse_amounts(amount).items():
        hits = [n for n in names if n == given] or [
            n for n in names if given.lower() in (n.lower(), n.split(":", 1)[-1].lower())]
        if len(hits) != 1:
            why = "fits several effects" if hits else "is no effect"
            raise StitoError(f"amount names {given!r}, which {why} of chain {chain.name!r}; its effects: "
                             f"{', '.join(names)}")
        out[hits[0]] = value
    return out


def _start(chain: Chain, opts: MatchOptions) -> np.ndarray:
    return chain.get_vector() if opts.start == "current" else np.full(len(chain), 0.5)


def _alignment(input_audio: Audio, reference: list[Audio], opts: MatchOptions) -> Alignment | None:
    """The one reference's alignment with the input (``engine/alignment.py``); None when not looked for."""
    if opts.same_performance == "off" or len(reference) != 1:
        return None
    return align(input_audio, reference[0])


def _detected(alignment: Alignment | None) -> Alignment | None:
    """The alignment when the reference was found to be the input's own performance, processed; else None."""
    return alignment if alignment is not None and alignment.same_performance else None


def _scorers(renderer: Renderer | ProcessRenderer, metric: StyleMetric, target: Target, use_side: bool,
             input_audio: Audio, reference: Audio, aligned: Alignment | None,
             opts: MatchOptions) -> Callable[[list[Clip]], Scorer]:
    """What scores renders of a set of clips: against the reference embedding, or, for a reference found to be the
    input's own performance (``aligned``: its alignment; None otherwise), against the reference at the same moments
    (``AlignedScorer``)."""
    sr = input_audio.sample_rate
    if aligned is not None:
        ref = reference.samples if reference.sample_rate == sr else resample(reference.samples, reference.sample_rate, sr)
        lag = int(round(aligned.lag_s * sr))
        return lambda clips: AlignedScorer(renderer, clips, sr, ref, lag, opts.pipeline)
    return lambda clips: Scorer(renderer, metric, target.for_clips(clips), clips, sr, use_side, opts.pipeline)


def _floors(metric: StyleMetric, opts: MatchOptions, warnings: list[str], same_performance: bool = False) -> Floors:
    """The metric's calibrated floors and weights (for a same-performance match, those of ``models/alignment.json``),
    with any ``gain_floor`` / ``effect_floor`` the options set; a metric without calibrated ones keeps any gain
    above 0 (and the user is told)."""
    if opts.restraint != "on":
        return Floors(0.0, 0.0, "restraint off")
    floors = load_same_performance_floors() if same_performance else load_floors(metric.name)
    if floors is None:
        floors = Floors(0.0, 0.0, f"no calibrated floors for metric {metric.name!r}: any gain counts")
        if opts.gain_floor is None or opts.effect_floor is None:
            warnings.append(f"metric {metric.name!r} has no calibrated noise floor; restraint keeps any effect and "
                            "any match that gains over the starting settings")
    if opts.gain_floor is not None:
        floors = replace(floors, gain=opts.gain_floor, source="gain floor set in the options")
    if opts.effect_floor is not None:
        floors = replace(floors, effect=opts.effect_floor, effects={}, source="floors set in the options")
    if opts.evidence is not None:
        floors = replace(floors, evidence=opts.evidence)
    return floors


def _scaled(floors: Floors, metric: StyleMetric, validation: Scorer, start: np.ndarray) -> Floors:
    """Relative floors and weights in objective units: per unit of the start's distance on the validation
    excerpts (one render of the start; absolute floors are returned as they are)."""
    if not floors.relative:
        return floors
    return floors.scaled(metric.distance(float(np.nan_to_num(validation(start[None])[0]))))


def _objective(scorer: Scorer, start: np.ndarray, opts: MatchOptions, floors: Floors) -> Objective:
    """The objective a scorer's similarities become: penalised with ``restraint="on"``, as they are without."""
    if opts.restraint == "on":
        prior = floors.prior_weight if opts.prior_weight is None else opts.prior_weight
        level = floors.level_weight if opts.level_weight is None else opts.level_weight
        return Objective(scorer, start, prior, opts.level_tolerance_db, level)
    return Objective(scorer, start, 0.0, 0.0, 0.0)


def _stages(scorer: Callable[[list[Clip]], Scorer], score: Objective, analysis: list[Clip], start: np.ndarray,
            sample_rate: int, opts: MatchOptions, floors: Floors) -> Objective | list[Stage]:
    """The search's objective: one stage, or a coarse stage on the excerpts' beginnings and then ``score``."""
    if not opts.coarse_generations:
        return score
    n = int(round(opts.coarse_length * opts.excerpt_seconds * sample_rate))
    short = [Clip(c.audio[:, :c.preroll + n], c.preroll, c.start) for c in analysis]
    coarse = _objective(scorer(short), start, opts, floors)
    # cost: seconds rendered per candidate (pre-roll included), to split a time budget
    return [Stage(coarse, opts.coarse_generations, "coarse", rendered_seconds(short, sample_rate)),
            Stage(score, opts.optimizer.max_generations, "fine", rendered_seconds(analysis, sample_rate))]


def _pick(result: OptimizeResult, start: np.ndarray, score: Objective, check: Objective) -> _Pick:
    """The finalist with the best objective on the validation excerpts.

    Raises:
        RenderError: no finalist rendered.
    """
    finalists = np.stack([start, result.mean_x, result.best_x, result.last_best_x])
    val = check(finalists)
    similarity = check.last_similarity
    # The search scored the best and the last generation's best on the analysis excerpts already.
    searched = np.array([result.best_similarity, result.trajectory[-1]["generation_best"]])
    ana = np.concatenate([score(finalists[:2]), np.where(searched <= FAILED_SIMILARITY, np.nan, searched)])
    order = np.where(np.isfinite(val), val, -np.inf)
    if not np.isfinite(order).any():
        raise RenderError("no candidate rendered cleanly; " + "; ".join(sorted(set(check.errors))[:3]))
    return _Pick(finalists, ana, val, similarity, int(np.argmax(order)))


def _render_whole(renderer: Renderer | ProcessRenderer, check: Objective, input_audio: Audio, reference: list[Audio],
                  final: np.ndarray, start: np.ndarray, metric: StyleMetric, target: Target, use_side: bool,
                  opts: MatchOptions) -> tuple[np.ndarray, dict[str, float], float, dict[str, float]]:
    """The whole input rendered with the final settings, checked against the start's on the whole input.

    The renders run on the match's workers (some plugins may only reset on their own thread); the
    measurements that do not need them run beside them. An input longer than ``SEQUENTIAL_WHOLE_S`` has one
    whole render alive at a time: the start's is scored and dropped before the final one is rendered (and
    rendered again in the rare case that it wins).

    Returns:
        The render to output ``(channels, n)`` (the start's when it scored above the final settings' on the
        whole input: ``whole_sims`` says so), the loudness of input and reference, the dry similarity on the
        validation excerpts and, when checked, the whole-input similarities ``{"matched", "start"}``.

    Raises:
        RenderError: the final settings failed to render the whole input.
    """
    sr = input_audio.sample_rate
    whole = [Clip(input_audio.samples, 0)]
    check_whole = opts.whole_check and not np.array_equal(final, start)
    aligned = check.scorer if isinstance(check.scorer, AlignedScorer) else None  # a same-performance match
    target_whole = target.for_whole(input_audio.samples, opts.excerpt_seconds) if check_whole and not aligned else None

    def score(render: np.ndarray) -> float:
        if aligned is not None:
            return aligned.whole(render)
        return float(whole_similarity([render], metric, target_whole, sr, opts.excerpt_seconds, use_side)[0])

    def render(x: np.ndarray) -> tuple[np.ndarray, str | None]:
        rendered, errors = renderer.render(x[None], whole, sr)
        return rendered[0, 0], errors[0]

    start_render, start_error, whole_sims = None, "not rendered", {}
    with ThreadPoolExecutor(1, thread_name_prefix="stito-side") as side:
        dry_job = side.submit(check.dry)
        input_job = side.submit(gain_loudness_lufs, input_audio.samples, sr)
        ref_jobs = [side.submit(gain_loudness_lufs, r.samples, r.sample_rate) for r in reference]
        if not check_whole:
            output, error = render(final)
        elif input_audio.seconds > SEQUENTIAL_WHOLE_S:  # one whole render alive at a time
            start_render, start_error = render(start)
            start_sim = score(start_render) if start_error is None else None
            start_render = None
            output, error = render(final)
        else:  # both at once, on two workers
            rendered, (error, start_error) = renderer.render(np.stack([final, start]), whole, sr)
            output, start_render = rendered[0, 0], rendered[1, 0]
            del rendered
            start_sim = score(start_render) if start_error is None else None
        dry = dry_job.result()
        per_ref = [job.result() for job in ref_jobs]
        lufs = {"input": input_job.result(),
                "reference": per_ref[0] if len(per_ref) == 1 else float(np.mean(per_ref))}  # LUFS, alike
        if len(per_ref) > 1:
            lufs.update({f"reference {i + 1}": v for i, v in enumerate(per_ref)})
    if error is not None:
        raise RenderError(f"the final settings failed to render the whole input: {error}")
    if check_whole and start_error is None:
        whole_sims = {"matched": score(output), "start": start_sim}
        if whole_sims["matched"] < whole_sims["start"]:
            if start_render is None:
                del output  # not two whole renders at once
                start_render, _ = render(start)
            output = start_render
    return output, lufs, dry, whole_sims


def _loudness_gain(output: np.ndarray, lufs: dict[str, float], sample_rate: int,
                   opts: MatchOptions) -> tuple[np.ndarray, float, float, float]:
    """The output gained for ``opts.loudness``, then turned down to ``opts.ceiling_dbtp`` where it peaks above it.

    ``lufs`` gets "chain_output" and "output". ``output`` is the match's own render, gained in place.

    Returns:
        The output ``(channels, n)`` float32, the whole gain applied in dB, the output's true peak in dBTP and
        the share of the gain that the ceiling took (0 or negative, dB).
    """
    lufs["chain_output"] = gain_loudness_lufs(output, sample_rate)
    gain_db = 0.0
    if opts.loudness != "off" and np.isfinite(lufs["chain_output"]) and np.isfinite(lufs[opts.loudness]):
        gain_db = lufs[opts.loudness] - lufs["chain_output"]
    output, ceiling_db, peak = gain_under_ceiling(output, sample_rate, gain_db, opts.ceiling_dbtp)  # our own render
    total = gain_db + ceiling_db
    lufs["output"] = lufs["chain_output"] + total
    return output, total, peak, ceiling_db
