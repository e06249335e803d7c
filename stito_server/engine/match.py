"""match(): the one public entry point of a style match, used by the CLI, the server and the benchmarks."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import numpy as np

from ..audio import Audio, choose_excerpts, content_excerpts, gain_loudness_lufs, mid_side, validate_audio
from ..effects.chain import Chain
from ..errors import RenderError, StitoError
from ..metrics.base import Embedding, StyleMetric
from .optimize import FAILED_SIMILARITY, OptimizeResult, OptimizerOptions, Progress, Stage, optimize
from .render import Clip, ProcessRenderer, Renderer

SIDE_FLOOR_DB = -40.0  # side below mid by more than this counts as mono (side similarity ignored)


EXCERPT_CHOICES = ("content", "random")


@dataclass(frozen=True)
class MatchOptions:
    """How a match runs. ``MatchOptions.fast()`` is the default preset, ``MatchOptions.paper()`` the paper's.

    ``MatchOptions()`` is the fast preset without its time budget: a fixed seed then gives a fixed result
    on any machine (the budget ends the search after as many generations as fit, so a busy machine runs fewer).

    Attributes:
        optimizer: CMA-ES settings (popsize, generations, sigma0, early stop, seed).
        amount: Blend from the chain's starting settings (0) to the matched ones (1).
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
        whole_check: Render the starting settings beside the chosen ones on the whole input (a second
            worker: no extra wall time) and, when the chosen ones score below the start there though
            better on the excerpts (a build-up the excerpts miss, such as delay feedback), fall back to
            the next finalist that does not, or to the start, with a warning.
    """

    optimizer: OptimizerOptions = field(default_factory=OptimizerOptions)
    amount: float = 1.0
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
    whole_check: bool = True

    def __post_init__(self) -> None:
        if self.loudness not in ("off", "input", "reference"):
            raise StitoError(f"loudness must be off, input or reference, got {self.loudness!r}")
        if self.renderer not in ("auto", "threads", "processes"):
            raise StitoError(f"renderer must be auto, threads or processes, got {self.renderer!r}")
        if not 0.0 <= self.amount <= 1.0:
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
        if not 0.0 < self.coarse_length < 1.0:
            raise StitoError(f"coarse_length must be above 0 and below 1, got {self.coarse_length:g}")

    @property
    def coarse_generations(self) -> int:
        """Generations of the coarse stage (``coarse_fraction`` of ``max_generations``, rounded down)."""
        return int(self.coarse_fraction * self.optimizer.max_generations)

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
              "whole_check": False},
}


@dataclass
class MatchResult:
    """Outcome of a match.

    Attributes:
        output: The whole input rendered with the final settings, ``(channels, n)`` float32.
        sample_rate: Of ``output`` (the input's own rate).
        vector: Final search vector ``(dims,)`` (after ``amount``).
        matched_vector: The chosen candidate ``(dims,)`` before ``amount`` is applied.
        start_vector: Search vector of the starting settings ``(dims,)``.
        parameters: Per parameter of the chain: effect, param, unit, before/after value and text,
            normalized before/after, searched, changed.
        similarity: Similarities to the reference on the validation excerpts: "dry" (unprocessed
            input), "before" (starting settings), "after" (final settings).
        pick: How the final candidate was chosen: finalists with analysis and validation similarities.
        search: The optimiser's result (trajectory, stop reason, evaluations).
        loudness_lufs: Integrated loudness of input, reference, the chain's raw output ("chain_output")
            and the written output ("output", after ``output_gain_db``).
        output_gain_db: Gain applied to the output for ``MatchOptions.loudness`` (0 when "off").
        wall_s: Seconds for the whole match.
        warnings: Things the user should know (e.g. starting settings failed to render).
    """

    output: np.ndarray
    sample_rate: int
    vector: np.ndarray
    matched_vector: np.ndarray
    start_vector: np.ndarray
    parameters: list[dict[str, Any]]
    similarity: dict[str, float]
    pick: dict[str, Any]
    search: OptimizeResult
    loudness_lufs: dict[str, float]
    output_gain_db: float
    wall_s: float
    warnings: list[str] = field(default_factory=list)

    def changed(self) -> list[dict[str, Any]]:
        """The parameters whose value changed."""
        return [p for p in self.parameters if p["changed"]]

    def report(self, **extra: Any) -> dict[str, Any]:
        """A JSON-serialisable report of the match (``extra`` keys are added at the top)."""
        s = self.search
        return {
            **extra,
            "similarity": self.similarity,
            "loudness_lufs": self.loudness_lufs,
            "output_gain_db": self.output_gain_db,
            "parameters": self.parameters,
            "vector": self.vector.tolist(),
            "matched_vector": self.matched_vector.tolist(),
            "start_vector": self.start_vector.tolist(),
            "pick": self.pick,
            "search": {"stop_reason": s.stop_reason, "evaluations": s.evaluations, "failures": s.failures,
                       "generations": len(s.trajectory), "trajectory": s.trajectory},
            "wall_s": self.wall_s,
            "evaluations_per_s": s.evaluations / self.wall_s if self.wall_s > 0 else None,
            "warnings": self.warnings,
        }


def _clips(audio: Audio, starts: list[int], seconds: float, preroll_s: float) -> list[Clip]:
    n = min(int(round(seconds * audio.sample_rate)), audio.samples.shape[1])
    pre = int(round(preroll_s * audio.sample_rate))
    clips = []
    for s in starts:
        p = min(pre, s)
        clips.append(Clip(audio.samples[:, s - p:s + n], p))
    return clips


def uses_side(*audios: np.ndarray) -> bool:
    """True when every ``(channels, n)`` signal is stereo with a side channel above ``SIDE_FLOOR_DB``."""
    for x in audios:
        if x.shape[0] < 2:
            return False
        mid, side = mid_side(x)
        rms_m, rms_s = float(np.sqrt(np.mean(mid ** 2))), float(np.sqrt(np.mean(side ** 2)))
        if rms_s <= rms_m * 10 ** (SIDE_FLOOR_DB / 20):
            return False
    return True


class _Scorer:
    """Renders candidates on a set of clips and scores them against the reference embedding."""

    def __init__(self, renderer: Renderer | ProcessRenderer, metric: StyleMetric, ref: Embedding, clips: list[Clip],
                 sample_rate: int, use_side: bool, pipeline: bool) -> None:
        self.renderer, self.metric, self.ref = renderer, metric, ref
        self.clips, self.sample_rate, self.use_side, self.pipeline = clips, sample_rate, use_side, pipeline
        self.errors: list[str] = []
        self.last_errors: list[str | None] = []

    def _embed(self, audio: np.ndarray) -> Embedding:
        """``(rows, clips, channels, n)`` renders -> ``rows * clips`` embeddings."""
        return self.metric.embed(audio.reshape(-1, *audio.shape[2:]), self.sample_rate)

    def __call__(self, xs: np.ndarray) -> np.ndarray:
        """Mean similarity over the clips of each row of ``xs`` (NaN where it failed to render).

        Identical rows render once (the finalists often repeat: the best of the run is the last generation's).
        ``last_errors`` holds this call's error per row (None where it rendered).
        """
        xs = np.atleast_2d(xs)
        _, first, inverse = np.unique(xs, axis=0, return_index=True, return_inverse=True)
        keep = np.sort(first)  # unique rows, rendered in their original order
        uniq = xs[keep]
        if self.pipeline:
            blocks, errors = self.renderer.render_map(uniq, self.clips, self.sample_rate, self._embed)
            emb = Embedding(np.concatenate([b.mid for b in blocks]), np.concatenate([b.side for b in blocks]))
        else:
            audio, errors = self.renderer.render(uniq, self.clips, self.sample_rate)
            emb = self._embed(audio)
        sims = self.metric.similarity(emb, self.ref, self.use_side).reshape(len(uniq), len(self.clips)).mean(axis=1)
        for i, e in enumerate(errors):
            if e is not None:
                sims[i] = np.nan
                self.errors.append(e)
        row = np.searchsorted(keep, first[inverse.ravel()])  # each row's index in ``uniq``
        self.last_errors = [errors[i] for i in row]
        return sims[row]

    def dry(self) -> float:
        """Similarity of the unprocessed clips."""
        audio = np.stack([c.audio[:, c.preroll:] for c in self.clips])
        emb = self.metric.embed(audio, self.sample_rate)
        return float(self.metric.similarity(emb, self.ref, self.use_side).mean())


def make_renderer(chain: Chain, opts: MatchOptions) -> Renderer | ProcessRenderer:
    """The renderer ``opts.renderer`` asks for (see MatchOptions)."""
    kind = opts.renderer
    if kind == "auto":
        kind = "threads" if chain.thread_safe or chain.spec is None else "processes"
    if kind == "processes":
        return ProcessRenderer(chain, opts.workers, recreate=opts.recreate_plugins)
    return Renderer(chain, opts.workers, recreate=opts.recreate_plugins)


def window_embeddings(outputs: np.ndarray, metric: StyleMetric, sample_rate: int, seconds: float) -> list[Embedding]:
    """Each audio's embedding averaged over its consecutive windows (one window if shorter than ``seconds``).

    Args:
        outputs: ``(k, channels, n)`` audio.
        metric: The metric to embed with.
        sample_rate: In Hz.
        seconds: Window length, in seconds.

    Returns:
        ``k`` mean embeddings.
    """
    k, channels, n = outputs.shape
    length = min(int(round(seconds * sample_rate)), n)
    w = n // length
    windows = outputs[..., :w * length].reshape(k, channels, w, length).transpose(0, 2, 1, 3)
    emb = metric.embed(windows.reshape(k * w, channels, length), sample_rate)
    return [Embedding(emb.mid[i * w:(i + 1) * w], emb.side[i * w:(i + 1) * w]).mean() for i in range(k)]


def whole_similarity(outputs: np.ndarray, metric: StyleMetric, ref: Embedding, sample_rate: int, seconds: float,
                     use_side: bool) -> np.ndarray:
    """Similarity of whole renders to the reference, each embedded over consecutive windows (``window_embeddings``).

    Args:
        outputs: ``(k, channels, n)`` renders of the whole input.
        metric: The match's metric.
        ref: The reference embedding.
        sample_rate: In Hz.
        seconds: Window length, in seconds (the excerpts' length, so the scores compare).
        use_side: Average in the side similarity.

    Returns:
        ``(k,)`` similarities.
    """
    means = window_embeddings(outputs, metric, sample_rate, seconds)
    return np.array([float(metric.similarity(e, ref, use_side)[0]) for e in means])


def plan_excerpts(input_audio: Audio, reference: Audio, opts: MatchOptions,
                  rng: np.random.Generator) -> tuple[list[Clip], list[Clip], list[Clip]]:
    """Analysis and validation clips of the input and the reference's windows (``opts.excerpt_choice``).

    Returns:
        (analysis, validation, reference) clips; input clips carry ``opts.preroll_seconds`` of pre-roll.
    """
    x, sr, secs = input_audio.samples, input_audio.sample_rate, opts.excerpt_seconds
    r, r_sr = reference.samples, reference.sample_rate
    if opts.excerpt_choice == "random":
        ana = choose_excerpts(x, sr, secs, opts.excerpts, rng)
        val = choose_excerpts(x, sr, secs, opts.validation_excerpts, rng)
        ref = choose_excerpts(r, r_sr, secs, opts.reference_windows, rng)
    else:
        starts = content_excerpts(x, sr, secs, opts.excerpts + opts.validation_excerpts)
        # analysis zones centred in equal parts of the file (one excerpt: the middle), validation takes the
        # others (disjoint when possible)
        k = min(opts.excerpts, len(starts))
        pick = sorted({int(np.floor((i + 0.5) * len(starts) / k)) for i in range(k)})
        ana = [starts[i] for i in pick]
        val = [s for i, s in enumerate(starts) if i not in pick] or ana
        ref = content_excerpts(r, r_sr, secs, opts.reference_windows)
    return (_clips(input_audio, ana, secs, opts.preroll_seconds), _clips(input_audio, val, secs, opts.preroll_seconds),
            _clips(reference, ref, secs, 0.0))


def _objective_parts(input_audio: Audio, reference: Audio, metric: StyleMetric,
                     opts: MatchOptions) -> tuple[list[Clip], list[Clip], Embedding, bool]:
    """What the match objective is made of: analysis and validation clips, the reference embedding (mean over
    its windows) and whether the side counts; excerpts drawn with ``opts.optimizer.seed``."""
    analysis, validation, ref_clips = plan_excerpts(input_audio, reference, opts,
                                                    np.random.default_rng(opts.optimizer.seed))
    ref_emb = metric.embed(np.stack([c.audio for c in ref_clips]), reference.sample_rate).mean()
    return analysis, validation, ref_emb, uses_side(input_audio.samples, reference.samples)


def score_settings(input_audio: Audio, reference: Audio, chain: Chain, metric: StyleMetric, vectors: np.ndarray,
                   options: MatchOptions | None = None) -> dict[str, np.ndarray]:
    """The match objective at given settings, without searching (e.g. to map it over a grid).

    The excerpts, reference embedding and side decision are ``match()``'s for the same options and seed, so
    the scores are the ones its search and its final pick would see. The chain's settings are left as found.

    Args:
        input_audio: The raw recording, ``(channels, n)`` with 1 or 2 channels.
        reference: Audio in the wanted style.
        chain: Effects to render.
        metric: Production-style metric.
        vectors: ``(k, len(chain))`` normalized settings in [0, 1].
        options: Match settings (excerpts, pre-roll, renderer, ``optimizer.seed`` for random excerpts).

    Returns:
        ``{"analysis": (k,), "validation": (k,)}`` mean similarities on the analysis and validation excerpts
        (NaN where a setting failed to render).

    Raises:
        StitoError: ``vectors`` of the wrong width or outside [0, 1].
    """
    opts = options or MatchOptions()
    xs = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if xs.shape[1] != len(chain) or not np.all((xs >= 0) & (xs <= 1)):
        raise StitoError(f"score_settings takes (k, {len(chain)}) settings in [0, 1] for chain {chain.name!r}, "
                         f"got shape {xs.shape}" + ("" if xs.shape[1] != len(chain) else " with values outside"))
    validate_audio(input_audio, role="input")
    validate_audio(reference, role="reference")
    kept = chain.get_vector()
    try:
        with make_renderer(chain, opts) as renderer:
            analysis, validation, ref_emb, use_side = _objective_parts(input_audio, reference, metric, opts)
            sr = input_audio.sample_rate
            return {name: _Scorer(renderer, metric, ref_emb, clips, sr, use_side, opts.pipeline)(xs)
                    for name, clips in (("analysis", analysis), ("validation", validation))}
    finally:
        chain.set_vector(kept)


def match(input_audio: Audio, reference: Audio, chain: Chain, metric: StyleMetric,
          options: MatchOptions | None = None, progress: Callable[[Progress], None] | None = None,
          cancelled: Callable[[], bool] | None = None) -> MatchResult:
    """Search ``chain``'s parameters so the processed input matches the reference's production style.

    On return the chain holds the final settings. Neither audio array is modified.

    Args:
        input_audio: The raw recording, ``(channels, n)`` with 1 or 2 channels.
        reference: Audio in the wanted style, any rate and channel count of 1 or 2.
        chain: Effects to control; its current settings are the starting point (``start="current"``).
        metric: Production-style metric.
        options: Match settings.
        progress: Called after each generation.
        cancelled: Polled once per generation; True stops the match with CancelledError.

    Returns:
        The match result with the full-length output.

    Raises:
        AudioError: unusable audio. RenderError: the final settings cannot be rendered.
        CancelledError: cancelled.
    """
    opts = options or MatchOptions()
    t0 = time.perf_counter()
    validate_audio(input_audio, role="input")
    validate_audio(reference, role="reference")
    if len(chain) == 0:
        raise StitoError(f"chain {chain.name!r} has no parameters to search")
    sr = input_audio.sample_rate
    warnings: list[str] = []
    before_rows = chain.describe()
    start = chain.get_vector() if opts.start == "current" else np.full(len(chain), 0.5)
    # Worker processes load the chain while the excerpts and the reference embedding are prepared here.
    with make_renderer(chain, opts) as renderer:
        analysis, validation, ref_emb, use_side = _objective_parts(input_audio, reference, metric, opts)
        score = _Scorer(renderer, metric, ref_emb, analysis, sr, use_side, opts.pipeline)
        check = _Scorer(renderer, metric, ref_emb, validation, sr, use_side, opts.pipeline)
        objective: Any = score
        if opts.coarse_generations:
            n = int(round(opts.coarse_length * opts.excerpt_seconds * sr))
            short = [Clip(c.audio[:, :c.preroll + n], c.preroll) for c in analysis]
            coarse = _Scorer(renderer, metric, ref_emb, short, sr, use_side, opts.pipeline)
            # cost: seconds rendered per candidate (pre-roll included), to split a time budget
            objective = [Stage(coarse, opts.coarse_generations, "coarse", _rendered_s(short, sr)),
                         Stage(score, opts.optimizer.max_generations, "fine", _rendered_s(analysis, sr))]
        result = optimize(objective, start, opts.optimizer, progress, cancelled)
        names = ["start", "mean", "best", "last_best"]
        finalists = np.stack([start, result.mean_x, result.best_x, result.last_best_x])
        val = check(finalists)
        # The search scored the best and the last generation's best on the analysis excerpts already.
        searched = np.array([result.best_similarity, result.trajectory[-1]["generation_best"]])
        ana = np.concatenate([score(finalists[:2]), np.where(searched <= FAILED_SIMILARITY, np.nan, searched)])
        start_failed = not np.isfinite(val[0])
        if start_failed:
            warnings.append(f"the starting settings failed to render: {check.last_errors[0]}")
        order = np.where(np.isfinite(val), val, -np.inf)
        if not np.isfinite(order).any():
            raise RenderError("no candidate rendered cleanly; " + "; ".join(sorted(set(check.errors))[:3]))
        chosen = int(np.argmax(order))

        def blend(i: int) -> np.ndarray:
            return start + opts.amount * (finalists[i] - start)

        final = blend(chosen)
        whole = [Clip(input_audio.samples, 0)]
        check_whole = opts.whole_check and chosen != 0
        # The whole input, rendered by the same workers (some plugins may only reset on their own thread);
        # the measurements that do not need it run beside it.
        with ThreadPoolExecutor(1, thread_name_prefix="stito-side") as side:
            dry_job = side.submit(check.dry)
            lufs_jobs = {"input": side.submit(gain_loudness_lufs, input_audio.samples, sr),
                         "reference": side.submit(gain_loudness_lufs, reference.samples, reference.sample_rate)}
            rendered, errors = renderer.render(np.stack([final, start]) if check_whole else final[None], whole, sr)
            dry = dry_job.result()
            lufs = {k: job.result() for k, job in lufs_jobs.items()}
        if errors[0] is not None:
            raise RenderError(f"the final settings failed to render the whole input: {errors[0]}")
        output = rendered[0, 0]
        whole_sims: dict[str, float] = {}
        if check_whole and errors[1] is None:
            sims = whole_similarity(rendered[:, 0], metric, ref_emb, sr, opts.excerpt_seconds, use_side)
            whole_sims = {names[chosen]: float(sims[0]), "start": float(sims[1])}
            if sims[0] < sims[1]:
                first, output, replacement = names[chosen], rendered[1, 0], 0
                for i in np.argsort(-order, kind="stable"):
                    if i in (0, chosen) or not np.isfinite(order[i]):
                        continue
                    y, err = renderer.render(blend(int(i))[None], whole, sr)
                    if err[0] is None:
                        whole_sims[names[i]] = float(whole_similarity(y[:, 0], metric, ref_emb, sr,
                                                                      opts.excerpt_seconds, use_side)[0])
                        if whole_sims[names[i]] >= sims[1]:
                            output, replacement = y[0, 0], int(i)
                            break
                warnings.append(
                    f"the {first} settings scored {sims[0]:.3f} on the whole input, below the starting settings' "
                    f"{sims[1]:.3f}, though better on the excerpts (something that builds up over time, such as "
                    f"delay feedback, that the excerpts miss); {names[replacement]} was kept instead")
                chosen, final = replacement, blend(replacement)
        after = check(final[None])[0] if opts.amount < 1.0 else val[chosen]
    chain.set_vector(final)
    if chosen == 0 and not whole_sims:
        warnings.append("no candidate beat the starting settings on the validation excerpts; nothing changed")
    if result.failures:
        sample = "; ".join(sorted(set(score.errors))[:3])
        warnings.append(f"{result.failures} of {result.evaluations} candidates failed to render ({sample})")
    params = _param_changes(before_rows, chain.describe())
    lufs["chain_output"] = gain_loudness_lufs(output, sr)
    gain_db = 0.0
    if opts.loudness != "off" and np.isfinite(lufs["chain_output"]) and np.isfinite(lufs[opts.loudness]):
        gain_db = lufs[opts.loudness] - lufs["chain_output"]
        output = (output * np.float32(10 ** (gain_db / 20))).astype(np.float32)
    lufs["output"] = lufs["chain_output"] + gain_db
    return MatchResult(
        output=output, sample_rate=sr, vector=final, matched_vector=finalists[chosen], start_vector=start,
        parameters=params,
        similarity={"dry": dry, "before": None if start_failed else float(val[0]), "after": _f(after)},
        pick={"chosen": names[chosen], "finalists": [
            {"name": n, "analysis": _f(a), "validation": _f(v), "whole_input": whole_sims.get(n)}
            for n, a, v in zip(names, ana, val)]},
        search=result,
        loudness_lufs=lufs, output_gain_db=gain_db,
        wall_s=time.perf_counter() - t0, warnings=warnings,
    )


def _rendered_s(clips: list[Clip], sample_rate: int) -> float:
    return sum(c.audio.shape[1] for c in clips) / sample_rate


def _f(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _param_changes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for b, a in zip(before, after):
        rows.append({
            "effect": a["effect"], "param": a["param"], "unit": a["unit"], "searched": a["searched"],
            "before": b["value"], "after": a["value"], "before_text": b["text"], "after_text": a["text"],
            "normalized_before": b["normalized"], "normalized_after": a["normalized"],
            "changed": abs(a["normalized"] - b["normalized"]) > 1e-6,
        })
    return rows


