"""`stito batch` on real Dask processes on 127.0.0.1: mixed jobs, resume, a killed worker, Ctrl-C, the same output as
`stito match`, and the manifest's errors."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stito_server.batch.manifest import folder_jobs, load_manifest
from stito_server.batch.runner import BatchSettings, run_batch
from stito_server.batch.worker_setup import SchedulerGone
from stito_server.cli import main
from stito_server.errors import StitoError
from stito_server.examples import phrase, styled

from .conftest import write

RATE = 44100
QUICK = ["--max-generations", "3", "--popsize", "8", "--excerpt-seconds", "2", "--time-budget", "0"]
QUICK_OPTIONS = {"max_generations": 3, "popsize": 8, "excerpt_seconds": 2.0, "time_budget_s": 0}
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Four 4 s inputs, a styled reference from another phrase, a file that is not audio."""
    d = tmp_path_factory.mktemp("batch")
    for i in range(4):
        write(d / f"in{i}.wav", phrase(4.0, RATE, seed=40 + i), RATE)
    write(d / "ref.wav", styled(phrase(4.0, RATE, seed=49), RATE), RATE)
    (d / "bad.wav").write_text("not audio")
    return d


def _manifest(d: Path, name: str, rows: list[str]) -> Path:
    path = d / name
    path.write_text("input,reference,chain,max_generations,popsize,excerpt_seconds,time_budget_s\n"
                    + "".join(f"{r},pedalboard-strip,3,8,2,0\n" for r in rows))
    return path


