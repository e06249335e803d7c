"""Ranking sets and the ranking fine-tune, on generated clips: what is rendered, how it is scored, resume, export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data.clips import load_clip
from stito_server.metrics.encoder import EncoderConfig, FrontEnd
from training.pairs import fit_length, mid_side_mel, as_stereo
from training.plans import RankPlan, RankTrainPlan
from training.rank_train import Ranker, losses, train_ranking
from training.ranking import build_rankset, draw_negative, family_chain, load_rankset
from stito_server.metrics.weights import export_weights, load_encoder

RATE = 48000
SMALL = EncoderConfig(width=16, dilations=(1, 2), dim=8, n_mels=32)
PLAN = RankPlan(items=24, seconds=2.0, negatives=3, content_weights={"music": 0.5, "drums": 0.5},
                family_weights={"effect": 0.5, "pedalboard-strip": 0.5})


@pytest.fixture(scope="module")
def tiny_ranks(phrase_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ranks")
    build_rankset(phrase_corpus, out, PLAN, SMALL, workers=1, log=lambda m: None)
    return out


def test_rankset_holds_b_at_the_anchors_setting_at_nearby_ones_and_dry(tiny_ranks, phrase_corpus):
    r = load_rankset(tiny_ranks)
    frames = (2 * RATE - 2048) // 1024 + 1
    assert r.anchor.shape == (24, 2, frames, 32) and r.cands.shape == (24, 5, 2, frames, 32) and r.ready.all()
    items = json.loads((tiny_ranks / "items.json").read_text())
    dry = np.array(items["dry_index"])
    assert (dry[:, 0] != dry[:, 1]).all() and ((dry[:, 0] < 3) == (dry[:, 1] < 3)).all()  # other recording
    fams = set(items["family"])
    assert "pedalboard-strip" in fams and any(f.startswith("effect:") for f in fams)
    # the positive is b through the chain at the item's setting, the last candidate the dry b
    i = items["family"].index("pedalboard-strip")
    chain = family_chain("pedalboard-strip")
    chain.set_vector(np.array(items["theta"][i]))
    n = 2 * RATE
    b = fit_length(as_stereo(load_clip(phrase_corpus, items["clips"][dry[i, 1]])), n) * np.float32(
        10 ** (items["gain_db"][i][1] / 20))
    front = FrontEnd(SMALL)
    want = mid_side_mel(np.stack([fit_length(chain.process(b, RATE), n), b]), front).astype(np.float32)
    got = np.asarray(r.cands[i, [0, -1]], dtype=np.float32)
    assert np.abs(got - want).max() < 2e-3  # float16 storage
    # negatives are other settings, and they sound different from the positive on most items
    for theta, negs in zip(items["theta"], items["negatives"]):
        assert all(np.abs(np.array(v) - np.array(theta)).max() > 0 for v in negs)
    diff = np.abs(np.asarray(r.cands[:, 1:4], dtype=np.float32) - np.asarray(r.cands[:, :1], dtype=np.float32))
    assert (diff.mean(axis=(2, 3, 4)) > 0.005).mean() > 0.5
    # a rebuild of the same plan finds everything done; another plan in the same folder is refused
    build_rankset(phrase_corpus, tiny_ranks, PLAN, SMALL, workers=1, log=lambda m: None)
    with pytest.raises(RuntimeError, match="different plan"):
        build_rankset(phrase_corpus, tiny_ranks, RankPlan(items=25, seconds=2.0), SMALL, workers=1,
                      log=lambda m: None)
    with pytest.raises(ValueError, match="negatives must be at least 1, got 24 and 0"):
        RankPlan(items=24, negatives=0)


def test_negatives_move_one_coordinate_far_enough_or_all_a_little():
    rng = np.random.default_rng(0)
    theta = np.array([0.0, 0.5, 0.95, 0.3])
    one, every = 0, 0
    for _ in range(400):
        v = draw_negative(rng, RankPlan(), theta)
        assert ((v >= 0) & (v <= 1)).all()
        moved = np.flatnonzero(v != theta)
        if moved.size == 1:
            one += 1
            assert abs(v[moved[0]] - theta[moved[0]]) >= RankPlan().min_move - 1e-12
        else:
            every += 1
    assert 150 < one < 250 and 150 < every < 250


def test_ranking_loss_scores_the_positive_against_own_negatives_and_other_items():
    torch.manual_seed(0)
    model = Ranker(SMALL).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(4, 2, 60, 32, generator=gen) * 2 - 1
    other = torch.rand(4, 3, 2, 60, 32, generator=gen) * 2 - 1
    # candidate 0 is the anchor's own audio: its cosine is 1, above every negative
    cands = torch.cat([x[:, None], other], dim=1)
    with torch.no_grad():
        out = losses(model, (x, cands), RankTrainPlan(temperature=0.05))
    assert float(out["hard_acc"]) == 1.0 and float(out["batch_acc"]) == 1.0 and float(out["margin"]) > 0
    # a negative identical to the positive is left out, not scored as a tie the positive loses
    tied = cands.clone()
    tied[:, 1] = tied[:, 0]
    with torch.no_grad():
        out_tied = losses(model, (x, tied), RankTrainPlan(temperature=0.05))
    assert float(out_tied["hard_acc"]) == 1.0
    assert float(out_tied["loss"]) <= float(out["loss"]) + 1e-6
    # the positive swapped for unrelated audio: it no longer wins every row
    swapped = torch.cat([other[:, :1], x[:, None], other[:, 1:]], dim=1)
    with torch.no_grad():
        out_swapped = losses(model, (x, swapped), RankTrainPlan(temperature=0.05))
    assert float(out_swapped["hard_acc"]) == 0.0 and float(out_swapped["loss"]) > float(out["loss"])


def test_rank_training_logs_resumes_exactly_and_exports(tiny_ranks, tmp_path):
    plan = RankTrainPlan(steps=4, batch=6, crop_frames=60, val_items=6, checkpoint_every=2, seed=0)
    ck = train_ranking(tiny_ranks, tmp_path / "a", plan, device="cpu", threads=1, log=lambda m: None)
    rows = list(csv.DictReader((tmp_path / "a" / "train_log.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [0, 2, 4]  # step 0: the starting point's validation
    assert all(0 <= float(r["val_hard_acc"]) <= 1 and np.isfinite(float(r["val_loss"])) for r in rows)
    train_ranking(tiny_ranks, tmp_path / "b", RankTrainPlan(**{**plan.__dict__, "steps": 2}), device="cpu",
                  threads=1, log=lambda m: None)
    ck_b = train_ranking(tiny_ranks, tmp_path / "b", plan, device="cpu", threads=1, log=lambda m: None)
    a, b = torch.load(ck, weights_only=False), torch.load(ck_b, weights_only=False)
    assert b["step"] == 4 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    with pytest.raises(RuntimeError, match=r"other settings \(\['temperature'\]\)"):
        train_ranking(tiny_ranks, tmp_path / "b", RankTrainPlan(**{**plan.__dict__, "temperature": 0.2}),
                      device="cpu", log=lambda m: None)
    # export, then start a new fine-tune from the exported file at a near-zero learning rate: same weights
    w = export_weights(ck, tmp_path / "models")
    tune = RankTrainPlan(**{**plan.__dict__, "steps": 2, "lr": 1e-12, "init": str(w)})
    c = torch.load(train_ranking(tiny_ranks, tmp_path / "c", tune, device="cpu", threads=1, log=lambda m: None),
                   weights_only=False)
    enc = load_encoder(w).state_dict()
    weights = [k for k in enc if "running_" not in k and "num_batches" not in k]
    assert weights and all(torch.allclose(enc[k], c["model"][f"encoder.{k}"], atol=1e-6) for k in weights)
    with pytest.raises(RuntimeError, match="network config"):
        train_ranking(tiny_ranks, tmp_path / "d", RankTrainPlan(**{**tune.__dict__, "init": _other_config(tmp_path)}),
                      device="cpu", log=lambda m: None)


def _other_config(tmp_path: Path) -> str:
    """A checkpoint of a network with another config than the ranking set's."""
    other = EncoderConfig(width=8, dilations=(1,), dim=4, n_mels=32)
    path = tmp_path / "other.pt"
    torch.save({"model": {f"encoder.{k}": v for k, v in Ranker(other).encoder.state_dict().items()},
                "config": other.to_dict(), "effects": [], "n_presets": 0}, path)
    return str(path)
