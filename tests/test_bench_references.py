"""Task 4 with several references: `stito bench references --quick` end to end (real clips, real matches)."""

from __future__ import annotations

from .conftest import run_quick_bench


def test_quick_several_reference_bench_end_to_end(tmp_path, capsys):
    report, md, printed = run_quick_bench("references", tmp_path, capsys)
    case = report["cases"][0]
    assert len(case["sources"]) == 3 and len(set(case["sources"])) == 3 and case["input"] not in case["sources"]
    assert set(case["results"]) == {"input", "stito_1", "stito_2", "stito_3"}
    for r in report["results"].values():
        assert r["mrstft_db"] >= 0 and r["mrstft_db_interval"][0] <= r["mrstft_db"] <= r["mrstft_db_interval"][1]
    assert report["results"]["input"]["mrstft_db_vs_input"] == 0.0
    assert report["results"]["stito_1"]["mrstft_db_vs_stito_1"] == 0.0
    assert "| stito, 3 reference(s) |" in md and "wrote" in printed
    assert not (tmp_path / "references.partial.jsonl").exists()
