"""Task 4: measures and baselines on known answers, the style chains, and `stito bench transfer --quick` end to end."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from stito_server.audio import loudness_lufs
from bench import cli as bench_cli
from bench.common import ClipPool, peak_normalize
from bench.transfer import (QUICK, STYLE_NAMES, STYLES, crest_db, log_mel_distance, measures,
                                         method_label, method_names, rule_based, stereo_width, style_chain)
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
    with pytest.raises(ValueError, match="valid: lowpass, highpass, small_room"):
        style_chain("telephone")
    assert method_names(["mfcc"]) == ["input", "random", "rule_based", "matchering", "stito_builtin_mfcc",
                                      "stito_vst3_mfcc", "oracle"]
    assert method_label("stito_vst3_mir") == "stito, zam-strip, MIR"


def test_quick_transfer_end_to_end(tmp_path, quick_root, capsys):
    # one metric: two stito runs per case, not four
    report, md, printed = run_quick_bench("transfer", tmp_path, capsys, "--metrics", "mfcc",
                                          "--cache", str(quick_root.parent))
    assert "| Matchering 2 |" in printed
    assert "Command: `stito bench transfer --quick --metrics mfcc`" in md
    methods = method_names(["mfcc"])
    assert report["methods"] == methods
    assert [(c["style"], c["content"]) for c in report["cases"]] == list(QUICK["cells"])  # vocals: full data only
    for case in report["cases"]:
        r = case["results"]
        assert set(r) == set(methods)
        assert r["oracle"]["mrstft_db"] == 0.0 and r["oracle"]["logmel_db"] == 0.0
        assert r["oracle"]["loudness_error_lu"] == 0.0 and r["oracle"]["width_error"] == 0.0
        for m in methods[:-1]:
            assert r[m]["logmel_db"] > 0.0 and r[m]["wall_s"] >= 0.0
            assert all(-1.0 <= s <= 1.0 for s in r[m]["similarity"].values())
    # re-derive the first case: the unchanged input's loudness error is its measured gap to the oracle
    case = report["cases"][0]
    pool = ClipPool(quick_root, case["content"], quick=True)
    dry = peak_normalize(pool.stereo([e["id"] for e in pool.entries].index(case["input"])))
    oracle = style_chain(case["style"]).process(dry, RATE)
    gap = abs(loudness_lufs(dry, RATE) - loudness_lufs(oracle, RATE))
    assert case["results"]["input"]["loudness_error_lu"] == pytest.approx(gap, abs=1e-6)
    assert set(report["results"]) == {"all", "speech", "music", "lowpass", "delay"}
    assert report["results"]["all"]["oracle"]["n"] == len(QUICK["cells"])


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
    assert [t for t, _ in calls] == ["classification", "retrieval", "parameters", "transfer", "ranking"]
    assert all(kw == {"quick": True, "out_dir": tmp_path, "metrics": ("mfcc",), "seed": 3, "cache": None}
               for _, kw in calls)
    out = capsys.readouterr().out
    assert (out.index("# retrieval table") < out.index("# parameters table") < out.index("# transfer table")
            < out.index("# ranking table"))
