"""MFCC metric behaviour and the CMA-ES loop's seeding, quietness and stopping."""

import os
from dataclasses import replace

import numpy as np
import pytest

from stito_server.effects.builtin import BuiltinEffect
from stito_server.metrics import Embedding, get_metric
from stito_server.engine.optimize import OptimizerOptions, optimize
from stito_server.errors import StitoError

from .conftest import RATE


def test_embedding_shapes_norms_and_level_invariance(dry_a):
    m = get_metric("mfcc")
    emb = m.embed(np.stack([dry_a, 0.1 * dry_a]), RATE)
    assert emb.mid.shape == (2, 50) and emb.side.shape == (2, 50)
    assert np.linalg.norm(emb.mid, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    sims = m.similarity(emb, emb.mean())
    assert sims == pytest.approx([1.0, 1.0], abs=1e-5)  # peak-normalised: a level change alone is not style


def test_similarity_falls_with_processing_strength(dry_a):
    m = get_metric("mfcc")
    ref = m.embed(dry_a[None], RATE)
    sims = []
    for drive in (0.0, 10.0, 25.0, 40.0):
        fx = BuiltinEffect("distortion")
        fx.set_values({"drive_db": drive})
        sims.append(float(m.similarity(m.embed(fx.process(dry_a, RATE)[None], RATE), ref)[0]))
    assert sims[0] == pytest.approx(1.0, abs=1e-3)  # tanh at 0 dB drive still rounds peaks slightly
    assert all(a > b for a, b in zip(sims, sims[1:])), sims


def test_unknown_metric_lists_valid():
    with pytest.raises(StitoError, match=r"unknown metric 'mfc'; valid: mfcc"):
        get_metric("mfc")


def test_blend_scores_the_mean_of_its_parts(dry_a, dry_b):
    blend, afx, mfcc = get_metric("afx+mfcc"), get_metric("afx"), get_metric("mfcc")
    assert blend.name == "afx+mfcc" and blend.sample_rate == 48000
    fx = BuiltinEffect("distortion")
    fx.set_values({"drive_db": 20.0})
    batch = np.stack([dry_a, fx.process(dry_a, RATE), dry_b])
    ref = dry_b[None]
    sims = {}
    for name, m in (("blend", blend), ("afx", afx), ("mfcc", mfcc)):
        emb = m.embed(batch, RATE)
        sims[name] = m.similarity(emb, m.embed(ref, RATE))
        assert np.linalg.norm(emb.mid, axis=1) == pytest.approx([1.0] * 3, abs=1e-5)
    assert sims["blend"] == pytest.approx((sims["afx"] + sims["mfcc"]) / 2, abs=1e-5)
    assert sims["blend"][2] == pytest.approx(1.0, abs=1e-5)  # the reference itself
    assert get_metric("mfcc+mir").embed(batch, RATE).mid.shape[1] == 50 + get_metric("mir").embed(ref, RATE).mid.shape[1]
    with pytest.raises(StitoError, match=r"metric 'mfcc\+mfcc': a blend joins different metric names"):
        get_metric("mfcc+mfcc")
    with pytest.raises(StitoError, match=r"unknown metric 'mfc'; valid: mfcc"):
        get_metric("afx+mfc")


def sphere(target):
    return lambda xs: -np.sum((xs - target) ** 2, axis=1)


def test_optimizer_finds_optimum_seeded_quiet_and_no_files(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.random.seed(123)
    global_state = np.random.get_state()[1].copy()
    target = np.array([0.2, 0.7, 0.9])
    opts = OptimizerOptions(popsize=16, max_generations=30, sigma0=0.3, seed=7)
    r1 = optimize(sphere(target), np.full(3, 0.5), opts)
    r2 = optimize(sphere(target), np.full(3, 0.5), opts)
    assert np.abs(r1.mean_x - target).max() < 0.02
    assert np.array_equal(r1.best_x, r2.best_x)
    assert os.listdir(tmp_path) == []  # no outcmaes/ or signals file
    assert capsys.readouterr().out == ""
    assert np.array_equal(np.random.get_state()[1], global_state)  # numpy's global RNG untouched


def test_mean_is_the_setting_of_the_folded_genotype():
    # pycma folds its unbounded genotype into [0, 1]; the optimum sits at a bound, where the genotype mean
    # wanders outside the box (clipping it instead of folding put coordinates at the wrong end).
    # Clipped, seeds 0-3 gave mean errors 0.3 / 0.001 / 0.7 / 0.1 (e.g. [0, 0, 1] for [0, 0.7, 0.9]).
    target = np.array([0.0, 0.7, 0.9])
    for seed in range(4):
        r = optimize(sphere(target), np.full(3, 0.05), OptimizerOptions(popsize=10, max_generations=30, sigma0=0.3,
                                                                        patience=30, seed=seed))
        assert np.abs(r.mean_x - target).max() < 0.03
        assert np.abs(r.mean_x - r.best_x).max() < 0.05


def test_plateau_stop_and_failures_counted():
    def flat(xs):
        out = np.zeros(len(xs))
        out[0] = np.nan  # one failed render per generation
        return out
    r = optimize(flat, np.full(2, 0.5), OptimizerOptions(popsize=8, max_generations=25, patience=3, seed=0))
    assert r.stop_reason == "plateau" and len(r.trajectory) == 4
    assert r.failures == 4 and r.evaluations == 32


def test_time_budget_ends_the_search_and_splits_it_between_stages():
    import time

    from stito_server.engine.optimize import Stage

    def slow(xs):  # a generation takes at least 0.1 s, as a render would
        time.sleep(0.1)
        return -np.sum((xs - 0.3) ** 2, axis=1)

    r = optimize(slow, np.full(3, 0.5), OptimizerOptions(popsize=4, max_generations=50, seed=0, time_budget_s=0.45))
    # one more 0.1 s generation after the 4th would end past 0.45 s (fewer when the machine is busy)
    assert r.stop_reason == "time_budget" and 1 <= len(r.trajectory) <= 4
    staged = [Stage(slow, 10, "coarse"), Stage(slow, 10, "fine")]
    r = optimize(staged, np.full(3, 0.5), OptimizerOptions(popsize=4, max_generations=20, seed=0, time_budget_s=0.8))
    stages = [row["stage"] for row in r.trajectory]
    # the coarse stage hands over once its half of the budget (0.4 s) would be overrun: at most 3 generations
    assert 1 <= stages.count("coarse") <= 3 and stages.count("fine") >= 1 and stages[-1] == "fine"
    assert r.stop_reason == "time_budget" and len(stages) <= 7
    # a fine generation planned 3x as costly: the coarse stage's share is 10 / (10 + 30) of 1 s
    staged = [Stage(slow, 10, "coarse", cost=1.0), Stage(slow, 10, "fine", cost=3.0)]
    r = optimize(staged, np.full(3, 0.5), OptimizerOptions(popsize=4, max_generations=20, seed=0, time_budget_s=1.0))
    stages = [row["stage"] for row in r.trajectory]
    assert 1 <= stages.count("coarse") <= 2 and stages.count("fine") >= 1
    # a floor of 8 generations, split 4 + 4 between the stages, outlasts the budget
    staged = [Stage(slow, 8, "coarse"), Stage(slow, 8, "fine")]
    r = optimize(staged, np.full(3, 0.5), OptimizerOptions(popsize=4, max_generations=16, seed=0, time_budget_s=0.2,
                                                           min_generations=8))
    assert [row["stage"] for row in r.trajectory] == ["coarse"] * 4 + ["fine"] * 4 and r.stop_reason == "time_budget"
    with pytest.raises(ValueError, match="min_generations must be at least 1, got 0"):
        OptimizerOptions(min_generations=0)
    with pytest.raises(ValueError, match="time_budget_s must be above 0 seconds"):
        OptimizerOptions(time_budget_s=0)


def test_one_dimensional_search():
    r = optimize(sphere(np.array([0.8])), np.array([0.5]), OptimizerOptions(popsize=8, max_generations=15, seed=1))
    assert r.mean_x.shape == (1,) and abs(r.mean_x[0] - 0.8) < 0.05


def test_log_mel_numpy_and_torch_agree_and_mfcc_never_imports_torch(dry_a):
    from stito_server.metrics.logmel import log_mel, log_mel_torch, mel_filterbank

    fb = mel_filterbank(RATE, 2048, 128, 20.0, 20000.0)
    for signals in (dry_a[:, : RATE * 2], dry_a[:1, :1500]):  # ordinary, and shorter than one frame
        a, b = log_mel(signals, fb, 2048, 1024), log_mel_torch(signals, fb, 2048, 1024)
        assert a.shape == b.shape and a.dtype == np.float32
        assert np.abs(a - b).max() < 1e-4
    assert log_mel(dry_a[:, : RATE * 2], fb, 2048, 1024).shape == (2, (RATE * 2 - 2048) // 1024 + 1, 128)
    # the MFCC metric (the default) runs without torch: importing it costs ~1.3 s of every match
    code = ("import sys, numpy as np; from stito_server.metrics import get_metric; "
            "e = get_metric('mfcc').embed(np.random.default_rng(0).standard_normal((1, 2, 96000), dtype=np.float32), "
            "48000); print(e.mid.shape[-1], 'torch' in sys.modules)")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["50", "False"]


def test_stats_whitening_makes_between_recording_gaps_white_and_counts_shared_directions_once(tmp_path):
    import json

    from stito_server.metrics.stats import StatsMetric
    from stito_server.resources import package_dir
    from training.stats_prior import nuisance_whitening

    rng = np.random.default_rng(0)
    shipped = json.loads((package_dir("models") / "stats-prior.json").read_text())
    dims = len(shipped["scale"])
    scale = np.asarray(shipped["scale"])
    # two content types whose descriptors share one strong common direction (a darker recording lowers every band)
    common = rng.normal(size=dims)
    types = [rng.normal(size=(400, dims)) * scale + rng.normal(size=(400, 1)) * 3 * common * scale for _ in range(2)]
    w = nuisance_whitening([t - t.mean(axis=0) for t in types], scale)
    z = np.concatenate(types) @ w.T
    cov = np.cov(z - z.mean(axis=0), rowvar=False)
    assert np.allclose(np.diag(cov), 1.0, atol=0.25) and np.abs(cov - np.diag(np.diag(cov))).max() < 0.25
    # the metric reads the matrix from its prior file: a gap along the common direction costs less than
    # an equally long gap across it, while without the matrix both cost the same
    path = tmp_path / "prior.json"
    path.write_text(json.dumps({**shipped, "whiten": w.tolist()}))
    white, diagonal = StatsMetric(prior_path=path), StatsMetric()
    along = common * scale / np.linalg.norm(common)
    across = rng.normal(size=dims)
    across -= across @ (common / np.linalg.norm(common)) * common / np.linalg.norm(common)
    across = across / np.linalg.norm(across) * scale
    zero = Embedding(np.zeros((1, dims), np.float32), np.zeros((1, 0), np.float32))
    emb = lambda v: Embedding(v[None].astype(np.float32), np.zeros((1, 0), np.float32))  # noqa: E731
    assert -white.similarity(emb(along), zero)[0] < 0.2 * -white.similarity(emb(across), zero)[0]
    assert diagonal.whiten is None
    assert diagonal.similarity(emb(across), zero)[0] == pytest.approx(-np.mean(np.square(across / scale)), rel=1e-5)


def test_stats_content_prior_is_the_mean_of_the_training_recordings_most_like_the_input(tmp_path, phrase_corpus):
    import json

    from stito_server.metrics.stats import StatsMetric
    from stito_server.resources import package_dir
    from training.stats_prior import fit_stats_prior, recording_means

    # one row per recording of the corpus (6 generated clips, one per recording), music's before drums'
    rows = recording_means(phrase_corpus, seconds=1.0)
    assert rows.shape == (6, 57)
    prior = fit_stats_prior(phrase_corpus, clips_per_type=3, seconds=1.0, out=tmp_path / "prior.json")
    assert np.allclose(prior["recordings"], rows, atol=1e-3) and prior["neighbours"] == 10
    assert json.loads((tmp_path / "prior.json").read_text()) == prior  # one recording a line, same values
    shipped = json.loads((package_dir("models") / "stats-prior.json").read_text())
    path = tmp_path / "two.json"
    path.write_text(json.dumps({**shipped, "recordings": rows.tolist(), "neighbours": 2}))
    metric = StatsMetric(prior_path=path)
    # an input just off recording 4: its prior is recording 4 and the one nearest to it (in spreads)
    gaps = np.mean(np.square((rows - rows[4]) / metric.scale), axis=1)
    nearest = int(np.argsort(gaps)[1])
    near_4 = rows[4] + 0.01 * metric.scale
    assert np.allclose(metric.content_prior(near_4), (rows[4] + rows[nearest]) / 2)
    # the reference's processing is measured against the input (0), the content prior (1) or the blend
    emb = lambda v: Embedding(np.atleast_2d(v).astype(np.float32), np.zeros((1, 0), np.float32))  # noqa: E731
    ref, dry = rows[0] + 3.0, rows[5]
    for lam, guess in ((0.0, near_4), (1.0, metric.content_prior(near_4)),
                       (0.5, 0.5 * near_4 + 0.5 * metric.content_prior(near_4))):
        target = metric.targets(emb(ref), emb(near_4), emb(dry), lam).mid[0]
        assert np.allclose(target, dry + ref - guess, atol=1e-3)
    # a prior file without recordings (before 2026-12-06) falls back to the mean of all types
    path.write_text(json.dumps({k: v for k, v in shipped.items() if k not in ("recordings", "neighbours")}))
    assert np.array_equal(StatsMetric(prior_path=path).content_prior(near_4), metric.prior)
    # the shipped file: every training recording of the four content types, the default blend still 0
    assert len(shipped["recordings"]) >= 100 and shipped["neighbours"] == 10 and shipped["reference_prior"] == 0.0


def test_coordinate_probes_find_a_far_single_knob_and_combine_the_ones_that_gain():
    from stito_server.engine.optimize import Stage, optimize_by_group, probe_coordinates

    calls = []

    def far(xs):  # the best is coordinate 0 at 0.9 (a low cut far from its range's end), the rest indifferent
        calls.append(len(xs))
        return -np.square(xs[:, 0] - 0.9)

    x0 = np.zeros(4)
    best_x, best, n = probe_coordinates(far, x0, float(far(x0[None])[0]), (0.0, 0.5, 1.0))
    assert n == 8 and best_x.tolist() == [1.0, 0.0, 0.0, 0.0] and best == pytest.approx(-0.01)  # 0.0 skipped

    def two(xs):  # two coordinates each gain alone, and more together
        return -np.square(xs[:, 0] - 1.0) - np.square(xs[:, 1] - 0.5)

    best_x, best, n = probe_coordinates(two, np.zeros(3), float(two(np.zeros((1, 3)))[0]), (0.5, 1.0))
    assert best_x.tolist() == [1.0, 0.5, 0.0] and best == 0.0 and n == 7
    # nothing gains: the start comes back as it was
    best_x, best, _ = probe_coordinates(lambda xs: -np.sum(xs ** 2, axis=1), np.zeros(2), 0.0, (0.5, 1.0))
    assert best_x.tolist() == [0.0, 0.0] and best == 0.0
    # in the grouped search: one generation for the group is not enough from 0 at step 0.2, the probe is
    opts = OptimizerOptions(popsize=6, max_generations=2, seed=0, sigma0=0.2)
    groups = [np.array([0, 1]), np.array([2, 3])]
    plain = optimize_by_group([Stage(far, 2)], x0, groups, ["a", "b"], opts)
    probed = optimize_by_group([Stage(far, 2)], x0, groups, ["a", "b"], replace(opts, probe_values=(0.5, 1.0)))
    assert probed.best_x[0] > 0.75 and plain.best_x[0] < probed.best_x[0]
    assert probed.evaluations == plain.evaluations + 8
    with pytest.raises(ValueError, match="probe_values must lie in"):
        OptimizerOptions(probe_values=(1.5,))


def test_candidate_descriptors_of_a_sine_are_its_amplitude_histogram_and_crest():
    from training.visibility import candidate_descriptors

    t = np.arange(RATE) / RATE
    sine = (0.3 * np.stack([np.sin(2 * np.pi * 441 * t)] * 2)).astype(np.float32)
    share6, share12, crest, _ = candidate_descriptors(sine, RATE)
    # the share of a sine's samples above a fraction k of its peak is 1 - (2 / pi) asin(k); its crest is 3.01 dB
    for got, db in ((share6, -6.0), (share12, -12.0)):
        assert got == pytest.approx(10 * np.log10(1 - 2 / np.pi * np.arcsin(10 ** (db / 20))), abs=0.01)
    assert crest == pytest.approx(20 * np.log10(np.sqrt(2)), abs=0.01)
    # peak-normalised: the level does not matter, and the caller's audio is left as it was
    kept = sine.copy()
    assert np.allclose(candidate_descriptors(sine * 3, RATE), candidate_descriptors(sine, RATE))
    assert np.array_equal(sine, kept)


def test_echo_strength_rises_with_a_delayed_copy_and_ignores_level():
    from stito_server.examples import phrase
    from stito_server.metrics.stats import echo_strengths

    def echo_strength(x, rate):
        return float(echo_strengths(x[None], rate)[0, 0])

    noise = np.random.default_rng(0).standard_normal(4 * RATE)
    k = int(0.2 * RATE)
    echoed = noise.copy()
    echoed[k:] += 0.3 * noise[:-k]  # a 200 ms echo 10 dB down
    assert echo_strength(echoed, RATE) > echo_strength(noise, RATE) + 10
    phrase_mid = phrase(4.0, RATE, seed=1).mean(axis=0)  # a looped phrase has peaks of its own (its beat)
    slap = phrase_mid.copy()
    slap[int(0.12 * RATE):] += 0.4 * phrase_mid[:-int(0.12 * RATE)]
    assert echo_strength(slap, RATE) > echo_strength(phrase_mid, RATE) + 5
    assert echo_strength(3 * echoed, RATE) == pytest.approx(echo_strength(echoed, RATE), abs=1e-6)
    assert echo_strength(noise[:RATE // 2], RATE) == 0.0  # shorter than one frame


def test_visibility_shows_a_heavy_compressor_in_the_amplitude_histogram_and_a_shelf_eq_not(phrase_corpus):
    from stito_server.effects.specs import chain_from_dict
    from stito_server.metrics.stats import descriptor_names
    from training.restraint import STYLES
    from training.visibility import CANDIDATES, table, visibility

    styles = {n: chain_from_dict({"name": n, "effects": STYLES[n]}) for n in ("squashed", "warm")}
    res = visibility(phrase_corpus, styles, clips_per_type=3, seed=0, log=lambda s: None)
    assert res["descriptors"] == descriptor_names() + list(CANDIDATES) and res["clips"] == 6
    j = res["descriptors"].index("share_above_-6dB")
    squashed, warm = res["styles"]["squashed"], res["styles"]["warm"]
    assert squashed["visibility"][j] > 3 and squashed["visibility"][j] > 2 * warm["visibility"][j]
    assert squashed["metric_effect"] > 0 and warm["metric_effect"] > 0 and res["content_gap"]["other_recording"] > 0
    # each phrase recording has one clip: nothing to say against clips of one recording
    assert res["content_gap"]["own_recording"] is None and squashed["visibility_own"] is None
    lines = table(res)
    assert lines[-2].startswith("| squashed |") and lines[-1].startswith("| warm |")


def test_a_prior_naming_the_amplitude_histogram_makes_the_stats_metric_compute_it(tmp_path, phrase_corpus):
    from stito_server.metrics.stats import AMPLITUDE, StatsMetric, descriptor_names
    from training.stats_prior import fit_stats_prior

    prior = fit_stats_prior(phrase_corpus, clips_per_type=3, seconds=1.0, out=tmp_path / "amp.json", amplitude=True)
    assert prior["names"] == descriptor_names() + list(AMPLITUDE) and len(prior["scale"]) == 59
    assert len(prior["recordings"][0]) == 59 and "--amplitude-histogram" in prior["command"]
    t = np.arange(RATE) / RATE
    sine = (0.3 * np.stack([np.sin(2 * np.pi * 441 * t)] * 2)).astype(np.float32)[None]
    with_amp = StatsMetric(prior_path=tmp_path / "amp.json").embed(sine, RATE).mid
    shipped = get_metric("stats").embed(sine, RATE).mid
    assert with_amp.shape == (1, 59) and shipped.shape == (1, 57)
    assert np.allclose(with_amp[0, :57], shipped[0], atol=1e-4)  # the 57 are the same descriptors
    # a sine's share of samples above a fraction k of its peak is 1 - (2 / pi) asin(k)
    for got, db in zip(with_amp[0, 57:], (-6.0, -12.0)):
        assert got == pytest.approx(10 * np.log10(1 - 2 / np.pi * np.arcsin(10 ** (db / 20))), abs=0.01)


def test_a_prior_naming_the_echo_with_a_family_weight_makes_the_stats_metric_weigh_it(tmp_path, phrase_corpus):
    from stito_server.metrics.base import Embedding
    from stito_server.metrics.stats import ECHO, StatsMetric, descriptor_names, echo_strengths
    from training.stats_prior import fit_stats_prior

    prior = fit_stats_prior(phrase_corpus, clips_per_type=3, seconds=1.0, out=tmp_path / "echo.json", echo=True,
                            family_weight=8.0)
    bands = len(ECHO)
    assert prior["names"] == descriptor_names() + list(ECHO) and prior["weights"] == [1.0] * 57 + [8.0] * bands
    assert "--echo --family-weight 8" in prior["command"] and ECHO[3] == "echo_152ms_db"
    metric = StatsMetric(prior_path=tmp_path / "echo.json")
    noise = np.random.default_rng(0).standard_normal(2 * RATE).astype(np.float32)
    d = []
    for ms in (0, 50, 150, 300):  # a copy 8 dB down, ms later
        x = noise.copy()
        if ms:
            x[int(ms / 1000 * RATE):] += 0.4 * noise[:-int(ms / 1000 * RATE)]
        d.append(metric.embed(np.stack([x, x])[None], RATE).mid[0, 57:])
        assert d[-1] == pytest.approx(echo_strengths(x[None] / np.abs(x).max(), RATE, bands)[0], abs=1e-3)
    d = np.array(d)
    assert metric.embed(np.stack([noise] * 2)[None], RATE).mid.shape == (1, 57 + bands)
    # each echo stands out > 10 dB in the band centred nearest its delay, and nowhere else by as much
    for row, band in zip(d[1:], (1, 3, 4)):
        assert row[band] > d[0, band] + 10 and int(np.argmax(row - d[0])) == band
    # one spread of gap in an echo band counts 8 / (57 + 8 bands) of the mean squared gap; elsewhere, 1 / that
    total = 57 + 8 * bands
    zero = Embedding(np.zeros((1, 57 + bands), np.float32), np.zeros((1, 0), np.float32))
    for k, weight in ((57, 8), (3, 1)):
        one = zero.mid.copy()
        one[0, k] = metric.scale[k]
        assert metric.similarity(Embedding(one, zero.side), zero)[0] == pytest.approx(-weight / total, rel=1e-5)


def test_separation_scores_a_transparent_style_at_chance_and_clear_styles_of_alike_phrases_near_one(phrase_corpus):
    from stito_server.effects.specs import chain_from_dict
    from training.restraint import STYLES
    from training.separation import STATISTICS, auc, gap_statistics, separation, table

    styles = {n: chain_from_dict({"name": n, "effects": STYLES[n]}) for n in ("telephone", "slapback")}
    styles["dry delay"] = chain_from_dict({"name": "dry delay", "effects": [{"builtin": "delay", "fix": {"mix": 0.0}}]})
    res = separation(phrase_corpus, styles, clips_per_type=4, calibration_per_type=4, seed=0, log=lambda s: None)
    assert res["cases"] == {"other_recording": 8, "own_recording": 0, "unprocessed": 8, "calibration": 8}
    # a chain that leaves the audio as it was gives the unprocessed gaps themselves: exactly chance, every statistic
    assert all(res["styles"]["dry delay"][s]["other_recording"] == 0.5 for s in STATISTICS)
    # the generated phrases differ little, so a band-pass and an echo stand out of their content
    assert res["styles"]["telephone"]["largest gap"]["other_recording"] >= 0.9
    assert res["styles"]["slapback"]["distance"]["other_recording"] >= 0.9
    # each phrase recording has one clip: nothing against clips of the input's own recording
    assert res["styles"]["telephone"]["distance"]["own_recording"] is None
    assert table(res)[-1].startswith("| dry delay | 0.50 |")
    # with the candidate descriptors: the echo strength alone tells the slapback references (a 120 ms echo)
    res = separation(phrase_corpus, styles, clips_per_type=4, calibration_per_type=4, seed=0, candidates=True,
                     log=lambda s: None)
    assert res["descriptors"][-1] == "echo_strength_db"
    assert res["candidates"]["slapback"]["echo_strength_db"]["other_recording"] >= 0.9
    assert res["candidates"]["dry delay"]["echo_strength_db"]["other_recording"] == 0.5
    assert table(res)[2].endswith("| echo_strength_db alone |")
    # the statistics and the AUC on numbers worked by hand
    z = np.array([[3.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    got = gap_statistics(z, q95=np.ones(3), q99=np.full(3, 2.0))
    assert np.allclose(got["distance"], [10 / 3, 0.25]) and np.allclose(got["largest gap"], [3.0, 0.5])
    assert np.allclose(got["three largest gaps"], [4 / 3, 0.5]) and np.allclose(got["gaps beyond q95"], [1, 0])
    assert np.allclose(got["gaps beyond q99"], [1, 0])
    assert auc([2.0, 3.0], [1.0, 2.0]) == pytest.approx(0.875)
