"""Task 4: measures and baselines on known answers, the style chains, and `stito bench transfer --quick` end to end."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from stito_server.audio import loudness_lufs
from bench import cli as bench_cli
from bench.common import ClipPool, peak_normalize
from bench.transfer import (QUICK, STYLE_NAMES, STYLES, crest_db, log_mel_distance, measures,
                                         method_label, method_names, rule_based, stereo_width, style_chain, styled)
from training.data import corpus
from stito_server.effects.builtin import BuiltinEffect
from stito_server.effects.vst3 import find_vst3

from .conftest import RATE, bench_parser, run_quick_bench


@pytest.fixture(scope="module")
def quick_root(request):
    return corpus.build_eval(quick=True, cache=request.config.cache.mkdir("stito-data"), log=lambda m: None)[0]


def _noise(seed: int, seconds: float = 2.0, channels: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((channels, int(RATE * seconds))).astype(np.float32) * 0.1


def _lowpass(x: np.ndarray, hz: float) -> np.ndarray:
    fx = BuiltinEffect("lowpass")
    fx.set_values({"cutoff_hz": hz})
    return fx.process(fx.process(x, RATE), RATE)


def test_measures_on_known_answers():
    x = _noise(0)
    zero = measures(x, x, RATE)
    assert zero == {"mrstft_db": 0.0, "logmel_db": 0.0, "loudness_error_lu": 0.0, "width_error": 0.0}
    louder = measures(x * np.float32(2.0), x, RATE)  # +6.02 dB: only the loudness error sees level
    assert louder["loudness_error_lu"] == pytest.approx(20 * np.log10(2), abs=0.01)
    assert louder["mrstft_db"] < 0.01 and louder["logmel_db"] < 0.01
    dark = _lowpass(x, 1000.0)
    assert log_mel_distance(dark, x, RATE) > 5 * log_mel_distance(_lowpass(x, 15000.0), x, RATE)
    mono = np.repeat(x[:1], 2, axis=0)
    assert stereo_width(mono) == 0.0 and stereo_width(x[:1]) == 0.0
    assert stereo_width(x) == pytest.approx(0.5, abs=0.01)  # independent channels
    assert stereo_width(np.stack([x[0], -x[0]])) == pytest.approx(1.0)
    assert measures(mono, x, RATE)["width_error"] == pytest.approx(0.5, abs=0.01)


def test_rule_based_moves_the_spectrum_and_level_to_the_reference():
    dry = _noise(1)
    reference = _lowpass(_noise(2), 3000.0) * np.float32(0.3)  # another noise, darker and quieter
    out = rule_based(dry, reference, RATE)
    assert out.shape == dry.shape and np.isfinite(out).all()
    assert loudness_lufs(out, RATE) == pytest.approx(loudness_lufs(reference, RATE), abs=0.1)
    oracle = _lowpass(dry, 3000.0)
    assert measures(out, oracle, RATE)["logmel_db"] < 0.5 * measures(dry, oracle, RATE)["logmel_db"]
    # a compressed reference (lower peak-to-loudness ratio) makes the rule compress
    speechy = _noise(3) * np.float32(np.repeat([1.0, 0.05], RATE)[None, :])
    comp = BuiltinEffect("compressor")
    comp.set_values({"threshold_db": -35.0, "ratio": 8.0, "attack_ms": 1.0})
    squashed = comp.process(_noise(4) * np.float32(np.repeat([1.0, 0.05], RATE)[None, :]), RATE)
    out = rule_based(speechy, squashed, RATE)
    assert abs(crest_db(out, RATE) - crest_db(squashed, RATE)) < abs(crest_db(speechy, RATE) - crest_db(squashed, RATE))


def test_styles_render_and_errors_name_the_styles():
    vst3 = find_vst3()
    needed = {e["vst3"] for s in STYLE_NAMES for e in STYLES[s]["effects"] if "vst3" in e}
    if not needed <= set(vst3):
        pytest.skip(f"VST3 plugins {sorted(needed - set(vst3))} not installed (run `make setup`)")
    bursts = np.float32(np.tile(np.repeat([1.0, 0.0], RATE // 8), 4)[None, :])  # 1 s: 125 ms on, 125 ms off
    x = peak_normalize(_noise(5, seconds=1.0) * bursts)
    for style in STYLE_NAMES:
        y = style_chain(style).process(x, RATE)
        assert y.shape == x.shape and np.isfinite(y).all() and np.abs(y).max() > 0.01, style
        assert measures(y, x, RATE)["logmel_db"] > 1.0, style  # every style changes more than the level
        # the case's reference and oracle go through the style, even one whose chain has nothing left to search
        # (small_room fixes all five reverb settings: its chain's length, and so its truth value, is 0)
        reference, oracle, _ = styled(style, x[:, ::-1].copy(), x, RATE)
        assert measures(oracle, x, RATE)["logmel_db"] > 1.0, style
        assert measures(reference, x[:, ::-1], RATE)["logmel_db"] > 1.0, style
    assert len(style_chain("small_room")) == 0
    assert styled(None, x[:, ::-1], x, RATE)[1] is x
    with pytest.raises(ValueError, match="valid: lowpass, highpass, small_room"):
        style_chain("telephone")
    assert method_names(["stats", "mfcc"]) == [
        "input", "rule_based", "matchering", "stito_builtin_stats", "stito_vst3_stats", "stito_builtin_stats_off",
        "stito_vst3_stats_off", "stito_builtin_mfcc_off", "stito_vst3_mfcc_off", "oracle"]
    assert method_label("stito_vst3_mir") == "stito, zam-strip, MIR"
    assert method_label("stito_builtin_mfcc_off") == "stito, pedalboard-strip, MFCC, restraint off"


def test_quick_transfer_end_to_end(tmp_path, quick_root, capsys):
    # one metric: the default search and the unconstrained one per chain on the cross-recording cases
    report, md, printed = run_quick_bench("transfer", tmp_path, capsys, "--metrics", "mfcc",
                                          "--cache", str(quick_root.parent))
    assert "| Matchering 2 |" in printed and "No-style control" in md and "bootstrap interval" in md
    assert "Command: `stito bench transfer --quick --metrics mfcc`" in md
    assert not (tmp_path / "transfer.partial.jsonl").exists()  # the resume file goes once the results are written
    methods = method_names(["mfcc"])
    assert report["methods"] == methods
    cross = [c for c in report["cases"] if c["variant"] == "cross"]
    assert [(c["style"], c["content"]) for c in cross] == list(QUICK["cells"])  # vocals: full data only
    assert {c["variant"] for c in report["cases"]} >= {"cross", "none"}
    for case in report["cases"]:
        r = case["results"]
        expected = set(methods) if case["variant"] == "cross" else set(methods) - {m for m in methods if "_off" in m}
        assert set(r) == expected
        assert r["oracle"]["mrstft_db"] == 0.0 and r["oracle"]["logmel_db"] == 0.0
        assert r["oracle"]["loudness_error_lu"] == 0.0 and r["oracle"]["width_error"] == 0.0
        for m in r:
            if m.startswith("stito_"):
                assert 0.0 <= r[m]["moved"] <= 1.0 and np.isfinite(r[m]["chain_level_db"])
                assert (r[m]["accepted"] is None) == m.endswith("_off")
        if case["variant"] == "none":  # the oracle is the input itself
            assert r["input"]["mrstft_db"] == 0.0 and case["style"] is None
    # re-derive the first case: the unchanged input's loudness error is its measured gap to the oracle
    case = cross[0]
    pool = ClipPool(quick_root, case["content"], quick=True)
    dry = peak_normalize(pool.stereo([e["id"] for e in pool.entries].index(case["input"])))
    oracle = style_chain(case["style"]).process(dry, RATE)
    gap = abs(loudness_lufs(dry, RATE) - loudness_lufs(oracle, RATE))
    assert case["results"]["input"]["loudness_error_lu"] == pytest.approx(gap, abs=1e-6)
    res = report["results"]["cross"]
    assert set(res) == {"all", "speech", "music", "lowpass", "delay", "family:builtin", "family:vst3"}
    assert res["all"]["oracle"]["n"] == len(QUICK["cells"])
    # the paired differences are means of per-case differences, with an interval around them
    d = [c["results"]["stito_builtin_mfcc"]["mrstft_db"] - c["results"]["input"]["mrstft_db"] for c in cross]
    r = res["all"]["stito_builtin_mfcc"]
    assert r["mrstft_db_vs_input"] == pytest.approx(np.mean(d))
    lo, hi = r["mrstft_db_vs_input_interval"]
    assert lo <= r["mrstft_db_vs_input"] <= hi


def test_an_interrupted_transfer_run_resumes(tmp_path, quick_root, monkeypatch):
    from bench import transfer

    # two no-style cases of one content type (the cheapest cases: no style, no unconstrained runs)
    monkeypatch.setitem(transfer.QUICK, "cells", (("lowpass", "speech"),))
    monkeypatch.setitem(transfer.QUICK, "variants", ("none",))
    monkeypatch.setitem(transfer.QUICK, "none_repeats", 2)
    calls = []
    real = transfer.run_case

    def counting(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt  # stopped during the second case
        return real(*args, **kwargs)

    monkeypatch.setattr(transfer, "run_case", counting)
    with pytest.raises(KeyboardInterrupt):
        transfer.run(True, tmp_path, metrics=("mfcc",), cache=quick_root.parent, log=lambda m: None)
    assert len((tmp_path / "transfer.partial.jsonl").read_text().splitlines()) == 2  # settings line + case 1
    calls.clear()
    monkeypatch.setattr(transfer, "run_case", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    report = transfer.run(True, tmp_path, metrics=("mfcc",), cache=quick_root.parent, log=lambda m: None)
    assert report["resumed_cases"] == 1 and len(calls) == 1 and len(report["cases"]) == 2
    assert not (tmp_path / "transfer.partial.jsonl").exists()


def test_bench_all_runs_every_task_in_order_with_the_same_flags(tmp_path, monkeypatch, capsys):
    calls = []

    def fake(task):
        def run(**kwargs):
            calls.append((task, kwargs))
            (tmp_path / f"{task}.md").write_text(f"# {task} table\n")
            return {"files": [str(tmp_path / f"{task}.md")], "wall_s": 0.0}
        return argparse.Namespace(run=run)

    modules = {path: fake(task) for task, path in bench_cli.TASKS.items()}
    monkeypatch.setattr(bench_cli.importlib, "import_module", lambda name: modules[name])
    args = bench_parser().parse_args(["bench", "all", "--quick", "--out", str(tmp_path), "--metrics", "mfcc",
                                      "--seed", "3"])
    assert bench_cli.run(args) == 0
    assert [t for t, _ in calls] == ["classification", "retrieval", "parameters", "transfer", "ranking",
                                       "references"]
    assert all(kw == {"quick": True, "out_dir": tmp_path, "metrics": ("mfcc",), "seed": 3, "cache": None}
               for _, kw in calls)
    out = capsys.readouterr().out
    assert (out.index("# retrieval table") < out.index("# parameters table") < out.index("# transfer table")
            < out.index("# ranking table"))
