"""`stito-reaper install|uninstall` on a temporary REAPER resource folder, through the real console script."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stito_server import reaper_install
from stito_server.reaper_install import ACTIONS, LIBRARY

from .reaper_emulator.fixtures import SCRIPTS, register_marker, running_reaper

register_marker()
USER_LINES = [
    'SCR 4 0 RS1234abcd "Custom: my own script.py" "/home/me/Scripts/mine.py"',
    "KEY 9 65 40044 0",
    "ACT 0 0 \"abc\" \"My custom action\" 40001 40002",
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("stito-reaper")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.reaper_assumption
def test_install_is_idempotent_keeps_user_lines_backs_up_and_uninstall_removes_exactly_ours(tmp_path):
    resource = tmp_path / "REAPER"
    resource.mkdir()
    kb = resource / "reaper-kb.ini"
    kb.write_text("\n".join(USER_LINES) + "\n")

    first = run_cli("install", "--resource-path", str(resource), "--force")
    assert first.returncode == 0, first.stderr
    lines = kb.read_text().splitlines()
    ours = [line for line in lines if line not in USER_LINES]
    scr = [line for line in ours if line.startswith("SCR ")]
    key = [line for line in ours if line.startswith("KEY ")]
    assert lines[:3] == USER_LINES  # every user line kept, in order
    assert len(scr) == 3 and len(key) == 1 and len(ours) == 4
    script_dir = resource / "Scripts" / "stito"
    assert scr[0] == f'SCR 4 0 RSstito_match_style "Custom: stito: Match Style" "{script_dir / "stito_match_style.py"}"'
    assert key == ["KEY 13 77 _RSstito_match_style 0"]
    backups = sorted(resource.glob("reaper-kb.ini.stito-backup-*"))
    assert len(backups) == 1 and backups[0].read_text().splitlines() == USER_LINES
    copied = {p.name for p in script_dir.iterdir()}
    assert copied == {a[0] for a in ACTIONS} | set(LIBRARY) | {"stito_paths.txt"}
    paths = (script_dir / "stito_paths.txt").read_text().splitlines()[1:]
    assert str(Path(reaper_install.__file__).resolve().parents[1]) == paths[0]

    second = run_cli("install", "--resource-path", str(resource), "--force")
    assert second.returncode == 0 and "already registers" in second.stdout
    assert kb.read_text().splitlines() == lines  # idempotent: the same file, no duplicate lines
    assert len(list(resource.glob("reaper-kb.ini.stito-backup-*"))) == 1  # nothing changed, no new backup

    kb.write_text(kb.read_text() + "KEY 1 70 40001 0\n")  # the user adds a line after installing
    gone = run_cli("uninstall", "--resource-path", str(resource), "--force")
    assert gone.returncode == 0, gone.stderr
    assert kb.read_text().splitlines() == USER_LINES + ["KEY 1 70 40001 0"]
    assert not script_dir.exists()


def test_install_refuses_while_reaper_runs_and_names_a_missing_resource_folder(tmp_path, monkeypatch):
    resource = tmp_path / "REAPER"
    resource.mkdir()
    monkeypatch.setattr(reaper_install, "reaper_running", lambda: True)
    assert reaper_install.main(["install", "--resource-path", str(resource)]) == 1
    assert not (resource / "reaper-kb.ini").exists() and not (resource / "Scripts").exists()
    missing = run_cli("install", "--resource-path", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "nope does not exist; give --resource-path" in missing.stderr


def test_reapack_index_lists_every_script_with_its_version():
    root = ET.parse(SCRIPTS / "index.xml").getroot()
    assert root.tag == "index" and root.get("version") == "1"
    packages = root.findall("./category/reapack")
    names = {p.get("name") for p in packages}
    assert names == {a[0] for a in ACTIONS} | {"capture_fixture.py"}
    shipped = set()
    for p in packages:
        assert p.get("type") == "script" and p.get("desc")
        (version,) = p.findall("version")
        header = (SCRIPTS / p.get("name")).read_text()
        assert f"# @version {version.get('name')}" in header and "# @description" in header
        for src in version.findall("source"):
            shipped.add(src.get("file"))
            assert (SCRIPTS / src.get("file")).exists() and src.text.endswith(src.get("file"))
    assert shipped == {a[0] for a in ACTIONS} | set(LIBRARY)


def test_installed_scripts_run_from_the_reaper_scripts_folder(tmp_path):
    resource = tmp_path / "REAPER"
    resource.mkdir()
    assert reaper_install.main(["install", "--resource-path", str(resource), "--force"]) == 0
    installed = resource / "Scripts" / "stito"
    wanted = (installed / "stito_paths.txt").read_text().splitlines()[1:]
    for reaper in running_reaper(tmp_path):
        reaper.resource_path = resource
        reaper.run_script(installed / "stito_match_style.py")
        assert reaper.errors == []
        assert "Select two to 4 items" in reaper.message_boxes[0][1]  # the empty project: nothing selected
        reaper.run_script(installed / "stito_cancel_match_style.py")
        assert reaper.message_boxes[1][1] == "No stito match is running."
    assert str(installed) in sys.path and all(folder in sys.path for folder in wanted)
    assert reaper_install.main(["uninstall", "--resource-path", str(resource), "--force"]) == 0
    assert not installed.exists()
