"""`stito` command line: argument parsing and printing only; the work happens in the engine's API.

Each command imports the engine inside its own function, so that `stito --help`, `stito chains` and a
parse error start without pedalboard, scipy or torch (they cost seconds).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import stat
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Sequence

from . import __version__
from .errors import StitoError
from .memory import allocator_for, fast_allocator, single_threaded_blas

single_threaded_blas()  # before numpy loads (engine.options imports it): a match is parallel over candidates itself
from .engine.options import add_option_arguments, cli_changes, cli_options, option_values
from .metrics import DEFAULT_METRIC

PRODUCT_COMMANDS = ("match", "apply", "batch", "plugins", "chains", "demo")
LAB_GROUP = "stito.commands"  # entry points of the lab's sub-commands (pyproject.toml)


def get_parser() -> argparse.ArgumentParser:
    """The `stito` argument parser."""
    parser = argparse.ArgumentParser(prog="stito", description="Audio production style transfer over real plugins.")
    parser.add_argument("--version", action="version", version=f"stito {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("match", help="match an input's production style to a reference's",
                       description="Search the chain's parameters so the processed INPUT sounds like REFERENCE.")
    m.add_argument("input", help="raw recording (any format soundfile reads; mono or stereo)")
    m.add_argument("reference", nargs="+", help="audio in the wanted style; several (each from another recording, "
                   "processed alike) share their processing and average out their content")
    m.add_argument("--chain", required=True, help="shipped chain name (see `stito chains`) or a .toml chain spec")
    m.add_argument("--allow-python-effects", action="store_true",
                   help="let the chain file name Python code (a 'python' effect key), which runs on loading: only "
                   "for a file you trust (refused otherwise)")
    m.add_argument("--out", required=True, help="output audio file (same rate and channels as the input)")
    m.add_argument("--report", help="write a JSON report here")
    m.add_argument("--plot", help="write a PNG of spectra and the similarity trajectory here")
    m.add_argument("--save-chain", metavar="FILE.toml",
                   help="save the matched chain here, every parameter fixed in its units, to render onto other files "
                        "with `stito apply`")
    m.add_argument("--overwrite", action="store_true",
                   help="replace --out, --report, --plot or --save-chain files that exist (refused otherwise: stito "
                        "does not overwrite)")
    m.add_argument("--metric", default=DEFAULT_METRIC,
                   help="style metric: stats (production statistics as processing deltas), afx (learned "
                        "encoder), mfcc, mir, or names joined by '+' to score the mean of their similarities, e.g. "
                        "afx+mfcc (default: %(default)s)")
    m.add_argument("--preset", choices=("fast", "paper"), default="fast",
                   help="search settings: fast (seconds on 2 cores) or paper (popsize 64, 25 generations, two 5.5 s "
                        "excerpts); the flags below override it (default: %(default)s)")
    m.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device of a learned metric (default: cpu)")
    add_option_arguments(m)  # --amount, --seed, --popsize, ...: engine/options.py's MATCH_OPTIONS
    m.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    m.add_argument("--server", metavar="ADDRESS", help="run the match on stito-server at ADDRESS "
                   "(e.g. tcp://127.0.0.1:5557) instead of in this process")

    p = sub.add_parser("plugins", help="list VST3 plugins found and built-in effects; `plugins show NAME` for details")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("name", nargs="?", help="plugin or built-in effect name (for show)")

    sub.add_parser("chains", help="list the shipped chains")

    a = sub.add_parser("apply", help="render a saved match onto files (stems, other takes) without searching",
                       description="Render each INPUT through a chain saved by `stito match --save-chain`, with the "
                                   "match's gain and true-peak ceiling, into --out-dir (one WAV per input).")
    a.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files (mono or stereo)")
    a.add_argument("--chain", required=True, help="a chain saved by `stito match --save-chain`")
    a.add_argument("--out-dir", required=True, help="folder for the outputs, INPUT's name as .wav (made if missing)")
    a.add_argument("--overwrite", action="store_true",
                   help="replace outputs in --out-dir that exist (refused otherwise; an input never is)")
    a.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    b = sub.add_parser("batch", help="match many files on Dask distributed (this machine, or a cluster)",
                       description="Run the jobs of MANIFEST (or one job per file of --inputs) on Dask: each job's "
                                   "output <id>.wav and report <id>.json go to --out-dir, with batch-summary.csv and "
                                   ".json. Running the same batch again skips the jobs already written.")
    b.add_argument("manifest", nargs="?", help="a .csv or .toml manifest of jobs (see the README); or --inputs")
    b.add_argument("--inputs", metavar="DIR", help="one job per audio file in DIR (instead of a manifest)")
    b.add_argument("--reference", nargs="+", metavar="REF", help="reference file(s) of every job (a manifest's "
                   "jobs may give their own)")
    b.add_argument("--chain", help="chain of every job: a shipped name or a .toml spec (a manifest's jobs may give "
                   "their own)")
    b.add_argument("--apply", metavar="FILE.toml", help="render this saved match (`stito match --save-chain`) onto "
                   "every input instead of matching: `stito apply` on the batch path")
    b.add_argument("--out-dir", required=True, help="folder for the outputs, reports and summary (made if missing)")
    b.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler (tcp://HOST:8786) whose workers "
                   "run the jobs; default: a local cluster on this machine")
    b.add_argument("--workers", dest="batch_workers", type=int, metavar="N",
                   help="local cluster: worker processes, one job each at a time (default: one per core); each "
                        "match renders on the cores divided between them")
    b.add_argument("--metric", default=DEFAULT_METRIC, help="style metric of every job (default: %(default)s)")
    b.add_argument("--preset", choices=("fast", "paper"), default="fast", help="search settings (default: fast)")
    b.add_argument("--allow-python-effects", action="store_true",
                   help="let chain files name Python code (only for files you trust)")
    add_option_arguments(b, exclude=("workers",))  # every job's options; a manifest's own override them
    b.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    for name, entry in lab_commands().items():
        sub.add_parser(name, add_help=False, help=f"the lab's `{name}` commands ({entry.value}; "
                                                   f"`stito {name} --help` lists them)")

    d = sub.add_parser("demo", help="generate the bundled example pair and match it with zam-strip")
    d.add_argument("--out-dir", default="out/demo", help="folder for the example and results (default: %(default)s)")
    d.add_argument("--chain", default="zam-strip", help="chain to use (default: %(default)s)")
    d.add_argument("--max-generations", type=int, default=12, help="(default: %(default)s)")
    d.add_argument("--popsize", type=int, default=32, help="(default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `stito`; returns the exit status (0 ok, 2 a user-facing error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in PRODUCT_COMMANDS and not argv[0].startswith("-"):
        lab = lab_commands()
        if argv[0] in lab:
            return _run_lab(argv[0], lab[argv[0]], argv[1:])
    args = get_parser().parse_args(argv)
    if args.command in ("match", "apply", "batch"):
        fast_allocator()  # a long file switches to return_large_blocks once its length is known (allocator_for)
    # SIGTERM unwinds like Ctrl-C, so a file being written is removed (save_atomically), not left half-written
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        if args.command == "match":
            return cmd_match(args)
        if args.command == "apply":
            return cmd_apply(args)
        if args.command == "batch":
            return cmd_batch(args)
        if args.command == "plugins":
            return cmd_plugins(args)
        if args.command == "chains":
            return cmd_chains()
        if args.command == "demo":
            return cmd_demo(args)
    except StitoError as exc:
        return _user_error(exc)
    except KeyboardInterrupt:
        print("stito: interrupted; nothing was written", file=sys.stderr)
        return 130
    except _Terminated:
        print("stito: terminated; nothing was written", file=sys.stderr)
        return 143
    except BrokenPipeError as exc:
        if _stdout_reader_gone():  # `stito plugins | head -3`: stdout's reader has gone, which is no error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
            return 0
        return _user_error(StitoError(f"a pipe closed unexpectedly ({exc})"))  # not stdout: say so
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end has closed (poll reports an error on its writing end)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured output)
        return False


@contextmanager
def quiet_plugins():
    """Send fd 2 to /dev/null while plugins load or are released in this process: VST3 plugins (DPF) write
    warnings there on every instance they create and delete. Only where no other thread may be writing (the
    CLI, before and after a match); ``STITO_PLUGIN_STDERR`` set keeps them, as in the render workers."""
    if os.environ.get("STITO_PLUGIN_STDERR"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def with_chain_quietly(load: Callable[[], Any], use: Callable[[Any], None]) -> None:
    """Load a chain, hand it to ``use`` and release it, the plugins' chatter on loading and releasing hidden
    (``quiet_plugins``); this function holds the only reference, so releasing it frees the plugins here."""
    with quiet_plugins():
        chain = load()
    try:
        use(chain)
    finally:
        with quiet_plugins():
            del chain
            gc.collect()


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``finally`` and cleanup runs."""


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated()


