"""CMA-ES over a [0, 1] box through pycma's ask/tell, quiet, seeded, cancellable, with progress."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from ..errors import CancelledError

FAILED_SIMILARITY = -2.0  # score given to a candidate whose render failed (below any cosine)
PROBE_MIN_STEP = 0.2  # a probe value this close to a coordinate's start is not tried (CMA-ES's own step reaches it)


@dataclass(frozen=True)
class OptimizerOptions:
    """CMA-ES settings (defaults: the fast preset; the paper's are popsize 64, 25 generations).

    Attributes:
        popsize: Candidates per generation.
        max_generations: Upper bound on generations.
        sigma0: Initial step size, in units of the [0, 1] box. The default 0.2 (the paper's is 0.3) was chosen
            by oracle distance at the fast preset's ~200 evaluations (pedalboard-strip, 3 cases x 3 seeds,
            median paired difference to the paper's settings: +1.94 dB at 0.3, +0.82 at 0.2, +0.09 at 0.15;
            zam-strip at 0.3 / 0.2 / 0.15, case 0 x 3 seeds: median 7.4 / 5.1 / 9.5 dB, 2 cases x 3 seeds at
            0.3 / 0.2: 5.9 / 6.0 dB; 0.15 keeps it from the reverb the reference has).
        patience: Stop when the best similarity improved by less than ``min_delta`` over this many
            generations.
        min_delta: Improvement (in cosine similarity) that counts as progress.
        seed: Random seed; the same seed gives the same search when ``time_budget_s`` is None (a budget
            ends the search after as many generations as the machine managed, recorded in the result).
        time_budget_s: Wall seconds for the search, or None for no limit. After each generation the
            search stops (reason "time_budget") if one more generation as long as that one would overrun
            it; a stage before the last hands over to the next once it would overrun its share of the
            budget (its ``generations * cost`` over all stages'). Every stage runs at least one generation.
        min_generations: With a time budget: generations the search runs however long they take (at most
            ``max_generations``), split between the stages like ``max_generations`` (a floor on quality
            for heavy chains and slow machines; the budget only trims what is beyond it).
        probe_values: Positions in [0, 1] each coordinate is tried at alone before a group's CMA-ES in
            ``optimize_by_group`` (those within ``PROBE_MIN_STEP`` of the start skipped); () tries none. A step
            of 0.2 from a range's end cannot reach a setting such as a 600 Hz low cut in a group's few
            generations; one coordinate moved alone finds it.
        probe_steps: Offsets from each coordinate's start it is also tried at alone (clipped into [0, 1]), e.g.
            (-0.1, 0.1): a shelf 5 dB up among an EQ's 20 parameters, which a group's CMA-ES samples with all the
            others moved at once; () tries none.
    """

    popsize: int = 16
    max_generations: int = 16
    sigma0: float = 0.2
    patience: int = 10
    min_delta: float = 1e-3
    seed: int = 0
    time_budget_s: float | None = None
    min_generations: int = 1
    probe_values: tuple[float, ...] = ()
    probe_steps: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if any(not (0.0 <= float(v) <= 1.0) for v in self.probe_values):
            raise ValueError(f"probe_values must lie in [0, 1], got {tuple(self.probe_values)}")
        if any(not (-1.0 <= float(v) <= 1.0) or v == 0 for v in self.probe_steps):
            raise ValueError(f"probe_steps must be offsets in [-1, 1] other than 0, got {tuple(self.probe_steps)}")
        if self.popsize < 2:
            raise ValueError(f"popsize must be at least 2, got {self.popsize}")
        if self.max_generations < 1:
            raise ValueError(f"max_generations must be at least 1, got {self.max_generations}")
        if not 0 < self.sigma0 <= 1:
            raise ValueError(f"sigma0 must be in (0, 1], got {self.sigma0}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be above 0 seconds (or None for no limit), got {self.time_budget_s}")
        if self.min_generations < 1:
            raise ValueError(f"min_generations must be at least 1, got {self.min_generations}")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a whole number at least 0, got {self.seed!r}")


@dataclass(frozen=True)
class Progress:
    """One progress report, sent after every generation.

    Attributes:
        generation: Generations done (1-based).
        max_generations: Upper bound.
        evaluations: Candidates rendered and scored so far.
        best_similarity: Best similarity seen so far.
        elapsed_s: Seconds since the search began.
    """

    generation: int
    max_generations: int
    evaluations: int
    best_similarity: float
    elapsed_s: float


@dataclass
class OptimizeResult:
    """What the search found.

    Attributes:
        best_x: Best single candidate seen, ``(dims,)`` in [0, 1].
        best_similarity: Its similarity on the analysis excerpts.
        mean_x: CMA-ES's final mean (its own favourite), ``(dims,)``.
        last_best_x: Best candidate of the last generation, ``(dims,)``.
        trajectory: Per generation: generation, evaluations, best (so far), generation_best,
            generation_median, failures, elapsed_s.
        stop_reason: Why it stopped ("max_generations", "plateau", "time_budget", or pycma's own reason).
        evaluations: Candidates scored.
        failures: Candidates whose render failed.
    """

    best_x: np.ndarray
    best_similarity: float
    mean_x: np.ndarray
    last_best_x: np.ndarray
    trajectory: list[dict] = field(default_factory=list)
    stop_reason: str = ""
    evaluations: int = 0
    failures: int = 0


@dataclass(frozen=True)
class Stage:
    """Generations scored by one objective: e.g. a coarse stage on short excerpts, then a fine one.

    Attributes:
        evaluate: Scores a population ``(popsize, dims)`` -> ``(popsize,)`` similarities.
        generations: Generations at most in this stage (the last stage runs to ``max_generations``).
        name: Label in the trajectory.
        cost: Relative cost of one of its generations (e.g. seconds of audio rendered per candidate);
            it splits a time budget between the stages.
    """

    evaluate: Callable[[np.ndarray], np.ndarray]
    generations: int
    name: str = ""
    cost: float = 1.0


def optimize(evaluate: Callable[[np.ndarray], np.ndarray] | Sequence[Stage], x0: np.ndarray,
             options: OptimizerOptions, progress: Callable[[Progress], None] | None = None,
             cancelled: Callable[[], bool] | None = None) -> OptimizeResult:
    """Maximise a similarity over the [0, 1] box with CMA-ES.

    Args:
        evaluate: Scores a population ``(popsize, dims)`` -> ``(popsize,)`` similarities (higher is
            better; NaN marks a failed render); or stages run in turn by one CMA-ES (its mean, step size
            and covariance carry over), within ``options.max_generations`` in all. Scores of different
            stages do not compare: the best so far and the plateau test restart at each stage.
        x0: Starting point ``(dims,)`` in [0, 1].
        options: Search settings.
        progress: Called after each generation.
        cancelled: Polled before each generation; returning True stops the search.

    Returns:
        The search result (``best_x`` and ``last_best_x`` from the last stage run).

    Raises:
        CancelledError: ``cancelled()`` returned True.
    """
    import cma

    stages = [Stage(evaluate, options.max_generations)] if callable(evaluate) else list(evaluate)
    if not stages:
        raise ValueError("optimize needs an objective or at least one stage")
    x0 = np.clip(np.asarray(x0, dtype=np.float64), 0.0, 1.0)
    if x0.size == 1:  # pycma needs at least 2 dimensions; pad with a dummy coordinate
        return _optimize_1d(stages, x0, options, progress, cancelled)
    rng = np.random.default_rng(options.seed)
    cma_opts = {
        "bounds": [0.0, 1.0], "popsize": options.popsize, "maxiter": options.max_generations,
        "seed": math.nan,  # never touch numpy's global RNG; samples come from our own generator
        "randn": lambda lam, n: rng.standard_normal((lam, n)),
        "verbose": -9, "verb_log": 0, "verb_disp": 0, "signals_filename": "", "verb_filenameprefix": "",
        "tolflatfitness": options.max_generations,
    }
    es = cma.CMAEvolutionStrategy(x0, options.sigma0, cma_opts)
    start = time.perf_counter()
    best_x, best_sim = x0.copy(), -math.inf
    last_best = x0.copy()
    history: list[float] = []
    trajectory: list[dict] = []
    evaluations = failures = 0
    reason = "max_generations"
    stage, stage_end = 0, min(stages[0].generations, options.max_generations)
    budget = options.time_budget_s
    if budget is not None:  # each stage's deadline (the budget split by planned generations x cost) and floor
        planned, floors, left = [], [], options.max_generations
        for i, st in enumerate(stages):
            g = left if i + 1 == len(stages) else min(st.generations, left)
            planned.append(g * st.cost)
            floors.append(max(1, round(g * min(options.min_generations, options.max_generations)
                                       / options.max_generations)))
            left -= g
        deadlines = budget * np.cumsum(planned) / max(sum(planned), 1e-12)
    for generation in range(1, options.max_generations + 1):
        if generation > stage_end and stage + 1 < len(stages):
            stage += 1
            stage_end = options.max_generations if stage + 1 == len(stages) else min(
                stage_end + stages[stage].generations, options.max_generations)
            best_x, best_sim, history = last_best.copy(), -math.inf, []
        if cancelled is not None and cancelled():
            raise CancelledError(f"cancelled after {generation - 1} generations")
        gen_start = time.perf_counter()
        xs = np.clip(np.asarray(es.ask(), dtype=np.float64), 0.0, 1.0)
        sims = np.asarray(stages[stage].evaluate(xs), dtype=np.float64)
        failed = ~np.isfinite(sims)
        sims = np.where(failed, FAILED_SIMILARITY, sims)
        es.tell(list(xs), list(-sims))
        evaluations += len(xs)
        failures += int(failed.sum())
        i = int(np.argmax(sims))
        last_best = xs[i].copy()
        if sims[i] > best_sim:
            best_sim, best_x = float(sims[i]), xs[i].copy()
        history.append(best_sim)
        row = {
            "generation": generation, "evaluations": evaluations, "best": best_sim,
            "generation_best": float(sims[i]), "generation_median": float(np.median(sims)),
            "failures": int(failed.sum()), "elapsed_s": time.perf_counter() - start,
        }
        trajectory.append(row | ({"stage": stages[stage].name or str(stage)} if len(stages) > 1 else {}))
        if progress is not None:
            progress(Progress(generation, options.max_generations, evaluations, best_sim,
                              time.perf_counter() - start))
        last_stage = stage + 1 == len(stages)
        if budget is not None and len(history) >= floors[stage]:  # history: this stage's generations
            now = time.perf_counter()
            next_end = now - start + (now - gen_start)  # elapsed after one more generation like this one
            if last_stage and next_end > budget:
                reason = "time_budget"
                break
            if not last_stage and next_end > deadlines[stage]:
                stage_end = generation  # this stage's share of the budget is spent: go on to the next
                continue
        if len(history) > options.patience and history[-1] - history[-1 - options.patience] < options.min_delta:
            if last_stage:
                reason = "plateau"
                break
            stage_end = generation  # this stage has converged: go on to the next
            continue
        stop = {k: v for k, v in es.stop().items() if k != "maxiter"}
        if stop and last_stage:
            reason = ",".join(sorted(stop))
            break
    # pycma searches an unbounded genotype that its bound transform folds into [0, 1]: the mean's setting is
    # that fold (result.xfavorite), not the genotype clipped (a genotype at -1.0 is a setting at 1.0, not 0).
    mean_x = np.clip(np.asarray(es.result.xfavorite, dtype=np.float64), 0.0, 1.0)
    return OptimizeResult(best_x, best_sim, mean_x, last_best, trajectory, reason, evaluations, failures)


def _optimize_1d(stages: list[Stage], x0, options, progress, cancelled) -> OptimizeResult:
    """One dimension: search a padded 2-D problem whose second coordinate is ignored."""
    def first(evaluate: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        return lambda xs: evaluate(xs[:, :1])

    padded = [Stage(first(st.evaluate), st.generations, st.name, st.cost) for st in stages]
    result = optimize(padded, np.array([x0[0], 0.5]), options, progress, cancelled)
    result.best_x, result.mean_x, result.last_best_x = result.best_x[:1], result.mean_x[:1], result.last_best_x[:1]
    return result


def probe_coordinates(evaluate: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, base: float,
                      values: Sequence[float], steps: Sequence[float] = ()) -> tuple[np.ndarray, float, int]:
    """Each coordinate moved alone to each of ``values`` (those within ``PROBE_MIN_STEP`` of its start skipped) and
    by each of ``steps``, all scored at once; then every coordinate that gained, each at its best value, together.

    Args:
        evaluate: Scores ``(k, dims)`` -> ``(k,)`` (NaN: failed).
        x0: Start ``(dims,)`` in [0, 1].
        base: ``evaluate`` of ``x0``.
        values: Positions to try, in [0, 1].
        steps: Offsets from the start to try (clipped into [0, 1]; a position already tried is tried once).

    Returns:
        ``(best point, its score, evaluations)``: ``x0`` and ``base`` when nothing gained.
    """
    x0 = np.asarray(x0, dtype=np.float64)
    moves = [(j, float(v)) for j in range(len(x0)) for v in values if abs(float(v) - x0[j]) > PROBE_MIN_STEP]
    moves += [(j, float(np.clip(x0[j] + d, 0.0, 1.0))) for j in range(len(x0)) for d in steps]
    moves = [m for m in dict.fromkeys(moves) if abs(m[1] - x0[m[0]]) > 1e-9]  # each once, none at the start
    if not moves:
        return x0.copy(), base, 0
    xs = np.repeat(x0[None], len(moves), axis=0)
    for row, (j, v) in enumerate(moves):
        xs[row, j] = v
    scores = np.nan_to_num(np.asarray(evaluate(xs), dtype=np.float64), nan=FAILED_SIMILARITY)
    best_row = int(np.argmax(scores))
    if scores[best_row] <= base:
        return x0.copy(), base, len(moves)
    best_x, best = xs[best_row].copy(), float(scores[best_row])
    combined, gained = x0.copy(), 0
    for j in range(len(x0)):
        rows = [r for r, (jj, _) in enumerate(moves) if jj == j]
        r = max(rows, key=lambda r: scores[r]) if rows else None
        if r is not None and scores[r] > base:
            combined[j], gained = moves[r][1], gained + 1
    if gained < 2:
        return best_x, best, len(moves)
    score = float(np.nan_to_num(evaluate(combined[None])[0], nan=FAILED_SIMILARITY))
    return (combined, score, len(moves) + 1) if score > best else (best_x, best, len(moves) + 1)


def optimize_by_group(stages: Sequence[Stage], x0: np.ndarray, groups: Sequence[np.ndarray], names: Sequence[str],
                      options: OptimizerOptions, progress: Callable[[Progress], None] | None = None,
                      cancelled: Callable[[], bool] | None = None) -> OptimizeResult:
    """Each group of coordinates (e.g. one effect's parameters) searched alone, then all together.

    A joint search of a whole chain from transparent settings samples every effect at once, and a few steep
    coordinates (a reverb's wet level, a delay's mix) make almost every sample worse than the start, so it
    rarely finds the one effect the reference needs. Here half of ``max_generations`` goes to one CMA-ES per
    group (the others held at ``x0``; generations by the group's share of the coordinates, at least one; each
    started from the best of ``probe_coordinates`` with ``options.probe_values``, when given), scored
    with the first stage's objective; each group whose best beats ``x0`` keeps it; then one CMA-ES over every
    coordinate from that point, at half the step size, with the last stage's objective and what is left of the
    time budget. ``best_x`` is the joint search's best, or the combined point when the joint search found
    nothing better.

    Args:
        stages: Objectives: the first scores the group searches, the last the joint one.
        x0: Starting point ``(dims,)`` in [0, 1].
        groups: Index arrays partitioning (or covering part of) the coordinates.
        names: One label per group (the trajectory's ``stage``).
        options: Search settings (``max_generations`` and ``time_budget_s`` for the whole).
        progress: Called after each generation (numbered over the whole search).
        cancelled: Polled before each generation.

    Returns:
        The search result, its trajectory covering every group's generations and the joint ones.

    Raises:
        CancelledError: ``cancelled()`` returned True.
    """
    t0 = time.perf_counter()
    x0 = np.clip(np.asarray(x0, dtype=np.float64), 0.0, 1.0)
    total = options.max_generations
    dims = np.array([len(g) for g in groups], dtype=np.float64)
    gens = np.maximum(1, np.round(0.5 * total * dims / dims.sum())).astype(int)
    first, last = stages[0].evaluate, stages[-1].evaluate
    base = float(np.nan_to_num(first(x0[None])[0], nan=FAILED_SIMILARITY))
    x = x0.copy()
    trajectory: list[dict] = []
    evaluations = failures = 0

    def shifted(done: int) -> Callable[[Progress], None] | None:
        if progress is None:
            return None
        return lambda p: progress(Progress(done + p.generation, total, evaluations + p.evaluations,
                                           p.best_similarity, time.perf_counter() - t0))

    def record(result: OptimizeResult, name: str) -> None:
        nonlocal evaluations, failures
        done = len(trajectory)
        for row in result.trajectory:
            trajectory.append(row | {"generation": done + row["generation"],
                                     "evaluations": evaluations + row["evaluations"],
                                     "elapsed_s": time.perf_counter() - t0, "stage": name})
        evaluations += result.evaluations
        failures += result.failures

    for k, (group, n, name) in enumerate(zip(groups, gens, names)):
        group = np.asarray(group)

        def alone(xs: np.ndarray, group: np.ndarray = group) -> np.ndarray:
            full = np.repeat(x0[None], len(xs), axis=0)
            full[:, group] = xs
            return first(full)

        if cancelled is not None and cancelled():
            raise CancelledError(f"cancelled after {len(trajectory)} generations")
        g_start, g_best, probed = probe_coordinates(alone, x0[group], base, options.probe_values, options.probe_steps)
        evaluations += probed
        sub = optimize(alone, g_start, replace(options, max_generations=int(n), time_budget_s=None,
                                               seed=options.seed + 1000 * (k + 1)),
                       shifted(len(trajectory)), cancelled)
        record(sub, name)
        if sub.best_similarity >= g_best and sub.best_similarity > base:
            x[group] = sub.best_x
        elif g_best > base:
            x[group] = g_start
    left = None if options.time_budget_s is None else max(options.time_budget_s - (time.perf_counter() - t0), 1e-3)
    joint_gens = max(1, total - len(trajectory))
    # the generations ``min_generations`` promises that the groups did not use run whatever the budget says
    floor = max(1, min(options.min_generations, total) - len(trajectory))
    joint = optimize(last, x, replace(options, max_generations=joint_gens, time_budget_s=left,
                                      sigma0=options.sigma0 / 2, min_generations=min(floor, joint_gens)),
                     shifted(len(trajectory)), cancelled)
    record(joint, "joint")
    combined = float(np.nan_to_num(last(x[None])[0], nan=FAILED_SIMILARITY))
    best_x, best_sim = (joint.best_x, joint.best_similarity) if joint.best_similarity >= combined else (x, combined)
    return OptimizeResult(best_x, best_sim, joint.mean_x, joint.last_best_x, trajectory, joint.stop_reason,
                          evaluations, failures)