def test_mixed_good_and_bad_jobs_report_the_bad_and_write_the_good_then_resume_skips(files, tmp_path, capsys):
    manifest = _manifest(files, "mixed.csv", ["in0.wav,ref.wav", "bad.wav,ref.wav", "in1.wav,missing.wav",
                                              "in2.wav,ref.wav"])
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out-dir", str(out), "--workers", "2"]) == 1  # some failed: exit 1
    printed = capsys.readouterr()
    assert "4 of 4 jobs: 2 done, 2 failed" in printed.out
    assert "failed: bad: cannot read input file" in printed.err and "failed: in1: reference" in printed.err
    rows = {r["id"]: r for r in json.loads((out / "batch-summary.json").read_text())["jobs"]}
    assert {k: r["status"] for k, r in rows.items()} == {"in0": "done", "bad": "failed", "in1": "failed",
                                                         "in2": "done"}
    assert "missing.wav not found" in rows["in1"]["error"]
    for job in ("in0", "in2"):
        audio, rate = sf.read(out / f"{job}.wav", dtype="float32")
        assert rate == RATE and audio.shape == (4 * RATE, 2) and np.abs(audio).max() > 0.01
        report = json.loads((out / f"{job}.json").read_text())
        assert report["batch"]["id"] == job and report["batch"]["worker"].startswith("tcp://127.0.0.1:")
        assert rows[job]["similarity_matched"] >= rows[job]["similarity_start"] - 1e-9
        assert rows[job]["wall_s"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["batch-summary.csv", "batch-summary.json", "in0.json", "in0.wav",
                                                     "in2.json", "in2.wav"]  # nothing for the failed jobs
    csv_lines = (out / "batch-summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("id,status,input,references,chain,output,report,similarity_start")
    assert len(csv_lines) == 5
    # run again: the finished jobs are skipped (their files untouched), the failed ones tried again
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("in*")}
    assert main(["batch", str(manifest), "--out-dir", str(out), "--workers", "1", "--quiet"]) == 1
    summary = json.loads((out / "batch-summary.json").read_text())
    assert summary["counts"] == {"done": 0, "skipped": 2, "failed": 2, "interrupted": 0}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("in*")} == stamps
    # the same ids with other settings: refused, nothing overwritten
    changed = _manifest(files, "changed.csv", ["in0.wav,ref.wav"])
    changed.write_text(changed.read_text().replace(",3,8,2,0", ",4,8,2,0"))
    assert main(["batch", str(changed), "--out-dir", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "in0.json exists and is not this batch's output for its job" in err and "does not overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("in*")} == stamps


def test_a_batch_job_gives_the_same_output_as_stito_match(files, tmp_path):
    single = tmp_path / "single.wav"
    assert main(["match", str(files / "in3.wav"), str(files / "ref.wav"), "--chain", "pedalboard-strip", "--seed", "5",
                 "--out", str(single), "--quiet", *QUICK]) == 0
    assert main(["batch", "--inputs", str(files), "--reference", str(files / "ref.wav"), "--chain",
                 "pedalboard-strip", "--seed", "5", "--out-dir", str(tmp_path / "out"), "--workers", "1", "--quiet",
                 *QUICK]) == 1  # bad.wav is in the folder too and fails; ref.wav, the reference, is no job
    summary = json.loads((tmp_path / "out" / "batch-summary.json").read_text())
    assert {j["id"]: j["status"] for j in summary["jobs"]} == {**{f"in{i}": "done" for i in range(4)}, "bad": "failed"}
    a, _ = sf.read(single, dtype="float32")
    b, _ = sf.read(tmp_path / "out" / "in3.wav", dtype="float32")
    assert np.array_equal(a, b)


def test_a_worker_killed_mid_batch_loses_no_job(files, tmp_path):
    """The real distributed path: `dask scheduler` and two `dask worker` processes on 127.0.0.1; one worker's PID is
    killed (SIGKILL) when the first job has finished; its job is run again on the other worker."""
    from bench.batch import dask_processes

    with dask_processes(2) as (address, workers):
        jobs = load_manifest(_manifest(files, "four.csv", [f"in{i}.wav,ref.wav" for i in range(4)]))
        victim = workers[0]
        killed: list[str] = []

        def progress(result, done, total):
            if not killed:
                victim.send_signal(signal.SIGKILL)
                killed.append(result.worker)

        summary = run_batch(jobs, tmp_path / "out", BatchSettings(scheduler=address, match_workers=1),
                            progress=progress)
        assert victim.wait(timeout=10) == -signal.SIGKILL
    assert summary.counts() == {"done": 4, "skipped": 0, "failed": 0, "interrupted": 0}
    assert len(summary.workers) == 2  # both were checked before the jobs started
    survivors = {r.worker for r in summary.jobs[1:]}
    assert len(survivors) == 1  # after the kill, one worker ran everything left
    for i in range(4):
        assert sf.info(str(tmp_path / "out" / f"in{i}.wav")).frames == 4 * RATE


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_keeps_finished_jobs_leaves_nothing_partial_and_the_next_run_resumes(files, tmp_path, how):
    manifest = files / "slow.csv"
    manifest.write_text("input,reference,chain,id,max_generations,popsize,excerpt_seconds,time_budget_s\n"
                        + "".join(f"in{i % 4}.wav,ref.wav,pedalboard-strip,job{i},6,8,2,0\n" for i in range(8)))
    out = tmp_path / "out"
    # SIGINT at its default in the batch, as in a terminal's foreground job: a test run started in the background
    # (`cmd &` in a script) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen([str(VENV_BIN / "stito"), "batch", str(manifest), "--out-dir", str(out), "--workers", "2",
                             "--quiet"], start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("job*.wav")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the batch ended before it could be interrupted"
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
        else:
            proc.send_signal(signal.SIGTERM)  # as `kill`: the command alone, which stops its workers
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == (130 if how == "ctrl-c" else 143)
    assert f"batch {'interrupted' if how == 'ctrl-c' else 'terminated'}" in err.decode()
    assert "Traceback" not in err.decode()
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".")]  # no temporary file left
    outputs = [n for n in names if n.endswith(".wav")]
    assert outputs and all(n.replace(".wav", ".json") in names for n in outputs)
    for n in outputs:
        assert sf.info(str(out / n)).frames == 4 * RATE
    summary = json.loads((out / "batch-summary.json").read_text())
    assert summary["interrupted"] and summary["counts"]["interrupted"] == 8 - len(outputs)
    assert summary["counts"]["done"] == len(outputs)
    if how == "sigterm":  # the next run resumes alike whichever signal ended this one: checked once
        return
    assert main(["batch", str(manifest), "--out-dir", str(out), "--workers", "2", "--quiet"]) == 0
    again = json.loads((out / "batch-summary.json").read_text())
    assert again["counts"] == {"done": 8 - len(outputs), "skipped": len(outputs), "failed": 0, "interrupted": 0}


def test_a_local_worker_drops_only_the_heartbeat_failure_of_its_closing_scheduler():
    # distributed's worker logs this with a traceback when a heartbeat finds the scheduler closed, which the batch
    # does before closing its workers; once in CI it reached the terminal of an interrupted batch
    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("distributed.worker", logging.ERROR, "worker.py", 1, msg, None, (OSError, OSError(), None))

    gone = SchedulerGone()
    assert not gone.filter(record("Failed to communicate with scheduler during heartbeat."))
    assert gone.filter(record("Compute Failed"))
    assert gone.filter(record("Unexpected exception during heartbeat. Closing worker."))
    # and the workers' preload installs it on distributed's worker logger (run off the main thread here, so that this
    # process's SIGINT handler is left alone), removed again after
    import threading

    from stito_server.batch.worker_setup import dask_setup

    logger = logging.getLogger("distributed.worker")
    before = list(logger.filters)
    t = threading.Thread(target=dask_setup, args=(None,))
    t.start()
    t.join()
    try:
        added = [f for f in logger.filters if f not in before]
        assert len(added) == 1 and isinstance(added[0], SchedulerGone)
        assert not logger.filter(record("Failed to communicate with scheduler during heartbeat."))
    finally:
        for f in logger.filters[len(before):]:
            logger.removeFilter(f)