def lab_commands() -> dict[str, EntryPoint]:
    """The lab's sub-commands (entry points of group ``LAB_GROUP``) by name; none of them is loaded."""
    return {ep.name: ep for ep in entry_points(group=LAB_GROUP)}


def run_lab_parser(name: str, add_parser: Callable[[Any], Any], run: Callable[[argparse.Namespace], int],
                   argv: Sequence[str]) -> int:
    """``stito NAME ARGV`` parsed by a lab command's own ``add_parser`` and handed to its ``run``.

    The lab's entry points (``bench.cli:main``, ...) call this, so their usage lines read ``stito NAME``.
    """
    parser = argparse.ArgumentParser(prog="stito")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args([name, *argv]))


def _run_lab(name: str, entry: EntryPoint, argv: list[str]) -> int:
    """Load one lab command and run it with the arguments after its name."""
    try:
        return int(entry.load()(argv) or 0)
    except StitoError as exc:
        return _user_error(exc)
    except ModuleNotFoundError as exc:
        return _user_error(StitoError(f"`stito {name}` needs {exc.name!r}, which is not installed: install the "
                                      f"lab's extras (pip install -e '.[bench,train]' in a checkout)"))
    except KeyboardInterrupt:
        print(f"stito: {name} interrupted", file=sys.stderr)
        return 130


