"""BatchJob: one match of a batch, read from a manifest (CSV or TOML) or built from a folder of inputs."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from .. import __version__
from ..engine.options import MATCH_OPTIONS, option_spec, table_changes
from ..errors import StitoError
from ..metrics import DEFAULT_METRIC

PRESETS = ("fast", "paper")
JOB_KEYS = ("id", "input", "reference", "chain", "apply", "preset", "metric")  # the rest of a row or table: match options
REFERENCE_SEPARATOR = ";"  # several references in one CSV cell
AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3", ".w64", ".caf")


@dataclass(frozen=True)
class BatchJob:
    """One match of a batch: an input matched to its references through a chain, written as ``<id>.wav`` and
    ``<id>.json`` (its report) in the batch's output folder.

    Attributes:
        id: The job's name, unique in the batch (the input file's stem unless the manifest gives one).
        input: The input audio file (absolute path: workers read it from shared storage).
        references: One to three reference files (absolute paths).
        chain: A shipped chain name or a .toml chain spec (absolute path); for an ``apply`` job, the saved match.
        preset: "fast" (the default) or "paper".
        metric: The style metric (``stito match --metric``).
        options: Match options changed from the preset (``MatchOptions`` field names, cast).
        where: Where the job was given ("jobs.csv row 3"), for messages.
        problem: Why the job cannot run (a missing file, a bad option), found before the batch starts; None: none.
        apply: Render the saved match ``chain`` (``stito match --save-chain``) onto the input without searching, as
            ``stito apply`` does (no references, no options).
    """

    id: str
    input: str
    references: tuple[str, ...]
    chain: str
    preset: str = "fast"
    metric: str = DEFAULT_METRIC
    options: dict[str, Any] = field(default_factory=dict)
    where: str = ""
    problem: str | None = None
    apply: bool = False

    def fingerprint(self, hashes: dict[str, str] | None = None) -> str:
        """A hash of everything the job's output depends on: the bytes of its input, references and chain file, its
        settings and stito's version (sha256 hex). A finished job whose report holds it is skipped when run again.

        Args:
            hashes: Files' hashes by path, filled as they are read (a batch's shared reference is read once).
        """
        hashes = {} if hashes is None else hashes
        digest = hashlib.sha256()
        for path in (self.input, *self.references):
            digest.update(_file_hash(path, hashes).encode())
        chain_path = Path(self.chain)
        chain = _file_hash(self.chain, hashes) if chain_path.suffix == ".toml" or chain_path.is_file() else self.chain
        settings = {"chain": chain, "preset": self.preset, "metric": self.metric, "options": self.options,
                    "version": __version__}
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
        return digest.hexdigest()


def _file_hash(path: str, hashes: dict[str, str]) -> str:
    if path not in hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        hashes[path] = digest.hexdigest()
    return hashes[path]


# The command line's defaults of the match options (loudness "reference", ...): a job from a manifest read here gets
# the same settings, output and fingerprint as from `stito batch`, and as `stito match` with the same flags.
CLI_DEFAULTS = {s.name: s.cli_default for s in MATCH_OPTIONS if s.wire and s.cli_default is not None}


def load_manifest(path: str | Path, defaults: dict[str, Any] | None = None) -> list[BatchJob]:
    """The jobs of a manifest file.

    CSV: a header row, one job per row; columns ``input`` (required), ``reference`` (several separated by ';'),
    ``chain``, ``apply`` (a saved match to render instead of matching), ``id``, ``preset``, ``metric``, and any match
    option by name (``seed``, ``time_budget_s`` or
    ``time-budget``, ``amount``, ...); an empty cell takes the default. TOML: top-level keys give every job's
    defaults (``reference`` a string or a list, an ``[options]`` table), each ``[[job]]`` table one job (its own
    ``options`` table on top). Relative paths are relative to the manifest's folder.

    Args:
        path: A .csv or .toml manifest.
        defaults: Every job's defaults before the manifest's (``reference``, ``chain``, ``preset``, ``metric``,
            ``options``), e.g. from the command line.

    Raises:
        StitoError: an unreadable manifest, an unknown column or key, a job without input, reference or chain, or
            two jobs with the same id (named with their rows). A missing file or a bad option value is a problem of
            its job (``BatchJob.problem``), not of the batch.
    """
    p = Path(path)
    if not p.is_file():
        raise StitoError(f"manifest {p} not found" if not p.exists() else f"manifest {p} is not a file")
    base = p.resolve().parent
    defaults = dict(defaults or {})
    try:
        text = p.read_text(encoding="utf-8-sig")  # a spreadsheet's CSV may begin with a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise StitoError(f"cannot read manifest {p}: {exc}") from None
    if p.suffix.lower() == ".csv":
        entries = _csv_entries(text, p.name)
    elif p.suffix.lower() == ".toml":
        entries, top = _toml_entries(text, p.name)
        defaults = _merged(defaults, top, base, f"manifest {p.name}")
    else:
        raise StitoError(f"manifest {p}: give a .csv or .toml file (got {p.suffix or 'no extension'!r})")
    if not entries:
        raise StitoError(f"manifest {p} lists no jobs")
    return _unique([_job(_merged(defaults, entry, base, where), where) for where, entry in entries])


def folder_jobs(inputs: str | Path, defaults: dict[str, Any]) -> list[BatchJob]:
    """One job per audio file in a folder (not its sub-folders), sorted by name: ``stito batch --inputs DIR``.

    Raises:
        StitoError: the folder is missing or holds no audio file (the extensions looked for listed).
    """
    folder = Path(inputs)
    if not folder.is_dir():
        raise StitoError(f"--inputs {folder} is not a folder")
    references = {Path(r).resolve() for r in defaults.get("reference", [])}
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
                   and not f.name.startswith(".") and f.resolve() not in references)  # not a reference to itself
    if not files:
        raise StitoError(f"--inputs {folder} holds no audio file ({', '.join(AUDIO_SUFFIXES)}) but the references")
    return _unique([_job({**defaults, "input": str(f.resolve())}, str(f)) for f in files], fix="rename one")


def _csv_entries(text: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))  # a quoted cell may hold a line break
    rows = [(reader.line_num, r) for r in reader if any(cell.strip() for cell in r)]
    if not rows:
        return []
    header = [h.strip() for h in rows[0][1]]
    if "input" not in header:
        raise StitoError(f"manifest {name}: the header row has no 'input' column (it has: {', '.join(header)})")
    for key in header:
        if key not in JOB_KEYS:
            _check_option_key(key, f"manifest {name}: column")
    entries = []
    for number, row in rows[1:]:
        if len(row) > len(header):
            raise StitoError(f"manifest {name} row {number}: {len(row)} cells under a header of {len(header)}")
        entry: dict[str, Any] = {}
        options: dict[str, Any] = {}
        for key, cell in zip(header, row):
            if not cell.strip():
                continue
            if key == "reference":
                entry[key] = [r.strip() for r in cell.split(REFERENCE_SEPARATOR) if r.strip()]
            elif key in JOB_KEYS:
                entry[key] = cell.strip()
            else:
                options[key] = cell.strip()
        entry["options"] = options
        entries.append((f"{name} row {number}", entry))
    return entries


def _toml_entries(text: str, name: str) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StitoError(f"cannot read manifest {name}: {exc}") from None
    jobs = data.pop("job", [])
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise StitoError(f"manifest {name}: 'job' must be [[job]] tables")
    for where, table in [(f"manifest {name}", data)] + [(f"manifest {name} job {k + 1}", j) for k, j in enumerate(jobs)]:
        unknown = sorted(set(table) - set(JOB_KEYS) - {"options"})
        if unknown:
            raise StitoError(f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(JOB_KEYS)}, options "
                             "(a table of match options)")
        if not isinstance(table.get("options", {}), dict):
            raise StitoError(f"{where}: 'options' must be a table of match options")
        for key in table.get("options", {}):
            _check_option_key(key, f"{where}: option")
    return [(f"{name} job {k + 1}", j) for k, j in enumerate(jobs)], data


def _check_option_key(key: str, what: str) -> None:
    """A manifest's column or option key that is no job key must name a match option (else the batch stops)."""
    spec = option_spec(key)
    if spec is None or not spec.wire:
        raise StitoError(f"{what} {key!r} is neither a job key ({', '.join(JOB_KEYS)}) nor a match option ("
                         + ", ".join(s.name for s in MATCH_OPTIONS if s.wire) + ")")


