"""`stito bench batch --quick`: every path (plain loop, LocalCluster 1 and 2, dask scheduler + workers) runs all jobs
and, with a fixed search, gives every job the same result on each path."""

import json

from bench.batch import run


def test_bench_batch_quick_runs_every_path_with_the_same_results(tmp_path):
    report = run(quick=True, out_dir=tmp_path, log=lambda line: None)
    rows = report["rows"]
    assert [r["name"] for r in rows] == ["plain loop", "LocalCluster 1 worker", "LocalCluster 2 workers",
                                         "dask scheduler + 2 dask worker"]
    assert all(r["done"] == r["jobs"] == 4 for r in rows)
    assert all(r["jobs_per_min"] > 0 and r["generations"] == 2.0 for r in rows)
    gains = {round(r["similarity_gain"], 9) for r in rows}
    assert len(gains) == 1  # no time budget: the same search on every path
    assert rows[1]["throughput_vs_local1"] == 1.0 and rows[1]["overhead_per_job_s"] is not None
    assert json.loads((tmp_path / "batch.json").read_text())["jobs"] == 4
    md = (tmp_path / "batch.md").read_text()
    assert "| LocalCluster 2 workers | 4/4 |" in md and "Overhead of the batch path" in md