def _user_error(exc: StitoError) -> int:
    print("stito: error: " + " ".join(str(exc).split()), file=sys.stderr)  # always one line
    return 2


def _check_outputs(inputs: list[str], outputs: list[str | None],
                   labels: tuple[str, ...] = ("--out", "--report", "--plot", "--save-chain"),
                   overwrite: bool = False) -> None:
    """Refuse, before any work, output paths that would fail or lose something once the match is done.

    ``outputs`` are in the order of ``labels``; the first is the audio file. Each must be a new file (or, with
    ``overwrite``, an existing writable file; never a folder) in a writable folder, none may be an input or another
    output, and the audio file's extension must be a format soundfile writes.
    """
    import soundfile as sf

    resolved_in = {Path(i).resolve() for i in inputs}
    seen: dict[Path, str] = {}
    for label, out in zip(labels, outputs):
        if out is None:
            continue
        o = Path(out)
        r = o.resolve()
        if r in resolved_in:
            raise StitoError(f"output {o} is one of the input files; stito never overwrites its inputs")
        if r in seen:
            raise StitoError(f"{label} {o} is also {seen[r]}: give each output its own file")
        seen[r] = label
        if r.is_dir():
            raise StitoError(f"{label} {o} is a folder; give a file name")
        if r.exists() and not r.stat().st_mode & stat.S_IWUSR:
            raise StitoError(f"{label} {o} is write-protected; stito does not replace it (make it writable, or give "
                             "another name)")
        if r.exists() and not overwrite:
            raise StitoError(f"{label} {o} exists; stito does not overwrite: remove it, give another name, or pass "
                             "--overwrite")
        if not o.parent.resolve().is_dir():
            raise StitoError(f"folder for output {o} does not exist: {o.parent}")
        if not os.access(o.parent.resolve(), os.W_OK):
            raise StitoError(f"folder for output {o} is not writable: {o.parent.resolve()}")
        if label == labels[0]:
            ext = o.suffix.lower().lstrip(".")
            formats = sorted(f.lower() for f in sf.available_formats())
            if ext not in formats:
                raise StitoError(f"{label} {o}: " + (f"unknown audio format .{ext}" if ext else "no file extension")
                                 + f"; use one of {', '.join('.' + f for f in formats)}")
        if label == "--plot" and o.suffix.lower() != ".png":
            raise StitoError(f"--plot {o}: the plot is a PNG image; give a file name ending in .png")
        if label == "--save-chain" and o.suffix.lower() != ".toml":
            raise StitoError(f"--save-chain {o}: a saved chain is a TOML chain spec; give a file name ending in .toml")


