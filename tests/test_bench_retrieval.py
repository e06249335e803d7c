"""Task 2: random chains, the positive sits in column 0, and `stito bench retrieval --quick` runs end to end."""

from __future__ import annotations

import numpy as np
import pytest

from bench.common import ClipPool
from bench.retrieval import EFFECT_POOL, QUICK, random_chain, run_trials
from training.data import corpus

from .conftest import run_quick_bench


@pytest.fixture(scope="module")
def quick_root(request):
    return corpus.build_eval(quick=True, cache=request.config.cache.mkdir("stito-data"), log=lambda m: None)[0]


def test_random_chain_draws_distinct_effects_and_rejects_bad_sizes():
    chain = random_chain(5, np.random.default_rng(0))
    kinds = [e.spec.name for e in chain]
    assert len(set(kinds)) == 5 and set(kinds) <= set(EFFECT_POOL)
    assert [e.spec.name for e in random_chain(5, np.random.default_rng(0))] == kinds  # seeded
    with pytest.raises(ValueError, match=r"n_effects must be in \[1, 12\], got 0"):
        random_chain(0, np.random.default_rng(0))


def test_identical_content_makes_the_positive_win(quick_root):
    """With B = A the positive is the query itself, so every query must retrieve column 0."""
    pool = ClipPool(quick_root, "speech", quick=True)
    pool.other_recording = lambda i, rng, exclude=(): i
    sims = run_trials(pool, ["mfcc"], n_effects=2, trials=3, set_size=5, seed=0)["mfcc"]
    assert sims.shape == (3, 5)
    assert np.allclose(sims[:, 0], 1.0, atol=1e-5)
    assert (sims[:, 1:] < sims[:, :1]).all()


def test_quick_retrieval_end_to_end(tmp_path, quick_root, capsys):
    report, md, printed = run_quick_bench("retrieval", tmp_path, capsys, "--cache", str(quick_root.parent))
    assert "| MIR | speech |" in printed
    assert set(report["clips"]) == {"speech", "guitar", "drums", "music"}  # vocals: full data only
    for metric in ("mfcc", "mir"):
        for content in report["clips"]:
            for n in QUICK["n_effects"]:
                curve = report["results"][metric][content][str(n)]
                assert set(curve) == {str(s) for s in QUICK["sizes"]}
                assert all(0.0 <= v <= 1.0 for v in curve.values())
