"""`stito bench speed`: wall time, throughput, memory and oracle quality of a 30 s match, fast vs paper settings."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from stito_server.audio import load_audio, save_audio
from stito_server.effects.specs import load_chain
from stito_server.examples import phrase
from stito_server.metrics import DEFAULT_METRIC

from . import search_quality
from .common import RESULTS_DIR, write_results
from .search_quality import CI_LEVEL
from .speed_cases import INPUT_SEED, RATE, TRUE_SETTINGS, material, oracle_distance, style_similarity

TASK = "speed"
CHAINS = ("pedalboard-strip", "zam-strip")


# --- settings ---

# Full run: 30 s files, the fast preset timed ``runs`` times (seeds seed, seed + 1, ...), the naive baseline
# (paper settings, serial, plugins re-created per candidate) ``naive_runs`` times. Quick: short files and tiny
# searches, to exercise every path (its numbers mean nothing).
FULL = {"seconds": 30.0, "fast_flags": [], "naive": {}, "chains": CHAINS, "quality_changes": {}}
_QUICK_FAST = {"popsize": 6, "max_generations": 2, "excerpt_seconds": 1.5}
_QUICK_NAIVE = {**_QUICK_FAST, "excerpts": 1, "validation_excerpts": 1, "reference_windows": 1}
QUICK = {"seconds": 4.0, "naive": _QUICK_NAIVE,
         "fast_flags": [a for k, v in _QUICK_FAST.items() for a in (f"--{k.replace('_', '-')}", str(v))],
         "chains": ("pedalboard-strip",),
         "quality_changes": {"fast": {**_QUICK_FAST, "time_budget_s": None}, "paper": _QUICK_NAIVE}}
QUALITY_CASES, QUALITY_SEEDS = 3, 3  # default size of the fast-vs-paper quality comparison
MAX_LOAD = 2.5  # 1-minute load average above which timing waits (the machine is shared)
POLL_S = 0.25  # process-tree RSS sampling period


def wait_for_quiet(max_load: float = MAX_LOAD, tries: int = 30, sleep_s: float = 60.0,
                   log: Callable[[str], None] = print) -> dict:
    """Wait (``sleep_s`` at a time, at most ``tries`` times) until the 1-minute load average is at most ``max_load``.

    Returns:
        ``{"load_1min": load when timing started, "waited_s", "quiet": whether it got below max_load}``.
    """
    t0 = time.monotonic()
    load = os.getloadavg()[0]
    for _ in range(tries):
        if load <= max_load:
            break
        log(f"{TASK}: load average {load:.2f} > {max_load:g}; waiting {sleep_s:g} s")
        time.sleep(sleep_s)
        load = os.getloadavg()[0]
    return {"load_1min": load, "waited_s": time.monotonic() - t0, "quiet": load <= max_load}


# --- measuring a command ---

def _tree_rss_bytes(root: int) -> int:
    """Resident memory of process ``root`` and all its descendants, in bytes (0 once it is gone)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(d)], rss[int(d)] = int(fields[1]), int(fields[21])
    tree, frontier = {root}, [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in tree]
        tree.update(frontier)
    return sum(rss.get(pid, 0) for pid in tree) * os.sysconf("SC_PAGE_SIZE")