def cmd_match(args: argparse.Namespace) -> int:
    from .audio import load_audio
    from .effects.specs import load_chain
    from .engine.match import effect_amounts
    from .engine.options import MatchOptions
    from .metrics import get_metric

    _check_outputs([args.input, *args.reference], [args.out, args.report, args.plot, args.save_chain],
                   overwrite=args.overwrite)
    opts = cli_options(args.preset, args)
    input_audio = load_audio(args.input, role="input")
    references = [load_audio(r, role="reference" if len(args.reference) == 1 else f"reference {i + 1}")
                  for i, r in enumerate(args.reference)]
    allocator_for(max(a.samples.shape[-1] for a in (input_audio, *references)))
    reference = references[0] if len(references) == 1 else references
    reference_names = args.reference[0] if len(args.reference) == 1 else args.reference
    if args.server and args.save_chain:
        # the saved chain is written here, from the server's matched positions: the plugins must be here too
        def load():
            try:
                return load_chain(args.chain, allow_python=args.allow_python_effects)
            except StitoError as exc:
                raise StitoError(f"--save-chain with --server writes the saved chain on this machine, so the chain's "
                                 f"plugins must be here as well as on the server: {exc}") from None

        with_chain_quietly(load, lambda chain: match_on_server(args, opts, input_audio, reference, chain))
        return 0
    if args.server:
        return match_on_server(args, opts, input_audio, reference)
    metric = get_metric(args.metric, args.device)
    if "torch" in sys.modules and args.device == "cpu":
        # A learned metric embeds each block of renders while the render threads keep both cores busy;
        # torch's own thread pool on top oversubscribes them (measured: 5-8 % longer matches on 2 cores).
        import torch

        torch.set_num_threads(1)
    def run(chain) -> None:
        effect_amounts(chain, opts.amount)  # an --amount naming no effect fails here, before the progress bar
        run_and_write(input_audio, reference, chain, metric, opts, args.out, args.report, args.plot, args.quiet,
                      extra={"input": args.input, "reference": reference_names, "chain": args.chain,
                             "preset": args.preset}, save_chain=args.save_chain)

    with_chain_quietly(lambda: load_chain(args.chain, allow_python=args.allow_python_effects), run)
    return 0


def match_on_server(args: argparse.Namespace, opts, input_audio, reference, saving=None) -> int:
    """`stito match --server`: the same options and result as in-process, computed by stito-server.

    ``saving``: the chain loaded here for ``--save-chain``; it takes the server's matched positions (by effect and
    parameter name) and is written as the saved chain with the other outputs.
    """
    import tomllib

    from tqdm import tqdm

    from .client import ServerError, ServerTimeout, StitoClient

    path = Path(args.chain)
    spec: object = args.chain
    if path.suffix == ".toml" or path.exists():
        try:
            spec = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise StitoError(f"cannot read chain file {path}: {exc}") from None
    options = {"preset": args.preset, "metric": args.metric, **option_values(opts, wire_only=True)}
    bars: list = []  # the bar appears with the server's first progress message (an error before it is one line)

    def progress(p: dict) -> None:
        if not bars:
            bars.append(tqdm(total=opts.optimizer.max_generations, desc="matching (server)", unit="gen",
                             file=sys.stderr, disable=args.quiet, leave=False))
        bar = bars[0]
        if p.get("generation"):
            bar.update(p["generation"] - bar.n)
            bar.set_postfix(best=f"{p['best_similarity']:.4f}")
        elif p.get("state") == "queued" and p.get("queue_position"):
            bar.set_description(f"queued (position {p['queue_position']})")

    try:
        with StitoClient(args.server) as client:
            refs = reference if isinstance(reference, list) else [reference]
            req = client.start_match(input_audio.samples, input_audio.sample_rate, [r.samples for r in refs],
                                     [r.sample_rate for r in refs], {"spec": spec}, options, return_audio=True)
            reply = client.wait_match(req, progress)
            output, rate = client.output_audio(reply)
    except (ServerError, ServerTimeout, FileNotFoundError, PermissionError) as exc:
        raise StitoError(f"server {args.server}: {exc}") from None
    finally:
        for bar in bars:
            bar.close()
    report = reply.content["report"]
    report.update(input=args.input, reference=args.reference[0] if len(args.reference) == 1 else args.reference,
                  chain=args.chain, server=args.server)
    saved = None
    if saving is not None:
        from .effects.saved import saved_spec

        saved = saved_spec(_with_positions(saving, report["parameters"]), report["output_gain_db"], opts.ceiling_dbtp,
                           note=f"matched {report['input']} to {report['reference']} on {args.server} with stito "
                                f"{__version__}; render onto other files with `stito apply`")
    first = reference[0] if isinstance(reference, list) else reference  # the plot shows the first reference
    write_outputs(input_audio, first, output, rate, report, args.out, args.report, args.plot,
                  title=f"{args.chain} (server)", save_chain=args.save_chain, saved=saved, presets_of=saving)
    if not args.quiet:
        print(summary(report, args.chain))
    return 0


