"""The product as a user gets it: a wheel in a fresh venv with the runtime dependencies only, and no lab loaded."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAB_ROOTS = ("bench", "training", "matchering", "sklearn")


def run(cmd: list, env: dict, timeout: float = 600) -> str:
    """Run a command in ``env``'s HOME, outside this checkout (so ``python -c`` cannot import it from '')."""
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=env["HOME"])
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wheel_in_a_fresh_venv_matches_serves_and_installs_the_reaper_scripts(tmp_path):
    # nothing of this checkout on the path; pip keeps the user's cache (torch from it), the venv's commands
    # get a home of their own
    build_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    build_env.setdefault("HOME", str(Path.home()))
    env = {**build_env, "HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    # built from a copy of the source, so the build leaves nothing in the checkout
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".plugins", ".git", "build", "out", "*.egg-info",
                                                                "__pycache__", ".pytest_cache", ".ruff_cache"))
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", source], build_env)
    (wheel,) = (tmp_path / "dist").glob("stito-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], build_env)
    py, bin_dir = venv / "bin" / "python", venv / "bin"
    # the CPU wheel first, as `make setup` does; --no-compile: Python compiles what is imported when it is, and
    # byte-compiling all of torch at install time doubles the install's time
    run([py, "-m", "pip", "install", "-q", "--no-compile", "torch==2.13.0"], build_env)
    run([py, "-m", "pip", "install", "-q", "--no-compile", f"{wheel}[reaper]"], build_env)
    # the runtime dependencies only: neither the benchmark baseline nor the training's clustering
    missing = run([py, "-c", "import importlib.util as u; print([u.find_spec(m) is None "
                             "for m in ('matchering', 'sklearn')])"], env)
    assert missing.strip() == "[True, True]"
    # the installed package, not this checkout, with its package data
    where = run([py, "-c", "import stito_server, stito_server.resources as r; print(stito_server.__file__); "
                           "print(sorted(p.name for p in r.package_dir('models').glob('*.pt')))"], env, timeout=60)
    assert str(venv) in where.splitlines()[0] and "afx-rep-" in where.splitlines()[1]

    # stito match on the generated example pair
    pair = tmp_path / "pair"
    run([py, "-c", "import sys; from pathlib import Path; from stito_server.audio import save_audio; "
                   "from stito_server.examples import phrase, styled; d = Path(sys.argv[1]); d.mkdir(); "
                   "save_audio(d / 'input.wav', phrase(6.0, 48000, seed=1), 48000); "
                   "save_audio(d / 'reference.wav', styled(phrase(6.0, 48000, seed=2), 48000), 48000)", pair], env)
    run([bin_dir / "stito", "match", pair / "input.wav", pair / "reference.wav", "--chain", "pedalboard-strip",
         "--out", pair / "out.wav", "--report", pair / "report.json", "--popsize", 4, "--max-generations", 2,
         "--time-budget", 0, "--quiet"], env)
    report = json.loads((pair / "report.json").read_text())
    assert report["search"]["evaluations"] > 0 and (pair / "out.wav").stat().st_size > 100_000
    assert report["similarity"]["after"] >= report["similarity"]["before"] - 1e-9

    # stito-server answers server_info, to the installed client
    key = tmp_path / "key"
    run([py, "-c", "import sys; from pathlib import Path; from stito_server.protocol import load_or_create_key; "
                   "load_or_create_key(Path(sys.argv[1]))", key], env)
    address = f"tcp://127.0.0.1:{free_port()}"
    server = subprocess.Popen([str(bin_dir / "stito-server"), "--bind", address, "--key-file", str(key), "--quiet"],
                              env=env, cwd=env["HOME"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = run([py, "-c", "import sys, json; from pathlib import Path; from stito_server.client import StitoClient; "
                              "from stito_server.protocol import load_or_create_key; "
                              "c = StitoClient(sys.argv[1], key=load_or_create_key(Path(sys.argv[2]), create=False), "
                              "timeout_s=30); print(json.dumps(c.server_info())); c.close()", address, key], env)
    finally:
        server.terminate()
        server.wait(timeout=30)
    info = json.loads(info)
    assert info["status"] == "ok" and "mfcc" in info["metrics"]

    # stito-reaper install copies the shipped scripts out of the installed package
    resource = tmp_path / "reaper"
    resource.mkdir()
    out = run([bin_dir / "stito-reaper", "install", "--resource-path", resource, "--force"], env)
    scripts = resource / "Scripts" / "stito"
    assert (scripts / "stito_match_style.py").read_bytes() == \
        (ROOT / "stito_server" / "reaper_scripts" / "stito_match_style.py").read_bytes()
    assert "copied" in out and "stito_match_style.py" in (resource / "reaper-kb.ini").read_text()


def loaded_after(argv: list[str], cwd: Path) -> list[str]:
    """Top-level lab modules in sys.modules after ``stito ARGV`` runs in a fresh interpreter."""
    code = ("import sys, json\nfrom stito_server.cli import main\n"
            "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
            "print(json.dumps([code, sorted({m.split('.')[0] for m in sys.modules} & set(%r))]))" % (LAB_ROOTS,))
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=cwd, timeout=300)
    status, lab = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == 0, done.stderr[-3000:]
    return lab


def test_no_lab_module_is_loaded_by_match_help_or_a_real_match(tmp_path):
    from stito_server.audio import save_audio
    from stito_server.examples import phrase, styled

    save_audio(tmp_path / "in.wav", phrase(5.0, 48000, seed=1), 48000)
    save_audio(tmp_path / "ref.wav", styled(phrase(5.0, 48000, seed=2), 48000), 48000)
    assert loaded_after(["match", "--help"], tmp_path) == []
    assert loaded_after(["match", "in.wav", "ref.wav", "--chain", "pedalboard-strip", "--out", "out.wav",
                         "--popsize", "4", "--max-generations", "2", "--time-budget", "0", "--quiet"], tmp_path) == []
    assert (tmp_path / "out.wav").exists()
    # the same probe sees the lab when a lab command runs
    assert "bench" in loaded_after(["bench", "--help"], tmp_path)
