"""Task 3: estimation scores on known answers, one-parameter chains, and `stito bench parameters --quick` end to end."""

from __future__ import annotations

import numpy as np
import pytest

from bench.common import ClipPool
from bench.param_tasks import PARAM_TASKS
from bench.parameters import (QUICK, estimation_scores, make_chain, paired_interval, pearson, run_effect,
                                           summarize, task_by_key)
from training.data import corpus

from .conftest import RATE, run_quick_bench, vst3_path


@pytest.fixture(scope="module")
def quick_root(request):
    return corpus.build_eval(quick=True, cache=request.config.cache.mkdir("stito-data"), log=lambda m: None)[0]


def test_scores_on_known_answers():
    t = [0.2, 0.4, 0.6, 0.8]
    assert estimation_scores(t, t) == {"mse": 0.0, "rho": pytest.approx(1.0), "n": 4}
    flipped = estimation_scores(t, t[::-1])
    assert flipped["rho"] == pytest.approx(-1.0) and flipped["mse"] == pytest.approx((0.36 + 0.04) * 2 / 4)
    shifted = estimation_scores(t, [x + 0.1 for x in t])  # a constant bias costs MSE, not correlation
    assert shifted["mse"] == pytest.approx(0.01) and shifted["rho"] == pytest.approx(1.0)
    constant = estimation_scores(t, [0.5] * 4)  # no information: rho 0 by definition
    assert constant["rho"] == 0.0 and constant["mse"] == pytest.approx((0.09 + 0.01) * 2 / 4)
    assert pearson([0, 1, 2], [0, 2, 4.5]) == pytest.approx(np.corrcoef([0, 1, 2], [0, 2, 4.5])[0, 1])
    with pytest.raises(ValueError, match=r"same length >= 2, got \(3,\) and \(2,\)"):
        pearson([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        pearson([0, 1], [0, np.nan])


def test_summary_groups_split_seen_unseen_and_kinds():
    by_effect = {"lowpass_cutoff": {"mse": 0.1, "rho": 0.5}, "bitcrush_depth": {"mse": 0.3, "rho": -0.5},
                 "zam_comp_threshold": {"mse": 0.2, "rho": 1.0}}
    s = summarize(by_effect)
    assert s["all"] == {"mse": pytest.approx(0.2), "rho": pytest.approx(1 / 3), "effects": 3}
    assert s["unseen"] == {"mse": pytest.approx(0.3), "rho": pytest.approx(-0.5), "effects": 1}
    assert s["seen"]["effects"] == 2 and s["vst3"]["mse"] == pytest.approx(0.2)
    assert s["builtin"]["rho"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="valid: distortion_drive, compressor_threshold"):
        task_by_key("wah")


def test_task_chains_search_one_parameter_and_hold_the_fixed_values():
    vst3_path("ZamEQ2")
    task = task_by_key("zam_eq_high")
    chain = make_chain(task)
    assert len(chain) == 1 and chain.dim_names() == ["ZamEQ2.Boost/Cut H"]
    rows = {r["param"]: r for r in chain.describe()}
    for name, x in task.fixed.items():
        assert rows[name]["normalized"] == pytest.approx(x, abs=1e-6)
        assert 0.0 < rows[name]["value"] < 0.1  # just above 0 dB, where the plugin renders NaN
    noise = np.random.default_rng(0).standard_normal((2, RATE)).astype(np.float32) * 0.1
    for target in (0.2, 0.8):
        chain.set_vector(np.array([target]))
        assert np.isfinite(chain.process(noise, RATE)).all()
    comp = {r["param"]: r["value"] for r in make_chain(task_by_key("compressor_threshold")).describe()}
    assert comp["ratio"] == pytest.approx(4.0, rel=1e-3)
    assert {t.key for t in PARAM_TASKS} >= set(QUICK["tasks"])


def test_identical_content_recovers_the_target(quick_root):
    """With the reference made from the whole input clip itself, the search must land on the target."""
    pools = {c: ClipPool(quick_root, c, quick=True) for c in ("speech", "music")}
    for pool in pools.values():
        pool.other_recording = lambda i, rng, exclude=(): i
    cfg = {"targets": (0.3, 0.7), "runs": 1, "popsize": 6, "generations": 6, "excerpt_s": 5.0,  # the whole clip
           "sigma0": 0.3, "grid": 11}
    res = run_effect(task_by_key("lowpass_cutoff"), pools, ["mfcc"], cfg, seed=0, log=lambda m: None)["mfcc"]
    assert res["contents"] == ["speech", "music"]
    assert np.allclose(res["estimates"], res["targets"], atol=0.05)
    assert res["rho"] == pytest.approx(1.0) and res["mse"] < 0.0025
    # the metric alone, on a grid holding both targets, picks them exactly when B is A itself
    alone = res["grid"]["other recording"]
    assert alone["targets"] == [0.3, 0.7] and np.allclose(alone["estimates"], [0.3, 0.7], atol=1e-9)
    assert alone["mse"] < 1e-12 and alone["rho"] == pytest.approx(1.0)
    # the control draws B from another clip of A's recording: as many cases as recordings with a second clip
    assert res["grid"]["same recording"]["n"] == 2


def test_quick_parameters_end_to_end(tmp_path, quick_root, capsys):
    report, md, printed = run_quick_bench("parameters", tmp_path, capsys, "--cache", str(quick_root.parent))
    assert "| lowpass_cutoff |" in printed
    n = len(QUICK["targets"]) * QUICK["runs"]
    for metric in ("mfcc", "mir"):
        effects = report["results"][metric]["effects"]
        assert list(effects) == list(QUICK["tasks"])
        for r in effects.values():
            assert r["n"] == n and sorted(r["targets"]) == sorted(QUICK["targets"] * QUICK["runs"])
            assert all(0.0 <= e <= 1.0 for e in r["estimates"])
            assert r["mse"] == pytest.approx(np.mean((np.array(r["targets"]) - r["estimates"]) ** 2))
            assert -1.0 <= r["rho"] <= 1.0
        assert set(report["results"][metric]["summary"]) == {"all", "seen", "unseen", "builtin", "vst3"}
        for pairing in ("other recording", "same recording"):
            for r in effects.values():
                g = r["grid"][pairing]
                assert 1 <= g["n"] <= n and len(g["estimates"]) == g["n"]
                # every estimate is one of the grid's settings
                assert all(np.isclose(e * (QUICK["grid"] - 1), round(e * (QUICK["grid"] - 1))) for e in g["estimates"])
            assert report["results"][metric]["grid_summary"][pairing]["all"]["effects"] == len(QUICK["tasks"])
        # the task's cases are the ones the search ran on
        assert all(r["grid"]["other recording"]["targets"] == r["targets"] for r in effects.values())
    d = report["results"]["mir"]["vs_first"]
    assert d["mse_interval"][0] <= d["mse_interval"][1] and d["rho_interval"][0] <= d["rho_interval"][1]
    assert d["mse"] == pytest.approx(report["results"]["mir"]["summary"]["all"]["mse"]
                                     - report["results"]["mfcc"]["summary"]["all"]["mse"])
    assert "vs_first" not in report["results"]["mfcc"]
    assert "## The metric alone" in md and "| **mean, all** |" in md and "MIR - MFCC, mean over the effects" in md


def test_paired_interval_on_known_differences():
    """A metric that hits every target vs one that is always 0.2 off: the interval sits around the true gap."""
    targets = [0.2, 0.4, 0.6, 0.8] * 3
    exact = {"targets": targets, "estimates": list(targets), "mse": 0.0, "rho": 1.0}
    off = [t + 0.2 if t < 0.5 else t - 0.2 for t in targets]
    worse = {"targets": targets, "estimates": off, **estimation_scores(targets, off)}
    d = paired_interval({"a": exact, "b": exact}, {"a": exact, "b": worse}, seed=0)
    assert d["mse"] == pytest.approx(0.02) and d["rho"] == pytest.approx((worse["rho"] - 1.0) / 2)
    lo, hi = d["mse_interval"]
    assert lo == pytest.approx(0.02) and hi == pytest.approx(0.02)  # every case is 0.2 off: 0.04 / 2 effects
    assert d["rho_interval"][1] < 0.0  # the worse metric's rho is below 1 on every resample
    same = paired_interval({"a": exact}, {"a": exact}, seed=0)
    assert same["mse_interval"] == (0.0, 0.0) and same["rho_interval"] == (0.0, 0.0)