def _with_positions(chain, parameters: list[dict]):
    """``chain`` set to a report's matched positions (``normalized_after``, by effect and parameter name).

    Raises:
        StitoError: the report and the chain here do not describe the same parameters (another plugin version).
    """
    import numpy as np

    rows = {(p["effect"], p["param"]): float(p["normalized_after"]) for p in parameters}
    for fx in chain.effects:
        names = [p.name for p in fx.params]
        missing = [n for n in names if (fx.name, n) not in rows]
        if missing:
            raise StitoError(f"the server's {fx.name} has no parameter {missing[0]!r} that this machine's has: the "
                             "plugins differ between here and the server, so the chain cannot be saved here")
        fx.set_normalized(np.array([rows[fx.name, n] for n in names]))
    return chain


def run_and_write(input_audio, reference, chain, metric, opts, out: str, report: str | None, plot: str | None,
                  quiet: bool, extra: dict, save_chain: str | None = None) -> None:
    """Run a match with a progress bar, then write output, report, plot and saved chain (all or nothing)."""
    from tqdm import tqdm

    from .engine.match import match

    bar = tqdm(total=opts.optimizer.max_generations, desc="matching", unit="gen", file=sys.stderr,
               disable=quiet, leave=False)

    def progress(p) -> None:
        bar.update(p.generation - bar.n)
        bar.set_postfix(best=f"{p.best_similarity:.4f}", evals=p.evaluations)

    try:
        result = match(input_audio, reference, chain, metric, opts, progress=progress)
    finally:
        bar.close()
    data = result.report(**extra, chain_name=chain.name, metric=metric.name, sample_rate=result.sample_rate,
                         options=option_values(opts, wire_only=True))
    saved = None
    if save_chain:
        from .effects.saved import saved_spec

        saved = saved_spec(chain, result.output_gain_db, opts.ceiling_dbtp,
                           note=f"matched {extra.get('input', 'the input')} to {extra.get('reference', 'the reference')} "
                                f"with stito {__version__}; render onto other files with `stito apply`")
    first = reference[0] if isinstance(reference, list) else reference  # the plot shows the first reference
    write_outputs(input_audio, first, result.output, result.sample_rate, data, out, report, plot,
                  title=f"{chain.name} / {metric.name}", save_chain=save_chain, saved=saved, presets_of=chain)
    if not quiet:
        print(summary(data, chain.name))


def write_outputs(input_audio, reference, output, rate: int, data: dict, out: str, report: str | None,
                  plot: str | None, title: str, save_chain: str | None = None, saved: dict | None = None,
                  presets_of=None) -> None:
    """Write output audio, JSON report, plot and saved chain (with ``presets_of``'s VST3 plugins' ``.vstpreset`` files
    beside it), all or nothing (a failure removes what was written)."""
    from .audio import save_atomically, save_audio
    from .plot import save_plot

    text = json.dumps(data, indent=2, allow_nan=False, default=_json_default)
    written: list[Path] = []
    try:
        save_audio(out, output, rate)
        written.append(Path(out))
        if report:
            save_atomically(report, lambda tmp: Path(tmp).write_text(text))
            written.append(Path(report))
        if plot:
            save_plot(plot, input_audio.samples, input_audio.sample_rate, reference.samples, reference.sample_rate,
                      output, data["search"]["trajectory"], title=title)
            written.append(Path(plot))
        if save_chain and saved is not None:
            from .effects.saved import write_presets, write_spec

            write_spec(saved, save_chain)
            written.append(Path(save_chain))
            if presets_of is not None:
                written += write_presets(presets_of, save_chain)
    except BaseException:
        for w in written:
            w.unlink(missing_ok=True)
        raise


def _json_default(x):
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"cannot serialise {type(x).__name__}")