def _merged(defaults: dict[str, Any], entry: dict[str, Any], base: Path, where: str) -> dict[str, Any]:
    """``entry`` over ``defaults`` (options merged key by key), its paths made absolute against ``base``."""
    out = {**defaults, **{k: v for k, v in entry.items() if k != "options"}}
    if out.get("apply") and not entry.get("apply") and ("reference" in entry or "chain" in entry):
        out.pop("apply")  # a job's own reference and chain win over a default saved match
    out["options"] = {**defaults.get("options", {}), **entry.get("options", {})}
    if entry.get("apply"):  # a saved match replaces the defaults' reference and chain
        if "reference" in entry or "chain" in entry:
            raise StitoError(f"{where}: a job gives apply (a saved match to render) or reference and chain (a match), "
                             "not both")
        out.pop("reference", None)
        out.pop("chain", None)
    for key in ("input", "chain", "apply"):
        if key in entry and isinstance(entry[key], str):
            out[key] = _absolute(entry[key], base, is_chain=key == "chain")
    if "reference" in entry:
        refs = entry["reference"]
        refs = [refs] if isinstance(refs, str) else refs
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise StitoError(f"{where}: 'reference' must be a file name or a list of file names")
        out["reference"] = [_absolute(r, base) for r in refs]
    return out