def test_manifest_formats_and_their_errors(files, tmp_path):
    toml = tmp_path / "jobs.toml"
    toml.write_text(f'chain = "pedalboard-strip"\nreference = ["{files / "ref.wav"}"]\n[options]\nseed = 3\n'
                    f'[[job]]\ninput = "{files / "in0.wav"}"\n'
                    f'[[job]]\ninput = "{files / "in1.wav"}"\nid = "take2"\npreset = "paper"\n'
                    f'options = {{ "time-budget" = 0, amount = "eq=0.5" }}\n')
    jobs = load_manifest(toml)
    assert [(j.id, j.preset, j.problem) for j in jobs] == [("in0", "fast", None), ("take2", "paper", None)]
    cli = {"amount": 1.0, "loudness": "reference", "start": "current"}  # `stito match`'s defaults
    assert jobs[0].options == {**cli, "seed": 3}
    assert jobs[1].options == {**cli, "seed": 3, "time_budget_s": None, "amount": "eq=0.5"}
    assert jobs[0].references == (str(files / "ref.wav"),)
    # relative paths are the manifest's folder's; several references in one cell
    rel = files / "rel.csv"
    rel.write_text("input,reference,chain,amount\nin0.wav,ref.wav;in3.wav,pedalboard-strip,1.5\n")
    (job,) = load_manifest(rel)
    assert job.references == (str(files / "ref.wav"), str(files / "in3.wav"))
    assert job.problem == "amount must be between 0 and 1, got 1.5"
    bad_key = tmp_path / "k.csv"
    bad_key.write_text(f"input,reference,chain,sead\n{files / 'in0.wav'},{files / 'ref.wav'},pedalboard-strip,1\n")
    with pytest.raises(StitoError, match=r"manifest k.csv: column 'sead' is neither a job key \(id, input, reference, "
                                         r"chain, apply, preset, metric\) nor a match option \(amount, seed,"):
        load_manifest(bad_key)
    # a spreadsheet's byte-order mark, a quoted cell over two lines, a blank line: rows named as in the file
    odd = tmp_path / "odd.csv"
    odd.write_text("\ufeffinput,reference,chain,amount\n\n" + f"{files / 'in0.wav'},{files / 'ref.wav'},"
                   '"pedalboard-strip",\n' + f'{files / "in1.wav"},{files / "ref.wav"},pedalboard-strip,"2\n"\n',
                   encoding="utf-8")
    first, second = load_manifest(odd)
    assert first.problem is None and first.options["loudness"] == "reference"  # the CLI's defaults
    assert second.where == "odd.csv row 5" and "amount" in second.problem
    with pytest.raises(StitoError, match=r"k2.csv row 2: no chain \(give it for the job"):
        (tmp_path / "k2.csv").write_text(f"input,reference\n{files / 'in0.wav'},{files / 'ref.wav'}\n")
        load_manifest(tmp_path / "k2.csv")
    with pytest.raises(StitoError, match=r"d.csv row 2 and d.csv row 3 have the same id 'in0'"):
        (tmp_path / "d.csv").write_text("input,reference,chain\n" + f"{files / 'in0.wav'},x.wav,c\n" * 2)
        load_manifest(tmp_path / "d.csv")
    with pytest.raises(StitoError, match=r"unknown key 'jobs'; valid: id, input, reference, chain, apply, preset, metric"):
        (tmp_path / "t.toml").write_text("[[jobs]]\ninput = 'a.wav'\n")
        load_manifest(tmp_path / "t.toml")
    with pytest.raises(StitoError, match=r"give a .csv or .toml file"):
        (tmp_path / "m.json").write_text("{}")
        load_manifest(tmp_path / "m.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StitoError, match=r"--inputs .*empty holds no audio file \(.wav, .flac"):
        folder_jobs(tmp_path / "empty", {})


def test_outputs_never_overwrite_inputs_and_bad_command_lines_are_one_line(files, tmp_path, capsys):
    assert main(["batch", "--inputs", str(files), "--reference", str(files / "ref.wav"), "--chain", "pedalboard-strip",
                 "--out-dir", str(files)]) == 2
    err = capsys.readouterr().err
    assert "is an input of job" in err and "never overwrites its inputs" in err and err.count("\n") == 1
    assert not (files / "batch-summary.csv").exists()
    for argv, message in (
            ([], "give a manifest (a .csv or .toml file of jobs) or --inputs DIR with --reference and --chain"),
            (["--inputs", str(files)], "--inputs needs --reference and --chain"),
            (["--inputs", str(files), "--reference", "r.wav", "--chain", "c", "--workers", "0"],
             "workers must be a whole number at least 1, got 0"),
            (["--inputs", str(files), "--reference", "r.wav", "--chain", "c", "--scheduler", "127.0.0.1:1"],
             "give a Dask scheduler address such as tcp://HOST:8786"),
            (["--inputs", str(files), "--reference", "r.wav", "--chain", "c", "--excerpt-seconds", "0.1"],
             "--excerpt-seconds must be above 0.5 s")):
        assert main(["batch", *argv, "--out-dir", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_without_dask_stito_batch_says_how_to_install_it(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError, as uninstalled
    assert main(["batch", "--inputs", str(files), "--reference", str(files / "ref.wav"), "--chain", "pedalboard-strip",
                 "--out-dir", str(tmp_path / "o")]) == 2
    assert "pip install 'stito[batch]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_stito_apply_on_the_batch_path_gives_the_same_files(files, tmp_path):
    saved = tmp_path / "m.toml"
    assert main(["match", str(files / "in0.wav"), str(files / "ref.wav"), "--chain", "pedalboard-strip", "--out",
                 str(tmp_path / "m.wav"), "--save-chain", str(saved), "--quiet", *QUICK]) == 0
    stems = tmp_path / "stems"
    stems.mkdir()
    for i in (1, 2):
        (stems / f"stem{i}.wav").write_bytes((files / f"in{i}.wav").read_bytes())
    assert main(["apply", str(stems / "stem1.wav"), str(stems / "stem2.wav"), "--chain", str(saved), "--out-dir",
                 str(tmp_path / "applied"), "--quiet"]) == 0
    assert main(["batch", "--inputs", str(stems), "--apply", str(saved), "--out-dir", str(tmp_path / "batch"),
                 "--workers", "2", "--quiet"]) == 0
    summary = json.loads((tmp_path / "batch" / "batch-summary.json").read_text())
    assert summary["counts"]["done"] == 2 and all(j["chain"] == str(saved) for j in summary["jobs"])
    for i in (1, 2):
        a, _ = sf.read(tmp_path / "applied" / f"stem{i}.wav", dtype="float32")
        b, _ = sf.read(tmp_path / "batch" / f"stem{i}.wav", dtype="float32")
        assert np.array_equal(a, b)
        report = json.loads((tmp_path / "batch" / f"stem{i}.json").read_text())
        assert report["applied"] == str(saved) and report["batch"]["id"] == f"stem{i}"
    # a saved match is given alone: with --chain it is refused in one line
    assert main(["batch", "--inputs", str(stems), "--apply", str(saved), "--chain", "pedalboard-strip", "--out-dir",
                 str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_a_plugin_that_crashes_its_worker_fails_its_job_only(files, tmp_path):
    """A Python effect that kills its process (SIGSEGV) when its gain goes above +6 dB, rendered in the Dask worker's
    own threads: the worker dies, the job is run once more on a restarted worker, dies again and fails; the other
    jobs are written."""
    crash = tmp_path / "crash.toml"
    crash.write_text('[[effects]]\npython = "tests.crashing_effect:make"\nname = "crashing_gain"\nsearch = ["gain_db"]\n')
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("input,reference,chain,id,max_generations,popsize,excerpt_seconds,time_budget_s\n"
                        f"{files / 'in0.wav'},{files / 'ref.wav'},{crash},crashing,3,8,2,0\n"
                        + "".join(f"{files / f'in{i}.wav'},{files / 'ref.wav'},pedalboard-strip,good{i},3,8,2,0\n"
                                  for i in (1, 2)))
    jobs = load_manifest(manifest)
    summary = run_batch(jobs, tmp_path / "out", BatchSettings(workers=2, allow_python=True))
    status = {r.id: r for r in summary.jobs}
    assert status["good1"].status == status["good2"].status == "done"
    assert status["crashing"].status == "failed"
    assert "KilledWorker" in status["crashing"].error
    assert "the workers running it died (Dask allows 1 retry of that here)" in status["crashing"].error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "batch-summary.csv", "batch-summary.json", "good1.json", "good1.wav", "good2.json", "good2.wav"]