def summary(report: dict, chain_name: str) -> str:
    """Readable summary of a match report: similarity, what changed per effect, loudness, search, timing."""
    s = report["similarity"]
    before = "n/a" if s["before"] is None else f"{s['before']:.4f}"
    after = "n/a" if s["after"] is None else f"{s['after']:.4f}"
    lines = [f"similarity to reference: dry {s['dry']:.4f}, start {before} -> matched {after}"]
    changed = [p for p in report["parameters"] if p["changed"]]
    lines.append(f"{len(changed)} of {len(report['parameters'])} parameters changed in {chain_name}:")
    effect = None
    for p in changed:
        if p["effect"] != effect:
            effect = p["effect"]
            lines.append(f"  {effect}")
        lines.append(f"    {p['param']:<24} {p['before_text']:>16} -> {p['after_text']}")
    refs = report.get("references") or []
    if len(refs) > 1:
        lines.append(f"{len(refs)} references, combined (each weighted alike); each one's similarity to the combined "
                     "target: " + ", ".join(f"{r['similarity_to_target']:+.4f}" for r in refs))
    lo, gain = report["loudness_lufs"], report["output_gain_db"]
    lines.append(f"loudness: input {lo['input']:.1f} LUFS, reference{'s (mean)' if len(refs) > 1 else ''} "
                 f"{lo['reference']:.1f} LUFS, "
                 f"chain output {lo['chain_output']:.1f} LUFS"
                 + (f", file gained {gain:+.1f} dB to {lo['output']:.1f} LUFS" if gain else ""))
    peak = report.get("true_peak_dbtp")
    if peak is not None:
        ceiling = report.get("ceiling_gain_db") or 0.0
        lines.append(f"output true peak: {peak:+.1f} dBTP"
                     + (f" (turned down {-ceiling:.1f} dB to meet the ceiling)" if ceiling < 0 else ""))
    sr = report["search"]
    lines.append(f"search: {sr['generations']} generations, {sr['evaluations']} evaluations, stopped: "
                 f"{sr['stop_reason']}; picked '{report['pick']['chosen']}'; {report['wall_s']:.1f} s "
                 f"({sr['evaluations'] / max(report['wall_s'], 1e-9):.0f} evaluations/s)")
    if (report.get("same_performance") or {}).get("detected"):
        lines.append(report["same_performance"]["line"])
    if report.get("restraint"):
        lines += report["restraint"]["lines"]
    if report.get("level_change_db") is not None:
        lines.append(f"level through the chain: {report['level_change_db']:+.1f} dB on the validation excerpts")
    lines += [f"warning: {w}" for w in report["warnings"]]
    return "\n".join(lines)


def cmd_apply(args: argparse.Namespace) -> int:
    """`stito apply`: a saved match rendered onto each input, without searching."""
    import soundfile as sf
    from tqdm import tqdm

    from .effects.saved import load_saved

    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise StitoError(f"--out-dir {out_dir} is a file; give a folder")
    outputs: dict[Path, str] = {}
    longest = 0
    for name in args.inputs:  # every path checked before any work: nothing half done
        try:
            longest = max(longest, sf.info(name).frames)
        except (RuntimeError, OSError, sf.LibsndfileError) as exc:
            raise StitoError(f"input {name}: cannot read it as audio ({' '.join(str(exc).split())})") from None
        target = out_dir / f"{Path(name).stem}.wav"
        if target in outputs:
            raise StitoError(f"inputs {outputs[target]} and {name} would both be written to {target}; "
                             "apply them in two runs, or rename one")
        outputs[target] = name
    parent = next(p for p in (out_dir, *out_dir.resolve().parents) if p.exists())
    if not os.access(parent, os.W_OK):
        raise StitoError(f"--out-dir {out_dir}: {parent} is not writable")
    allocator_for(longest)
    resolved_in = {Path(n).resolve(): n for n in args.inputs}
    for target in outputs:
        if target.resolve() in resolved_in:
            raise StitoError(f"output {target} is the input {resolved_in[target.resolve()]}; stito never overwrites its "
                             "inputs: give another --out-dir")
    existing = [str(t) for t in outputs if t.exists()]
    if existing and not args.overwrite:
        raise StitoError(f"{existing[0]} exists" + (f" (and {len(existing) - 1} more)" if len(existing) > 1 else "")
                         + "; stito does not overwrite: remove it, give another --out-dir, or pass --overwrite")
    protected = [t for t in existing if not Path(t).stat().st_mode & stat.S_IWUSR]
    if protected:
        raise StitoError(f"{protected[0]} is write-protected; stito does not replace it (make it writable, or give "
                         "another --out-dir)")

    done: list[Path] = []

    def run(saved) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for target, name in tqdm(outputs.items(), desc="applying", unit="file", file=sys.stderr,
                                 disable=args.quiet, leave=False):
            _apply_one(saved, name, target)
            done.append(target)
        if not args.quiet:
            print(f"applied {args.chain} to {len(outputs)} file(s) in {out_dir}")

    try:
        with_chain_quietly(lambda: load_saved(args.chain), run)
    except (KeyboardInterrupt, _Terminated, StitoError) as exc:
        if not done:
            raise
        # the files already written are complete (each is written atomically); say which, then stop as usual
        print(f"stito: stopped after {len(done)} of {len(outputs)} file(s) (complete: "
              f"{', '.join(str(d) for d in done)}); the one being written was removed", file=sys.stderr)
        if isinstance(exc, StitoError):
            return _user_error(exc)
        return 130 if isinstance(exc, KeyboardInterrupt) else 143
    return 0


