"""Fetch Debian packages' .deb files with apt (nothing installed) and unpack them into the data cache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from stito_server.errors import StitoError

DEFAULT_CACHE = Path("~/.cache/stito/data")
UNPACKED_MARK = ".unpacked"


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data cache folder: ``explicit``, else ``$STITO_DATA_DIR``, else ``~/.cache/stito/data``."""
    raw = explicit or os.environ.get("STITO_DATA_DIR") or DEFAULT_CACHE
    return Path(raw).expanduser().resolve()


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _system_debian_source() -> tuple[str, str]:
    """(mirror URI, suite) of the system's main Debian archive, read from its own apt sources."""
    text = ""
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        text += f.read_text(errors="replace") + "\n\n"
    for stanza in re.split(r"\n\s*\n", text):
        uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
        suites = re.search(r"^Suites:\s*(\S+)", stanza, re.M)
        if uris and suites and "security" not in uris.group(1) and "debian" in uris.group(1):
            return uris.group(1), suites.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1] and "debian" in parts[1]:
                return parts[1], parts[2]
    raise StitoError("could not find a Debian archive in /etc/apt/sources.list(.d); cannot fetch audio packages")


def _private_apt_options(state: Path) -> list[str]:
    """apt options for a separate apt state under ``state`` naming the system's Debian mirror and suite."""
    mirror, suite = _system_debian_source()
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(f"deb {mirror} {suite} main\n")
    return ["-o", f"Dir::Etc::sourcelist={state / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "APT::Get::List-Cleanup=0", "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root"]


def download_debs(packages: list[str], cache: Path, log=print) -> dict[str, Path]:
    """Download the packages' .deb files into ``cache/debs`` (skipping ones already there).

    Uses the system's apt sources; if the system's package lists do not know a package, a separate apt
    state under ``cache/apt`` (same mirror and suite) is updated and used instead.

    Args:
        packages: Debian package names.
        cache: Data cache folder.
        log: Progress printer.

    Returns:
        Package name -> .deb path.

    Raises:
        StitoError: apt is missing or a package cannot be downloaded (apt's message included).
    """
    if shutil.which("apt-get") is None:
        raise StitoError("apt-get not found: `stito data` fetches audio from Debian packages and needs apt")
    debs_dir = cache / "debs"
    debs_dir.mkdir(parents=True, exist_ok=True)
    found = {p: _find_deb(debs_dir, p) for p in packages}
    missing = [p for p, d in found.items() if d is None]
    if missing:
        log(f"downloading {len(missing)} package(s): {', '.join(missing)}")
        with tempfile.TemporaryDirectory(dir=debs_dir, prefix=".partial-") as tmp:
            res = _run(["apt-get", "-qq", "download", *missing], cwd=Path(tmp))
            if res.returncode != 0:
                opts = _private_apt_options(cache / "apt")
                log("system apt lists lack some packages; updating a private apt state")
                upd = _run(["apt-get", *opts, "-qq", "update"])
                if upd.returncode != 0:
                    raise StitoError(f"apt-get update failed: {upd.stderr.strip()[-500:]}")
                res = _run(["apt-get", *opts, "-qq", "download", *missing], cwd=Path(tmp))
                if res.returncode != 0:
                    raise StitoError(f"apt-get download {' '.join(missing)} failed: {res.stderr.strip()[-500:]}")
            for deb in Path(tmp).glob("*.deb"):
                os.replace(deb, debs_dir / deb.name)
        found = {p: _find_deb(debs_dir, p) for p in packages}
        still = [p for p, d in found.items() if d is None]
        if still:
            raise StitoError(f"apt-get download gave no .deb for: {', '.join(still)}")
    return found  # type: ignore[return-value]


def _find_deb(debs_dir: Path, package: str) -> Path | None:
    hits = sorted(debs_dir.glob(f"{package}_*.deb"))
    return hits[-1] if hits else None


def deb_version(deb: Path) -> str:
    """Package version from a .deb file name ``NAME_VERSION_ARCH.deb`` (``%3a`` decoded to ``:``)."""
    return deb.name.split("_")[1].replace("%3a", ":")


def unpack(package: str, deb: Path, cache: Path) -> Path:
    """Unpack a .deb with ``dpkg-deb -x`` into ``cache/pkgs/PACKAGE`` (once; a marker records completion).

    Returns:
        The folder holding the package's file tree.
    """
    dest = cache / "pkgs" / package
    mark = dest / UNPACKED_MARK
    if mark.exists() and mark.read_text().strip() == deb.name:
        return dest
    if shutil.which("dpkg-deb") is None:
        raise StitoError("dpkg-deb not found: it is needed to unpack the audio packages")
    tmp = cache / "pkgs" / f".{package}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    res = _run(["dpkg-deb", "-x", str(deb), str(tmp)])
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StitoError(f"dpkg-deb -x {deb.name} failed: {res.stderr.strip()[-500:]}")
    (tmp / UNPACKED_MARK).write_text(deb.name + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def fetch_packages(packages: list[str], cache: Path, log=print) -> dict[str, tuple[Path, str]]:
    """Download and unpack packages.

    Returns:
        Package name -> (unpacked folder, version).
    """
    debs = download_debs(packages, cache, log)
    return {p: (unpack(p, debs[p], cache), deb_version(debs[p])) for p in packages}