def _cpu_busy_s() -> float:
    """CPU seconds every core of the machine has spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_measured(cmd: Sequence[str], timeout_s: float = 3600.0) -> dict:
    """Run a command, timing it and sampling its process tree's memory.

    Args:
        cmd: The command line.
        timeout_s: Killed after this long.

    Returns:
        ``{"wall_s", "cpu_s"`` (CPU seconds of the command and its descendants), ``"other_cores"`` (cores
        other processes kept busy on average meanwhile: the machine's load apart from this command),
        ``"peak_rss_mb"`` (sum over the process and its descendants, sampled every ``POLL_S``),
        ``"max_process_rss_mb"`` (largest single process, from the kernel's own accounting),
        ``"returncode", "stderr"`` (last 2000 characters)``}``.

    Raises:
        RuntimeError: the command failed (its stderr quoted).
    """
    with tempfile.TemporaryFile() as err:
        busy0 = _cpu_busy_s()
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=err)
        peak = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _tree_rss_bytes(proc.pid))
            if time.perf_counter() - t0 > timeout_s:
                proc.kill()
            time.sleep(POLL_S)
        wall = time.perf_counter() - t0
        busy = _cpu_busy_s() - busy0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace")[-2000:]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed with exit status {proc.returncode}: {tail}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "other_cores": max(0.0, (busy - cpu) / wall),
            "peak_rss_mb": peak / 2 ** 20, "max_process_rss_mb": usage.ru_maxrss / 1024,
            "returncode": proc.returncode, "stderr": tail}


def _stito() -> list[str]:
    script = Path(sys.executable).with_name("stito")
    return [str(script)] if script.exists() else [sys.executable, "-m", "stito_server"]


# --- the runs ---

def _quality(out_path: Path, case: dict[str, np.ndarray], metric) -> dict:
    y = load_audio(out_path, role="output").samples
    return {"oracle_mrstft_db": oracle_distance(y, case["oracle"]),
            "style_similarity": style_similarity(y, case["reference"], metric)}


def _search_rate(report: dict) -> float:
    """Candidates scored per second of search (the trajectory's clock)."""
    traj = report["search"]["trajectory"]
    return report["search"]["evaluations"] / traj[-1]["elapsed_s"] if traj and traj[-1]["elapsed_s"] > 0 else 0.0


def _one_match(kind: str, files: dict[str, Path], chain_name: str, metric_name: str, seed: int, cfg: dict,
               case: dict[str, np.ndarray], metric, work: Path, device: str = "cpu") -> dict:
    out, rep = work / f"{kind}-{chain_name}-{seed}.wav", work / f"{kind}-{chain_name}-{seed}.json"
    common = [str(files["input"]), str(files["reference"]), "--chain", chain_name, "--out", str(out),
              "--report", str(rep), "--metric", metric_name, "--seed", str(seed), "--quiet"]
    if kind == "fast":
        cmd = [*_stito(), "match", *common, "--device", device, *cfg["fast_flags"]]
    else:
        cmd = [sys.executable, "-m", "bench.speed", "--naive-child", json.dumps(cfg["naive"]), *common]
    load = os.getloadavg()[0]
    measured = run_measured(cmd, timeout_s=3 * 3600.0)
    report = json.loads(rep.read_text())
    return {"seed": seed, "load_1min_before": load, "other_cores": measured["other_cores"],
            "wall_s": measured["wall_s"], "cpu_s": measured["cpu_s"], "match_wall_s": report["wall_s"],
            "peak_rss_mb": measured["peak_rss_mb"], "max_process_rss_mb": measured["max_process_rss_mb"],
            "evaluations": report["search"]["evaluations"], "generations": report["search"]["generations"],
            "stop_reason": report["search"]["stop_reason"], "evaluations_per_s": _search_rate(report),
            "chosen": report["pick"]["chosen"], "warnings": report["warnings"], "options": report.get("options", {}),
            **_quality(out, case, metric)}


def _matchering_run(files: dict[str, Path], case: dict[str, np.ndarray], metric, work: Path) -> dict:
    out = work / "matchering.wav"
    cmd = [sys.executable, "-m", "bench.speed", "--matchering-child", str(files["input"]),
           str(files["reference"]), str(out)]
    load = os.getloadavg()[0]
    measured = run_measured(cmd)
    return {"load_1min_before": load, "other_cores": measured["other_cores"], "wall_s": measured["wall_s"],
            "cpu_s": measured["cpu_s"], "peak_rss_mb": measured["peak_rss_mb"], **_quality(out, case, metric)}


def throughput(chain_name: str, metric, seconds: float = 3.0, candidates: int = 32, seed: int = 0,
               sample_rate: int = RATE) -> dict:
    """Render and encoder speed on ``seconds``-long stereo clips, in x real time (audio seconds per wall second).

    Rendering uses the renderer a match uses (all workers); the encoder embeds the renders as one batch.
    """
    from stito_server.engine.match import MatchOptions, make_renderer
    from stito_server.engine.render import Clip

    rng = np.random.default_rng(seed)
    chain = load_chain(chain_name)
    x = phrase(seconds + 0.5, sample_rate, seed=INPUT_SEED)
    clips = [Clip(x, int(0.5 * sample_rate))]
    xs = rng.uniform(0.0, 1.0, (candidates, len(chain)))
    with make_renderer(chain, MatchOptions()) as renderer:
        renderer.render(xs[:2], clips, sample_rate)  # warm up (worker processes load the chain)
        t0 = time.perf_counter()
        audio, _ = renderer.render(xs, clips, sample_rate)
        render_s = time.perf_counter() - t0
    batch = audio.reshape(-1, *audio.shape[2:])
    metric.embed(batch[:2], sample_rate)
    t0 = time.perf_counter()
    metric.embed(batch, sample_rate)
    embed_s = time.perf_counter() - t0
    audio_s = candidates * (seconds + 0.5)
    return {"render_x_real_time": audio_s / render_s, "encoder_x_real_time": candidates * seconds / embed_s,
            "clip_seconds": seconds, "candidates": candidates}


def _median(rows: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in rows])) if rows else float("nan")


def run(quick: bool, out_dir: str | Path, metric: str | None = None, seed: int = 0, runs: int = 3,
        naive_runs: int = 1, chains: Sequence[str] | None = None, wait: bool = True, device: str = "cpu",
        quality_cases: int = QUALITY_CASES, quality_seeds: int = QUALITY_SEEDS,
        log: Callable[[str], None] = print) -> dict:
    """Time the fast preset against the naive paper-settings baseline and Matchering; write ``speed.*``.

    Every match runs as its own process (``stito match`` for the fast preset), so wall time includes start-up
    and the memory figure is the whole process tree's.

    Args:
        quick: Short files and tiny searches (exercises every path; the numbers mean nothing).
        out_dir: Folder for ``speed.md``, ``.json`` and ``.png``.
        metric: Style metric; default: the one ``stito match`` uses (``DEFAULT_METRIC``).
        seed: Seed of the first fast run (run ``i`` uses ``seed + i``) and of the naive runs.
        runs: Fast runs per chain (the median is reported).
        naive_runs: Naive-baseline runs per chain (each takes minutes).
        chains: Chains to time (default both shipped strips; quick: pedalboard-strip).
        wait: Wait for the machine's load average to fall to ``MAX_LOAD`` before timing.
        device: Device of a learned metric in the fast runs ("cpu" or "cuda"; the naive baseline stays on CPU).
        quality_cases: Cases of the quality comparison (fast preset vs paper settings, in-process, oracle
            distance; see ``search_quality.run``); 0 skips it.
        quality_seeds: Seeds (seed, seed + 1, ...) each quality case runs with.
        log: Progress printer.

    Returns:
        The report (also written as JSON), with "files".
    """
    from stito_server.engine.options import MatchOptions
    from stito_server.metrics import get_metric

    t_start = time.perf_counter()
    cfg = QUICK if quick else FULL
    metric_name = metric or DEFAULT_METRIC
    metric_obj = get_metric(metric_name)
    chains = tuple(chains or cfg["chains"])
    unknown = [c for c in chains if c not in TRUE_SETTINGS]
    if unknown:
        raise ValueError(f"no speed case for chain {unknown[0]!r}; valid: {', '.join(TRUE_SETTINGS)}")
    has_matchering = importlib.util.find_spec("matchering") is not None
    if not has_matchering:
        log(f"{TASK}: matchering is not installed (pip install matchering); its column stays empty")
    load = wait_for_quiet(log=log) if wait else {"load_1min": os.getloadavg()[0], "waited_s": 0.0, "quiet": None}
    results = {}
    with tempfile.TemporaryDirectory(prefix="stito-speed-") as tmp:
        work = Path(tmp)
        for chain_name in chains:
            case = material(chain_name, cfg["seconds"])
            files = {k: work / f"{chain_name}-{k}.wav" for k in ("input", "reference")}
            for k, path in files.items():
                save_audio(path, case[k], RATE)
            row: dict = {"input": {"oracle_mrstft_db": oracle_distance(case["input"], case["oracle"]),
                                   "style_similarity": style_similarity(case["input"], case["reference"], metric_obj)},
                         "oracle": {"style_similarity": style_similarity(case["oracle"], case["reference"],
                                                                         metric_obj)}}
            row["fast"] = []
            for i in range(runs):
                row["fast"].append(_one_match("fast", files, chain_name, metric_name, seed + i, cfg, case,
                                              metric_obj, work, device))
                log(f"{TASK}: {chain_name} fast #{i}: {row['fast'][-1]['wall_s']:.1f} s, "
                    f"{row['fast'][-1]['oracle_mrstft_db']:.2f} dB to the oracle")
            row["naive"] = []
            for i in range(naive_runs):
                row["naive"].append(_one_match("naive", files, chain_name, metric_name, seed + i, cfg, case,
                                               metric_obj, work))
                log(f"{TASK}: {chain_name} naive #{i}: {row['naive'][-1]['wall_s']:.1f} s, "
                    f"{row['naive'][-1]['oracle_mrstft_db']:.2f} dB to the oracle")
            row["matchering"] = _matchering_run(files, case, metric_obj, work) if has_matchering else None
            row["throughput"] = throughput(chain_name, metric_obj, seconds=1.5 if quick else
                                           MatchOptions().excerpt_seconds, candidates=8 if quick else 32)
            if quality_cases > 0:
                row["quality"] = search_quality.run(chain_name, metric_obj, quality_cases,
                                                    [seed + i for i in range(quality_seeds)], cfg["seconds"],
                                                    RATE, cfg["quality_changes"], log)
            fast, naive = row["fast"], row["naive"]
            row["summary"] = {
                "fast_wall_s": _median(fast, "wall_s"), "naive_wall_s": _median(naive, "wall_s"),
                "speedup": _median(naive, "wall_s") / _median(fast, "wall_s"),
                "fast_evaluations_per_s": _median(fast, "evaluations_per_s"),
                "naive_evaluations_per_s": _median(naive, "evaluations_per_s"),
                "fast_evaluations": _median(fast, "evaluations"), "naive_evaluations": _median(naive, "evaluations"),
                "fast_peak_rss_mb": max(r["peak_rss_mb"] for r in fast),
                "naive_peak_rss_mb": max(r["peak_rss_mb"] for r in naive) if naive else float("nan"),
                "fast_oracle_mrstft_db": _median(fast, "oracle_mrstft_db"),
                "naive_oracle_mrstft_db": _median(naive, "oracle_mrstft_db"),
                "fast_style_similarity": _median(fast, "style_similarity"),
                "naive_style_similarity": _median(naive, "style_similarity"),
                "fast_cpu_s": _median(fast, "cpu_s"), "naive_cpu_s": _median(naive, "cpu_s"),
                "max_load_1min": max(r["load_1min_before"] for r in fast + naive),
                "max_other_cores": max(r["other_cores"] for r in fast + naive),
            }
            results[chain_name] = row
    report = {"task": TASK, "quick": quick, "metric": metric_name, "device": device, "seed": seed, "runs": runs,
              "naive_runs": naive_runs, "quality_cases": quality_cases, "quality_seeds": quality_seeds,
              "seconds": cfg["seconds"], "cpu_count": os.cpu_count(),
              "load": load, "wall_s": time.perf_counter() - t_start, "results": results,
              "fast_preset": _preset_summary("fast"), "naive_settings": "paper preset, 1 worker, plugins re-created "
              "per candidate, render all then embed all"}
    return write_results(report, out_dir, markdown, plot)


def _preset_summary(name: str) -> dict:
    from dataclasses import asdict

    from stito_server.engine.options import MatchOptions

    opts = asdict(MatchOptions.preset(name))
    return {**opts.pop("optimizer"), **{k: v for k, v in opts.items() if k not in ("amount", "start", "workers")}}


def markdown(report: dict) -> str:
    """The results table: per chain, fast vs naive vs Matchering, with the load the timings were taken under."""
    busy = max(r["summary"]["max_other_cores"] for r in report["results"].values())
    lines = [f"# Match speed{' (quick: tiny searches, numbers mean nothing)' if report['quick'] else ''}", "",
             f"Command: `stito bench speed{' --quick' if report['quick'] else ''} --metric {report['metric']}"
             f"{_quality_flags(report)}` · metric "
             f"{report['metric']} on {report['device']} · {report['seconds']:g} s stereo input and reference (48 kHz) · "
             f"{report['cpu_count']} CPU cores · seed {report['seed']} · fast runs per chain {report['runs']} "
             f"(seeds {report['seed']}..{report['seed'] + report['runs'] - 1}), naive runs {report['naive_runs']}"
             + (" (fewer: one naive run takes minutes to tens of minutes)" if report["naive_runs"] < report["runs"]
                else "") + f" · bench wall time {report['wall_s'] / 60:.0f} min", "",
             f"Load: the 1-minute load average was {report['load']['load_1min']:.2f} when timing began (after waiting "
             f"{report['load']['waited_s'] / 60:.0f} min for it to fall to {MAX_LOAD:g}). During the timed runs other "
             f"processes kept up to {busy:.2f} of the {report['cpu_count']} cores busy (column \"other cores\": "
             "CPU time of the whole machine minus the command's own, per wall second). "
             + ("**These timings were taken under load: an idle machine is faster. CPU seconds per match are "
                "less affected by load than wall seconds.**" if busy > 0.25 else "The machine was otherwise idle."), "",
             "Fast: `stito match` with its default (fast) preset; naive: the paper's settings (popsize 64, 25 "
             "generations, two 5.5 s excerpts), 1 worker, plugins re-created per candidate, all renders then one "
             "embedding batch. Wall: the whole command (start-up, loading, search, final render, writing); CPU: "
             "its CPU seconds, workers included. Quality: multi-resolution STFT distance of the output to the "
             "oracle (the input through the reference's true setting; lower is better) and the metric's "
             "similarity of the whole output to the whole reference. RSS: peak of the process tree (workers "
             "included).", "",
             "| chain | fast: median wall s | naive wall s | speed-up | CPU s fast / naive | evals/s fast / naive | "
             "evals fast / naive | render x real time | encoder x real time | peak RSS MB fast / naive | "
             "oracle dist dB fast / naive / Matchering / input | similarity fast / naive / Matchering / input / "
             "oracle | Matchering wall s | other cores |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for chain_name, row in report["results"].items():
        s, mg, t = row["summary"], row["matchering"] or {}, row["throughput"]
        lines.append(
            f"| {chain_name} | {s['fast_wall_s']:.1f} | {s['naive_wall_s']:.0f} | {s['speedup']:.1f}x | "
            f"{s['fast_cpu_s']:.1f} / {s['naive_cpu_s']:.0f} | "
            f"{s['fast_evaluations_per_s']:.1f} / {s['naive_evaluations_per_s']:.1f} | "
            f"{s['fast_evaluations']:.0f} / {s['naive_evaluations']:.0f} | {t['render_x_real_time']:.0f} | "
            f"{t['encoder_x_real_time']:.0f} | {s['fast_peak_rss_mb']:.0f} / {s['naive_peak_rss_mb']:.0f} | "
            f"{s['fast_oracle_mrstft_db']:.2f} / {s['naive_oracle_mrstft_db']:.2f} / "
            f"{mg.get('oracle_mrstft_db', float('nan')):.2f} / {row['input']['oracle_mrstft_db']:.2f} | "
            f"{s['fast_style_similarity']:.3f} / {s['naive_style_similarity']:.3f} / "
            f"{mg.get('style_similarity', float('nan')):.3f} / {row['input']['style_similarity']:.3f} / "
            f"{row['oracle']['style_similarity']:.3f} | {mg.get('wall_s', float('nan')):.1f} | "
            f"{s['max_other_cores']:.2f} |")
    lines += ["", "Render x real time: stereo seconds rendered per wall second by the match's renderer (all workers) "
              f"on {_first(report, 'clip_seconds'):g} s excerpts plus pre-roll; encoder x real time: stereo seconds "
              "embedded (mid and side) per wall second, one batch.", "",
              "## Every run", "", "| chain | kind | seed | wall s | CPU s | match s | evals | stop | kept | evals/s | "
              "peak RSS MB | oracle dist dB | similarity | load before | other cores |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for chain_name, row in report["results"].items():
        for kind in ("fast", "naive"):
            for r in row[kind]:
                lines.append(f"| {chain_name} | {kind} | {r['seed']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                             f"{r['match_wall_s']:.1f} | {r['evaluations']} | {r['stop_reason']} | {r['chosen']} | "
                             f"{r['evaluations_per_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['oracle_mrstft_db']:.2f} | "
                             f"{r['style_similarity']:.3f} | {r['load_1min_before']:.1f} | {r['other_cores']:.2f} |")
        if row["matchering"]:
            m = row["matchering"]
            lines.append(f"| {chain_name} | Matchering | - | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | - | - | - | - | - | "
                         f"{m['peak_rss_mb']:.0f} | {m['oracle_mrstft_db']:.2f} | {m['style_similarity']:.3f} | "
                         f"{m['load_1min_before']:.1f} | {m['other_cores']:.2f} |")
    lines += _quality_lines(report)
    fp = report["fast_preset"]
    lines += ["", "Fast preset: " + ", ".join(f"{k} {v}" for k, v in fp.items()) + "."]
    if report["device"] == "cpu":
        lines += ["", "GPU (`--device cuda`): not measured here (no GPU on this machine)."]
    return "\n".join(lines) + "\n"


def _quality_flags(report: dict) -> str:
    """The quality options of the command line, where they differ from the defaults."""
    cases, seeds = report.get("quality_cases", 0), report.get("quality_seeds", 1)
    return "".join(f" --{name} {value}" for name, value, default in
                   (("quality-cases", cases, QUALITY_CASES), ("quality-seeds", seeds, QUALITY_SEEDS))
                   if value != default)


def _quality_lines(report: dict) -> list[str]:
    """The fast-vs-paper quality section (empty when the run skipped it)."""
    rows = {c: r["quality"] for c, r in report["results"].items() if r.get("quality")}
    if not rows:
        return []
    q0 = next(iter(rows.values()))
    lines = ["", "## Quality: fast preset vs the paper's settings", "",
             f"Every chain matched on {q0['cases']} cases (case 0 is the timed case; the others are other generated "
             f"recordings through the same true setting) with seeds {', '.join(map(str, q0['seeds']))}, under the "
             "fast preset (its time budget included) and under the paper's settings (popsize 64, 25 generations, "
             "two 5.5 s excerpts), both in the bench's process with the match's own renderer (the naive "
             "baseline's serial renderer changes only its speed). Oracle distance: multi-resolution STFT, dB, "
             "lower is better; difference: median over (case, seed) pairs of fast minus paper, with its "
             f"{CI_LEVEL:.0%} bootstrap interval (single runs of either preset spread by several dB, so a handful of "
             "pairs decides little).", "",
             "| chain | oracle dist dB fast / paper (median) | input (per case) | difference dB (interval) | "
             "pairs fast closer | "
             "similarity fast / paper | evals fast / paper | match s fast / paper | fast no worse |",
             "|---|---|---|---|---|---|---|---|---|"]
    for chain_name, q in rows.items():
        s = q["summary"]
        inputs = " / ".join(f"{v:.2f}" for v in q["input_oracle_mrstft_db"].values())
        lo, hi = s.get("difference_interval_db", (float("nan"), float("nan")))
        lines.append(f"| {chain_name} | {s['fast_oracle_mrstft_db']:.2f} / {s['paper_oracle_mrstft_db']:.2f} | "
                     f"{inputs} | {s['median_difference_db']:+.2f} ({lo:+.2f} .. {hi:+.2f}) | {s['fast_closer']} of {s['pairs']} | "
                     f"{s['fast_style_similarity']:.3f} / {s['paper_style_similarity']:.3f} | "
                     f"{s['fast_evaluations']:.0f} / {s['paper_evaluations']:.0f} | "
                     f"{s['fast_wall_s']:.1f} / {s['paper_wall_s']:.0f} | {'yes' if s['fast_no_worse'] else 'no'} |")
    lines += ["", "| chain | case | seed | preset | oracle dist dB | similarity | evals | stop | kept | match s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for chain_name, q in rows.items():
        for r in q["runs"]:
            lines.append(f"| {chain_name} | {r['case']} | {r['seed']} | {r['preset']} | {r['oracle_mrstft_db']:.2f} | "
                         f"{r['style_similarity']:.3f} | {r['evaluations']} | {r['stop_reason']} | {r['chosen']} | "
                         f"{r['wall_s']:.1f} |")
    return lines


def _first(report: dict, key: str) -> float:
    return next(iter(report["results"].values()))["throughput"][key]


def plot(report: dict, path: Path) -> None:
    """Wall time per match (log scale) and distance to the oracle, fast vs naive vs Matchering, per chain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chains = list(report["results"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    width = 0.25
    for k, (kind, label) in enumerate((("fast", "stito fast"), ("naive", "naive (paper)"), ("matchering", "Matchering"))):
        walls, dists = [], []
        for c in chains:
            row = report["results"][c]
            rows = [row[kind]] if kind == "matchering" and row[kind] else (row[kind] if kind != "matchering" else [])
            walls.append(_median(rows, "wall_s"))
            dists.append(_median(rows, "oracle_mrstft_db"))
        xs = np.arange(len(chains)) + (k - 1) * width
        bars = axes[0].bar(xs, walls, width, label=label)
        axes[0].bar_label(bars, fmt="%.1f", fontsize=7)
        axes[1].bar(xs, dists, width, label=label)
    axes[1].plot(np.arange(len(chains)), [report["results"][c]["input"]["oracle_mrstft_db"] for c in chains], "k_",
                 markersize=30, label="input (no processing)")
    for ax, title in zip(axes, ("wall seconds per match (log)", "distance to the oracle, dB (lower is better)")):
        ax.set_xticks(np.arange(len(chains)), chains)
        ax.set_title(title, fontsize=9)
    axes[0].set_yscale("log")
    axes[0].set_ylim(bottom=1.0)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Match speed, metric {report['metric']}{' (quick)' if report['quick'] else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- child processes (one measured match each) ---

def _naive_child(settings: dict, argv: Sequence[str]) -> int:
    """The naive baseline as a command: `stito match`'s arguments, paper preset, serial, plugins re-created."""
    from stito_server.cli import get_parser, run_and_write
    from stito_server.engine.options import MatchOptions
    from stito_server.metrics import get_metric

    args = get_parser().parse_args(["match", *argv])
    opts = MatchOptions.paper(seed=args.seed, loudness=args.loudness, workers=1, recreate_plugins=True,
                              pipeline=False, **settings)
    reference = args.reference[0]  # one reference: the bench's pairs
    run_and_write(load_audio(args.input, role="input"), load_audio(reference, role="reference"),
                  load_chain(args.chain), get_metric(args.metric), opts, args.out, args.report, None, True,
                  extra={"input": args.input, "reference": reference, "chain": args.chain, "preset": "naive"})
    return 0


def _matchering_child(target: str, reference: str, out: str) -> int:
    """Matchering 2 with its default settings on two files (the whole command is timed)."""
    import matchering as mg

    mg.process(target=target, reference=reference, results=[mg.Result(out, subtype="FLOAT")])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.speed [--quick] [--metric M] ...`: run the benchmark, print the table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--naive-child"]:
        return _naive_child(json.loads(argv[1]), argv[2:])
    if argv[:1] == ["--matchering-child"]:
        return _matchering_child(*argv[1:4])
    p = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__)
    add_arguments(p)
    return run_args(p.parse_args(argv))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared by ``main`` and ``stito bench speed``)."""
    p.add_argument("--quick", action="store_true", help="short files and tiny searches (exercises every path)")
    p.add_argument("--metric", default=None, help="style metric (default: the one stito match uses)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first run (default 0)")
    p.add_argument("--runs", type=int, default=None, help="fast runs per chain (default 3; quick 1)")
    p.add_argument("--naive-runs", type=int, default=1, help="naive-baseline runs per chain (default 1)")
    p.add_argument("--chains", default=None, help=f"comma-separated chains (default {','.join(CHAINS)})")
    p.add_argument("--no-wait", action="store_true", help=f"time at once, even above a load average of {MAX_LOAD:g}")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="metric device of the fast runs")
    p.add_argument("--quality-cases", type=int, default=QUALITY_CASES,
                   help="cases of the fast-vs-paper quality comparison (default %(default)s; 0 skips it; each "
                        "paper-settings match takes minutes)")
    p.add_argument("--quality-seeds", type=int, default=QUALITY_SEEDS,
                   help="seeds per quality case (default %(default)s)")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default: bench/results, or bench/results/quick with --quick)")


def run_args(args: argparse.Namespace) -> int:
    """Run the benchmark from parsed ``add_arguments`` options; prints the table, returns the exit status."""
    out = args.out or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    chains = tuple(c.strip() for c in args.chains.split(",") if c.strip()) if args.chains else None
    if args.quality_cases < 0 or args.quality_seeds < 1:
        raise SystemExit(f"--quality-cases must be at least 0 and --quality-seeds at least 1, got "
                         f"{args.quality_cases} and {args.quality_seeds}")
    report = run(args.quick, out, args.metric, args.seed, runs, args.naive_runs, chains, wait=not args.no_wait,
                 device=args.device, quality_cases=args.quality_cases, quality_seeds=args.quality_seeds)
    print(Path(report["files"][0]).read_text())
    print(f"wrote {', '.join(report['files'])} in {report['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