def _apply_one(saved, name: str, target: Path) -> None:
    """One input through a saved match: the chain, the match's gain, its ceiling; written atomically."""
    from .audio import load_audio, save_audio

    audio = load_audio(name, role="input")
    with quiet_plugins():  # some plugins are re-created on each reset here (Dragonfly), which DPF chatters about
        output = saved.render(audio.samples, audio.sample_rate)
    save_audio(target, output, audio.sample_rate)


def cmd_batch(args: argparse.Namespace) -> int:
    """`stito batch`: many matches on Dask, resumable; a summary per job."""
    from tqdm import tqdm

    from .batch.manifest import folder_jobs, load_manifest
    from .batch.runner import BatchSettings, dask_modules, run_batch

    if not args.manifest and any(r.lower().endswith((".csv", ".toml")) for r in args.reference or ()):
        raise StitoError("a .csv or .toml file was taken as a --reference: give the manifest before the options "
                         "(stito batch jobs.csv --reference REF ... --out-dir DIR)")
    if bool(args.manifest) == bool(args.inputs):
        raise StitoError("give a manifest (a .csv or .toml file of jobs) or --inputs DIR, not both" if args.manifest
                         else "give a manifest (a .csv or .toml file of jobs) or --inputs DIR with --reference and "
                              "--chain")
    settings = BatchSettings(scheduler=args.scheduler, workers=args.batch_workers,
                             allow_python=args.allow_python_effects)
    if args.scheduler and args.batch_workers:
        raise StitoError("--workers sizes the local cluster; with --scheduler, the cluster's own workers run the jobs")
    dask_modules()  # not installed: say how to install it before reading anything
    options = {k: v for k, v in cli_changes(args).items()}
    if "time_budget_s" in options and options["time_budget_s"] is None:
        options["time_budget_s"] = 0  # the manifest's spelling of "no limit"
    cli_options(args.preset, args)  # a bad flag value fails here, named by its flag
    defaults: dict[str, Any] = {"preset": args.preset, "metric": args.metric, "options": options}
    if args.reference:
        defaults["reference"] = [str(Path(r).resolve()) for r in args.reference]
    if args.chain:
        path = Path(args.chain)
        defaults["chain"] = str(path.resolve()) if path.suffix or path.is_file() else args.chain
    if args.apply:
        if args.reference or args.chain:
            raise StitoError("--apply renders a saved match without searching: give it without --reference and "
                             "--chain")
        defaults["apply"] = str(Path(args.apply).resolve())
    if args.inputs:
        if not args.apply and (not args.reference or not args.chain):
            raise StitoError("--inputs needs --reference and --chain (every job shares them), or --apply")
        jobs = folder_jobs(args.inputs, defaults)
    else:
        jobs = load_manifest(args.manifest, defaults)
    bars: list = []  # the bar appears with the first settled job (an error before it is one line)

    def progress(result, done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="batch", unit="job", file=sys.stderr, disable=args.quiet, leave=False))
        bars[0].update(done - bars[0].n)
        if result.status == "failed" and not args.quiet:
            tqdm.write(f"failed: {result.id}: {result.error}", file=sys.stderr)

    def log(line: str) -> None:
        if not args.quiet:
            tqdm.write(line, file=sys.stderr)

    out_dir = Path(args.out_dir)
    try:
        summary = run_batch(jobs, out_dir, settings, progress=progress, log=log)
    except (KeyboardInterrupt, _Terminated) as exc:
        for bar in bars:
            bar.close()
        summary_file = out_dir / "batch-summary.csv"
        said = f"{summary_file} says which" if summary_file.exists() else "no job had started"
        print(f"stito: batch {'interrupted' if isinstance(exc, KeyboardInterrupt) else 'terminated'}; the jobs "
              f"finished are kept, nothing partial is left ({said}); run the same command again to resume",
              file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 143
    finally:
        for bar in bars:
            bar.close()
    if not args.quiet:
        print(f"{summary.line()}; outputs and reports in {out_dir}, summary in {out_dir / 'batch-summary.csv'} "
              f"and .json")
    return 1 if summary.counts()["failed"] else 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .effects.builtin import BUILTINS, BuiltinEffect
    from .effects.vst3 import VST3Effect, find_vst3, resolve_vst3, vst3_search_paths

    if args.action == "list":
        found = find_vst3()
        print(f"VST3 plugins ({len(found)}), searched: {', '.join(str(p) for p in vst3_search_paths())}")
        for name, path in found.items():
            print(f"  {name:<28} {path}")
        print(f"built-in effects ({len(BUILTINS)}):")
        for name, spec in BUILTINS.items():
            print(f"  {name:<28} {spec.description}")
        return 0
    if not args.name:
        raise StitoError("`stito plugins show` needs a NAME (a VST3 plugin or a built-in effect)")
    fx = BuiltinEffect(args.name) if args.name in BUILTINS else VST3Effect(resolve_vst3(args.name))
    kind = "built-in" if args.name in BUILTINS else f"VST3 {fx.source[5:]}" + (" (mono: run dual mono)" if getattr(fx, "mono", False) else "")
    print(f"{fx.name}: {kind}, {len(fx.params)} parameters")
    print(f"  {'#':>3} {'parameter':<26} {'unit':<6} {'min':>10} {'max':>10} {'default':>14}  scale/kind")
    for i, p in enumerate(fx.params):
        kindtext = p.kind if p.kind != "continuous" else p.scale
        if p.choices:
            kindtext += f" ({len(p.choices)}: {', '.join(p.choices[:4])}{', ...' if len(p.choices) > 4 else ''})"
        print(f"  {i:>3} {p.name:<26} {p.unit:<6} {p.min:>10.4g} {p.max:>10.4g} {fx.param_text(i):>14}  {kindtext}")
    return 0


def cmd_chains() -> int:
    import tomllib

    from .effects.specs import named_chains

    for name, path in named_chains().items():
        desc = tomllib.loads(path.read_text()).get("description", "")
        print(f"  {name:<20} {desc}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .audio import Audio, save_audio
    from .effects.specs import load_chain
    from .examples import phrase, styled
    from .engine.options import MatchOptions
    from .metrics import get_metric
    from .engine.optimize import OptimizerOptions

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rate = 48000
    dry = phrase(12.0, rate, seed=1)
    ref = styled(phrase(12.0, rate, seed=2), rate)
    save_audio(out / "input.wav", dry, rate)
    save_audio(out / "reference.wav", ref, rate)
    print(f"example pair written: {out / 'input.wav'} (dry), {out / 'reference.wav'} (styled, other notes)")
    opts = MatchOptions(optimizer=OptimizerOptions(popsize=args.popsize, max_generations=args.max_generations, seed=0),
                        loudness="reference")
    with_chain_quietly(lambda: load_chain(args.chain), lambda chain: (
        run_and_write(Audio(dry, rate, str(out / "input.wav")), Audio(ref, rate, str(out / "reference.wav")),
                      chain, get_metric(DEFAULT_METRIC), opts, str(out / "output.wav"),
                      str(out / "report.json"), str(out / "plot.png"), quiet=False,
                      extra={"input": str(out / "input.wav"), "reference": str(out / "reference.wav"),
                             "chain": args.chain})))
    print(f"written: {out / 'output.wav'}, {out / 'report.json'}, {out / 'plot.png'}")
    return 0
