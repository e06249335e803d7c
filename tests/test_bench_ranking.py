"""Task 5 (setting ranking): the quick run end to end, and a known answer when B is A's own recording."""

from __future__ import annotations

import numpy as np
import pytest

from bench import setting_ranking
from bench.common import ClipPool
from bench.setting_ranking import GROUPS, NEGATIVES, QUICK, VARIANTS

from .conftest import run_quick_bench


def test_quick_ranking_end_to_end(tmp_path, request, capsys):
    cache = request.config.cache.mkdir("stito-data")  # the same quick data as tests/test_data.py
    report, md, printed = run_quick_bench("ranking", tmp_path, capsys, "--cache", str(cache), "--metrics", "mfcc")
    assert "| MFCC |" in printed
    assert "Command: `stito bench ranking --quick --metrics mfcc`" in md
    assert report["chance"] == 1 / (NEGATIVES + 2)
    for variant in VARIANTS:
        r = report["results"]["mfcc"][variant]
        assert all(r[g]["n"] == QUICK["cases"] for g in GROUPS) and r["all"]["n"] == len(GROUPS) * QUICK["cases"]
        assert all(0.0 <= r[g][k] <= 1.0 for g in (*GROUPS, "all") for k in ("accuracy", "win_rate", "beats_dry"))
        assert f"## B from the {variant}: win rate over nearby settings" in (tmp_path / "ranking.md").read_text()


def test_when_b_is_the_reference_recording_the_positive_is_its_twin_and_wins(tmp_path, request, monkeypatch):
    """Known answer: with B drawn from A's own clip, the positive is the reference rendered again."""
    cache = request.config.cache.mkdir("stito-data")
    monkeypatch.setattr(ClipPool, "other_recording", lambda self, i, rng, exclude=frozenset(): i)
    report = setting_ranking.run(quick=True, out_dir=tmp_path, metrics=("mfcc", "stats"), cases=3, cache=cache,
                                 log=lambda m: None)
    # the stats ceiling: the only recording gap left is Dragonfly's run-to-run noise, far below the settings' moves
    c = report["ceiling"]["stats"]["other recording"]
    assert c["n"] == 3 * len(GROUPS) and c["cases_above"] >= 0.75 and c["ratio"] > 10
    assert "ceiling lies" in (tmp_path / "ranking.md").read_text()
    r = report["results"]["mfcc"]["other recording"]
    # deterministic renders: the positive is the reference itself (cosine 1); Dragonfly reverbs (in the
    # seen effects and zam-strip) render a little differently each time, so those need only win mostly
    assert r["pedalboard-strip"]["accuracy"] == 1.0 and r["pedalboard-strip"]["gap"] > 0
    assert r["pedalboard-strip"]["win_rate"] == 1.0 and r["pedalboard-strip"]["beats_dry"] == 1.0
    assert r["all"]["accuracy"] >= 0.75 and r["all"]["gap"] > 0
    assert np.isfinite([r[g]["gap"] for g in GROUPS]).all()


def test_same_recording_draws_another_clip_of_the_recording_or_none(tmp_path, request):
    cache = request.config.cache.mkdir("stito-data")
    from training.data.cli import build_eval

    root, _ = build_eval(quick=True, cache=cache, log=lambda m: None)
    pool = ClipPool(root, "music", quick=True)
    rng = np.random.default_rng(0)
    for i in range(len(pool)):
        j = pool.same_recording(i, rng)
        siblings = np.flatnonzero(pool.recordings == pool.recordings[i])
        if siblings.size > 1:
            assert j != i and pool.recordings[j] == pool.recordings[i]
        else:
            assert j is None
        k = pool.other_recording(i, rng)
        assert pool.recordings[k] != pool.recordings[i]


def test_ceiling_compares_setting_moves_with_recording_gaps():
    from bench.setting_ranking import ceiling
    from stito_server.metrics.stats import descriptor_names

    dims = len(descriptor_names())
    setting, recording = np.full(dims, 0.1), np.full(dims, 0.4)
    setting[3], recording[3] = 2.0, 0.5  # one descriptor where the setting stands out of the content noise
    c = ceiling([(setting, recording), (setting * 4, recording)], descriptor_names())
    assert c["n"] == 2 and c["descriptors"][0]["name"] == descriptor_names()[3]
    assert c["descriptors"][0]["ratio"] == pytest.approx((2.0 + 8.0) / 2 / 0.5)
    assert c["ratio"] == pytest.approx((setting.sum() * 5) / (recording.sum() * 2))
    assert c["cases_above"] == 0.5  # the second case's moves (4x) exceed its gap, the first's do not