def _absolute(path: str, base: Path, is_chain: bool = False) -> str:
    """A path against the manifest's folder; a chain without an extension that is no file there is a shipped name."""
    p = Path(path).expanduser()
    if is_chain and not p.suffix and not (base / p).is_file():
        return path
    return str(p if p.is_absolute() else (base / p).resolve())


def _job(entry: dict[str, Any], where: str) -> BatchJob:
    if entry.get("apply"):
        return _apply_job(entry, where)
    for key in ("input", "reference", "chain"):
        if not entry.get(key):
            raise StitoError(f"{where}: no {key} (give it for the job, in the manifest's defaults, or on the command "
                             f"line as --{key})")
    for key in ("input", "chain", "preset", "metric", "id"):
        if key in entry and not isinstance(entry[key], str):
            raise StitoError(f"{where}: {key} must be text, got {entry[key]!r}")
    refs = tuple(entry["reference"])
    job = BatchJob(id=_id(entry, where), input=entry["input"], references=refs, chain=entry["chain"],
                   preset=entry.get("preset", "fast"), metric=entry.get("metric", DEFAULT_METRIC), where=where)
    return replace(job, **_checked(job, {**CLI_DEFAULTS, **entry.get("options", {})}))


def _id(entry: dict[str, Any], where: str) -> str:
    """The job's id (default: the input's file name without extension), a plain file name."""
    if "id" in entry and not isinstance(entry["id"], str):
        raise StitoError(f"{where}: id must be text, got {entry['id']!r}")
    job_id = entry.get("id") or Path(entry["input"]).stem
    if "/" in job_id or "\\" in job_id or job_id.startswith("."):
        raise StitoError(f"{where}: id {job_id!r} must be a plain file name (no '/' or '\\', not starting with '.')")
    return job_id


def _apply_job(entry: dict[str, Any], where: str) -> BatchJob:
    """A job that renders a saved match onto its input (``stito apply``'s work, on the batch path)."""
    if not isinstance(entry.get("input"), str) or not entry["input"]:
        raise StitoError(f"{where}: no input (give it for the job)")
    if not isinstance(entry["apply"], str):
        raise StitoError(f"{where}: apply must be a file name, got {entry['apply']!r}")
    job = BatchJob(id=_id(entry, where), input=entry["input"], references=(), chain=entry["apply"], where=where,
                   apply=True)
    missing = [f"{role} {path} not found" for role, path in (("input", job.input), ("saved match", job.chain))
               if not Path(path).is_file()]
    return replace(job, problem=missing[0]) if missing else job


def _checked(job: BatchJob, options: dict[str, Any]) -> dict[str, Any]:
    """The job's cast options, or its problem: what can be known before any worker starts."""
    from ..engine.options import MatchOptions

    try:
        if job.preset not in PRESETS:
            raise StitoError(f"unknown preset {job.preset!r}; valid: {', '.join(PRESETS)}")
        changes = table_changes(options, job.where)
        MatchOptions.preset(job.preset, **changes)  # a bad value (an amount above 1) is found here
        if len(job.references) > 3:
            raise StitoError(f"{len(job.references)} references; a match takes one to three")
        for role, path in [("input", job.input)] + [("reference", r) for r in job.references]:
            if not Path(path).is_file():
                raise StitoError(f"{role} {path} not found")
        chain = Path(job.chain)
        if (chain.suffix or chain.is_absolute()) and not chain.is_file():
            raise StitoError(f"chain file {job.chain} not found")
    except StitoError as exc:
        return {"options": {}, "problem": " ".join(str(exc).split())}
    return {"options": changes}


def _unique(jobs: Iterable[BatchJob], fix: str = "give one an 'id'") -> list[BatchJob]:
    seen: dict[str, BatchJob] = {}
    for job in jobs:
        if job.id in seen:
            raise StitoError(f"{seen[job.id].where} and {job.where} have the same id {job.id!r} (their outputs would "
                             f"share a name): {fix}")
        seen[job.id] = job
    return list(seen.values())
