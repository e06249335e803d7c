"""BatchSummary: what became of each job of a batch, written as CSV and JSON beside the outputs."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..audio import save_atomically
from .manifest import BatchJob

STATUSES = ("done", "skipped", "failed", "interrupted")


@dataclass(frozen=True)
class JobResult:
    """One job's outcome.

    Attributes:
        id: The job's id.
        status: "done" (matched and written now), "skipped" (written by an earlier run with the same inputs and
            settings), "failed" (``error`` says why; nothing written for it), "interrupted" (the batch stopped first).
        input: The input file.
        references: The reference files.
        chain: The chain.
        output: The output audio file ("" when none).
        report: The job's JSON report ("" when none).
        similarity_start: Similarity to the reference(s) at the chain's starting settings.
        similarity_matched: Similarity at the matched settings.
        changed: Parameters the match changed.
        wall_s: Seconds of the job on its worker (the match and the writing), in this run.
        worker: The Dask worker that ran it.
        error: Why it failed.
    """

    id: str
    status: str
    input: str
    references: list[str]
    chain: str
    output: str = ""
    report: str = ""
    similarity_start: float | None = None
    similarity_matched: float | None = None
    changed: int | None = None
    wall_s: float | None = None
    worker: str = ""
    error: str = ""

    @classmethod
    def of(cls, job: BatchJob, status: str, **values: Any) -> "JobResult":
        """A result that has no match (failed, interrupted)."""
        return cls(id=job.id, status=status, input=job.input, references=list(job.references), chain=job.chain,
                   **values)

    @classmethod
    def finished(cls, job: BatchJob, status: str, report: dict[str, Any] | None, output: Path, report_path: Path,
                 **values: Any) -> "JobResult":
        """A result with a match, its figures read from the match's report."""
        report = report or {}
        similarity = report.get("similarity") or {}
        return cls.of(job, status, output=str(output), report=str(report_path),
                      similarity_start=similarity.get("before"), similarity_matched=similarity.get("after"),
                      changed=sum(1 for p in report.get("parameters", []) if p.get("changed")), **values)


@dataclass
class BatchSummary:
    """Every job's result, in the order they settled, with the batch's totals.

    Attributes:
        jobs: The results.
        total: Jobs in the batch.
        wall_s: Seconds of the whole run (cluster start included).
        workers: Per Dask worker, each chain's check ("ok" or what is missing).
        interrupted: The run was stopped (Ctrl-C) before every job settled.
    """

    jobs: list[JobResult] = field(default_factory=list)
    total: int = 0
    wall_s: float = 0.0
    workers: dict[str, dict[str, str]] = field(default_factory=dict)
    interrupted: bool = False

    def add(self, result: JobResult) -> None:
        """Record one settled job."""
        self.jobs.append(result)

    def counts(self) -> dict[str, int]:
        """Jobs per status."""
        return {s: sum(1 for j in self.jobs if j.status == s) for s in STATUSES}

    def line(self) -> str:
        """One line: the counts and the wall time."""
        c = self.counts()
        text = ", ".join(f"{n} {s}" for s, n in c.items() if n)
        return f"{len(self.jobs)} of {self.total} jobs: {text} in {self.wall_s:.1f} s"

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return {"total": self.total, "counts": self.counts(), "wall_s": self.wall_s, "interrupted": self.interrupted,
                "workers": self.workers, "jobs": [asdict(j) for j in self.jobs]}

    def write(self, csv_path: Path, json_path: Path) -> None:
        """Write the summary as CSV (a row per job; references joined by ';') and JSON, each atomically."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        names = [f.name for f in fields(JobResult)]
        writer.writerow(names)
        for job in self.jobs:
            row = asdict(job)
            row["references"] = ";".join(row["references"])
            writer.writerow(["" if row[n] is None else row[n] for n in names])
        text = buffer.getvalue()
        save_atomically(csv_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        data = json.dumps(self.to_dict(), indent=2)
        save_atomically(json_path, lambda tmp: Path(tmp).write_text(data, encoding="utf-8"))
