"""The AFx-Rep pipeline end to end on a tiny scale: presets, pairs, training, resume, export, verified loading."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.param_tasks import PARAM_TASKS
from training.effects import UNSEEN_EFFECTS, make_effect, pretext_effects
from stito_server.metrics.encoder import EncoderConfig, StyleEncoder, random_encoder
from training.pairs import PairPlan, build_pairs, item_chains, load_pairs, plan_items, style_ids
from training.presets import build_presets, effect_presets
from training.train import TrainPlan, train
from stito_server.metrics.weights import export_weights, load_encoder
from stito_server.errors import ChainError, StitoError
from stito_server.examples import phrase
from stito_server.metrics import get_metric
from stito_server.metrics.afx import EncoderMetric

RATE = 48000
SMALL = EncoderConfig(width=16, dilations=(1, 2), dim=8, n_mels=32)


def test_pretext_effects_leave_out_the_benchmarks_unseen_effects():
    ids = pretext_effects()
    assert len(UNSEEN_EFFECTS) == 3 and UNSEEN_EFFECTS == {t.effect_id for t in PARAM_TASKS if t.unseen}
    assert not UNSEEN_EFFECTS & set(ids)
    seen = {t.effect_id for t in PARAM_TASKS if not t.unseen}
    assert seen <= set(ids), seen - set(ids)  # every seen task effect is trained on
    with pytest.raises(ChainError, match="must start with one of"):
        make_effect("lv2:Foo")


def test_presets_are_medoids_of_settings_that_change_the_audio():
    probe = phrase(1.0, RATE, seed=3)
    out = effect_presets("builtin:lowpass", probe, RATE, n_settings=60, n_presets=4, seed=0)
    assert out["params"] == ["cutoff_hz"] and len(out["presets"]) == 4
    assert out["kept"] + sum(out["dropped"].values()) == 60
    cut = [make_effect("builtin:lowpass").params[0].from_normalized(p[0]) for p in out["presets"]]
    assert len(set(np.round(cut))) == 4  # four distinct cutoffs, spread over the range
    assert max(cut) / min(cut) > 4.0
    # a compressor whose random threshold sits above the probe's peak only changes level: dropped
    comp = effect_presets("builtin:compressor", probe, RATE, n_settings=60, n_presets=4, seed=0)
    assert comp["dropped"]["unchanged"] > 0


@pytest.fixture(scope="module")
def tiny_corpus(phrase_corpus) -> tuple[Path, Path]:
    """The generated training root (``phrase_corpus``) and presets for two effects."""
    root = phrase_corpus
    presets = build_presets(["builtin:lowpass", "builtin:distortion"], phrase(1.0, RATE, seed=9), RATE,
                            root / "presets.json", n_settings=30, n_presets=3, seed=0, log=lambda m: None)
    assert list(presets["effects"]) == ["builtin:lowpass", "builtin:distortion"]
    return root, root / "presets.json"


@pytest.fixture(scope="module")
def tiny_pairs(tiny_corpus, tmp_path_factory) -> Path:
    root, presets = tiny_corpus
    out = tmp_path_factory.mktemp("pairs")
    plan = PairPlan(items=80, seconds=2.0, content_weights={"music": 0.5, "drums": 0.5})
    build_pairs(root, presets, out, plan, SMALL, workers=1, log=lambda m: None)
    return out


def test_pairs_hold_dry_and_wet_log_mels_with_labels(tiny_pairs, tiny_corpus):
    p = load_pairs(tiny_pairs)
    frames = (2 * RATE - 2048) // 1024 + 1
    assert p.dry.shape == (6, 2, frames, 32) and p.wet.shape == (80, 2, 2, frames, 32)
    assert p.ready.all() and set(p.effect.tolist()) == {0, 1} and set(p.preset.tolist()) <= {0, 1, 2}
    assert np.isfinite(np.asarray(p.wet, dtype=np.float32)).all()
    assert float(np.asarray(p.wet).min()) >= -1.0 and float(np.asarray(p.wet).max()) <= 1.0
    # a and b of one item come from different recordings of the same content type
    assert (p.dry_index[:, 0] != p.dry_index[:, 1]).all()
    assert ((p.dry_index[:, 0] < 3) == (p.dry_index[:, 1] < 3)).all()
    # a low-passed clip loses top-band energy against its dry clip
    i = int(np.flatnonzero(p.effect == 0)[0])
    dry_top = np.asarray(p.dry[p.dry_index[i, 0], 0, :, -4:], dtype=np.float32).mean()
    wet_top = np.asarray(p.wet[i, 0, 0, :, -4:], dtype=np.float32).mean()
    assert wet_top <= dry_top + 1e-3
    # a rebuild of the same plan finds everything done; another plan in the same folder is refused
    root, presets = tiny_corpus
    build_pairs(root, presets, tiny_pairs, PairPlan(items=80, seconds=2.0, content_weights={"music": 0.5, "drums": 0.5}),
                SMALL, workers=1, log=lambda m: None)
    with pytest.raises(RuntimeError, match="different plan"):
        build_pairs(root, presets, tiny_pairs, PairPlan(items=81, seconds=2.0), SMALL, workers=1, log=lambda m: None)


def test_chain_items_render_several_effects_and_train_only_the_contrastive_term(tiny_corpus, tiny_pairs, tmp_path):
    root, presets = tiny_corpus
    plan = PairPlan(items=40, seconds=2.0, content_weights={"music": 0.5, "drums": 0.5}, chain_share=0.5,
                    chain_lengths=(2,))
    single = PairPlan(items=40, seconds=2.0, content_weights={"music": 0.5, "drums": 0.5})
    items = plan_items(root, plan, ["builtin:lowpass", "builtin:distortion"], 3)
    items0 = plan_items(root, single, ["builtin:lowpass", "builtin:distortion"], 3)
    chained = [i for i, c in enumerate(items["chain"]) if len(c) == 2]
    assert 10 <= len(chained) <= 30
    assert all(items["effect"][i] == items["preset"][i] == -1 for i in chained)
    assert all(sorted(e for e, _ in items["chain"][i]) == [0, 1] for i in chained)  # two different effects
    # chain_share 0 is the single-effect plan exactly; the chain draws come after it
    assert items0["dry_index"] == items["dry_index"] and items0["gain_db"] == items["gain_db"]
    assert {k for k in items0 if items0[k] != items[k]} == {"chain", "effect", "preset"}
    assert all(items["chain"][i] == items0["chain"][i] for i in range(40) if i not in chained)
    out = build_pairs(root, presets, tmp_path / "chains", plan, SMALL, workers=1, log=lambda m: None)
    p = load_pairs(out)
    ids = style_ids(item_chains(items), 2, 3)
    np.testing.assert_array_equal(p.style, ids)
    assert (ids[chained] >= 6).all() and (ids[[i for i in range(40) if i not in chained]] < 6).all()
    same = [(i, j) for i in chained for j in chained if i < j and items["chain"][i] == items["chain"][j]]
    assert same and all(ids[i] == ids[j] for i, j in same)
    # a chain item's wet clip differs from its dry clip
    i = chained[0]
    assert float(np.abs(np.asarray(p.wet[i, 0, 0], dtype=np.float32)
                        - np.asarray(p.dry[p.dry_index[i, 0], 0], dtype=np.float32)).mean()) > 0.01
    with pytest.raises(ValueError, match="chain_share must be between 0 and 1, got 1.5"):
        PairPlan(chain_share=1.5)
    # training on it: finite losses, heads scored on the labelled items only
    tp = TrainPlan(steps=2, batch=8, crop_frames=60, val_items=8, checkpoint_every=2, seed=0)
    train(out, tmp_path / "run", tp, device="cpu", threads=1, log=lambda m: None)
    row = list(csv.DictReader((tmp_path / "run" / "train_log.csv").read_text().splitlines()))[-1]
    assert all(np.isfinite(float(row[k])) for k in ("train_loss", "val_loss", "val_effect_acc", "val_nce"))


def test_training_logs_checkpoints_resumes_and_is_deterministic(tiny_pairs, tmp_path):
    plan = TrainPlan(steps=4, batch=8, crop_frames=60, val_items=16, checkpoint_every=2, seed=0)
    ck = train(tiny_pairs, tmp_path / "a", plan, device="cpu", threads=1, log=lambda m: None)
    rows = list(csv.DictReader((tmp_path / "a" / "train_log.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert all(np.isfinite(float(r["val_loss"])) and 0 <= float(r["val_effect_acc"]) <= 1 for r in rows)
    # stop at 2 steps, then resume to 4: same weights as the uninterrupted run
    train(tiny_pairs, tmp_path / "b", TrainPlan(**{**plan.__dict__, "steps": 2}), device="cpu", threads=1,
          log=lambda m: None)
    ck_b = train(tiny_pairs, tmp_path / "b", plan, device="cpu", threads=1, log=lambda m: None)
    a, b = torch.load(ck, weights_only=False), torch.load(ck_b, weights_only=False)
    assert b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    with pytest.raises(RuntimeError, match=r"other settings \(\['lr'\]\)"):
        train(tiny_pairs, tmp_path / "b", TrainPlan(**{**plan.__dict__, "lr": 0.5}), device="cpu", log=lambda m: None)

    # fine-tune: --init starts a new run (other contrastive weight, near-zero learning rate) from a's weights
    tune = TrainPlan(**{**plan.__dict__, "steps": 2, "lr": 1e-12, "contrastive_weight": 4.0, "init": str(ck)})
    c = torch.load(train(tiny_pairs, tmp_path / "c", tune, device="cpu", threads=1, log=lambda m: None),
                   weights_only=False)
    assert c["step"] == 2 and c["plan"]["init"] == str(ck)
    weights = [k for k in a["model"] if "running_" not in k and "num_batches" not in k]  # norm statistics move
    assert weights and all(torch.allclose(a["model"][k], c["model"][k], atol=1e-6) for k in weights)

    # export: hash-prefixed name, verified on load, same embeddings as the checkpoint's encoder
    w = export_weights(ck, tmp_path / "models")
    model = load_encoder(w)
    ref = StyleEncoder(SMALL)
    ref.load_state_dict({k[8:]: v for k, v in a["model"].items() if k.startswith("encoder.")})
    ref.eval()
    x = phrase(2.0, RATE, seed=21)[None]
    e1 = EncoderMetric(model, "afx").embed(x, RATE)
    e2 = EncoderMetric(ref, "afx").embed(x, RATE)
    np.testing.assert_allclose(e1.mid, e2.mid, atol=1e-6)
    candidate = get_metric(f"afx:{w}")  # a candidate benchmarked before shipping, named after its file
    assert candidate.name == w.stem
    np.testing.assert_allclose(candidate.embed(x, RATE).mid, e1.mid, atol=1e-6)
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(StitoError, match="corrupt or were modified"):
        load_encoder(w)
    with pytest.raises(StitoError, match="must be named afx-rep-"):
        load_encoder(tmp_path / "encoder.pt")
    with pytest.raises(StitoError, match="afx-rep-12345678.pt not found"):
        get_metric(f"afx:{tmp_path / 'afx-rep-12345678.pt'}")


def test_random_encoder_metric_is_seeded_unit_norm_and_leaves_torch_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    m = get_metric("random")
    after = torch.rand(1)
    assert torch.equal(before, after)
    x = np.stack([phrase(2.0, RATE, seed=s) for s in (1, 2)])
    e = m.embed(x, RATE)
    assert e.mid.shape == (2, 128) and e.side.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(e.mid, axis=1), 1.0, atol=1e-5)
    e_again = get_metric("random").embed(x, RATE)
    np.testing.assert_array_equal(e.mid, e_again.mid)
    assert float(m.similarity(e, e).min()) == pytest.approx(1.0, abs=1e-5)
    assert random_encoder(0).config == EncoderConfig()


def test_shipped_weights_verify_and_group_clips_by_style_not_content():
    from stito_server.effects.builtin import BuiltinEffect
    from stito_server.metrics.weights import sha256_of, shipped_weights

    path = shipped_weights()
    assert sha256_of(path).startswith(path.name[len("afx-rep-"):-3])
    assert path.stat().st_size < 20 * 2 ** 20
    metric = get_metric("afx")
    probes = {"lowpass": {"cutoff_hz": 1000.0}, "highpass": {"cutoff_hz": 1000.0},
              "reverb": {"room_size": 0.9, "wet_level": 0.6}, "distortion": {"drive_db": 30.0}}
    a, b = phrase(5.0, RATE, seed=31), phrase(5.0, RATE, seed=32)
    margins = {}
    for kind, values in probes.items():
        fx = BuiltinEffect(kind)
        fx.set_values(values)
        emb = metric.embed(np.stack([fx.process(a, RATE), fx.process(b, RATE), b]), RATE)
        same_style = float(np.dot(emb.mid[0], emb.mid[1]))
        same_content = float(np.dot(emb.mid[0], emb.mid[2]))
        margins[kind] = same_style - same_content
    # two different phrases through one effect sit closer than one processed phrase and the other dry
    # (measured for e6a86f24: low-pass 0.016, high-pass 0.26, reverb 0.66, distortion 1.01; the 2200-step
    # df81bc86 had low-pass 0.34 but high-pass -0.06): every probe on the right side, three clearly
    assert min(margins.values()) > 0.0, margins
    assert sum(m > 0.05 for m in margins.values()) >= 3, margins
