"""Evaluation data: disjoint source lists, and the real `stito data eval --quick` fetch, clips and manifests."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stito_server.audio import resample
from training.data import cli as data_cli
from training.data import corpus
from training.data.clips import RATE, load_clip, load_manifest, read_source_file
from training.data.sources import CONTENT_TYPES, EVAL_SOURCES, TRAIN_SOURCES, Source, packages, sources


def test_eval_and_train_sources_share_no_package_or_file():
    eval_pkgs, train_pkgs = set(packages(EVAL_SOURCES)), set(packages(TRAIN_SOURCES))
    assert eval_pkgs and train_pkgs
    assert eval_pkgs.isdisjoint(train_pkgs), eval_pkgs & train_pkgs
    eval_patterns = {(s.package, p) for s in EVAL_SOURCES for p in s.patterns}
    train_patterns = {(s.package, p) for s in TRAIN_SOURCES for p in s.patterns}
    assert eval_patterns.isdisjoint(train_patterns)


def test_eval_sources_cover_every_content_type_and_quick_is_a_subset():
    assert {s.content_type for s in EVAL_SOURCES} == set(CONTENT_TYPES)
    quick = packages(EVAL_SOURCES, quick=True)
    assert 0 < len(quick) < len(packages(EVAL_SOURCES))
    assert set(quick) <= set(packages(EVAL_SOURCES))


def test_source_rejects_bad_fields_naming_the_options():
    with pytest.raises(ValueError, match="content_type 'podcast' is not one of speech"):
        Source("p", "podcast", ("*.ogg",), "GPL", "dry", "")
    with pytest.raises(ValueError, match="dryness 'wet' is not one of dry"):
        Source("p", "music", ("*.ogg",), "GPL", "wet", "")
    with pytest.raises(ValueError, match="valid: eval, train"):
        sources("test")


def test_archive_member_patterns_match_only_inside_the_archive():
    s = Source("p", "music", ("data/music.pk3!sound/*.ogg",), "GPL", "produced", "")
    assert s.matches("data/music.pk3!sound/cdtracks/a.ogg")
    assert not s.matches("data/sound/cdtracks/a.ogg")


@pytest.fixture(scope="module")
def quick_data(request) -> tuple[Path, dict[str, float]]:
    """The real quick evaluation subset, fetched once into pytest's cache folder (kept between runs)."""
    cache = request.config.cache.mkdir("stito-data")
    return corpus.build_eval(quick=True, cache=cache, log=lambda m: None)


def test_quick_manifests_have_clips_with_provenance(quick_data):
    out, hours = quick_data
    for ct in ("speech", "guitar", "drums", "music"):
        clips = load_manifest(out, ct, quick=True)
        assert len(clips) >= 16, ct
        assert hours[ct] == pytest.approx(sum(c["duration_s"] for c in clips) / 3600)
        for c in clips:
            assert c["package"] in packages(EVAL_SOURCES, quick=True)
            assert c["dryness"] and c["license"] and c["segments"]
            assert c["sample_rate"] == RATE and c["duration_s"] == pytest.approx(5.0, abs=1e-3)
            assert (out / c["path"]).exists()
        assert len({c["id"] for c in clips}) == len(clips)
    assert load_manifest(out, "vocals", quick=True) == []  # vocals are only in the full set


def test_window_clip_equals_its_manifest_segment(quick_data):
    """A clip re-cut from the package file at the manifest's offset equals the stored clip."""
    out, _ = quick_data
    clip = next(c for c in load_manifest(out, "music", quick=True) if c["package"] == "singularity-music")
    seg = clip["segments"][0]
    pkg_root = out.parent / "pkgs" / clip["package"]
    x, rate = read_source_file(pkg_root, seg["file"])
    start = int(round(seg["offset_s"] * rate))
    ref = resample(x[:, start: start + int(round(seg["duration_s"] * rate))], rate, RATE)
    ref *= 10 ** (clip["gain_db"] / 20)
    stored = load_clip(out, clip)
    assert stored.shape == ref.shape
    assert np.max(np.abs(stored - ref)) < 1e-4  # 24-bit FLAC quantisation


def test_second_run_is_a_no_op_and_a_deleted_clip_is_restored_identically(quick_data):
    out, _ = quick_data
    cache = out.parent
    clips = load_manifest(out, "guitar", quick=True)
    manifest = (out / "guitar" / "manifest-quick.json").read_bytes()
    victim = out / clips[0]["path"]
    before = victim.read_bytes()
    mtimes = {c["path"]: (out / c["path"]).stat().st_mtime_ns for c in clips}
    victim.unlink()
    shutil.rmtree(out / ".units" / clips[0]["package"])  # as if interrupted before the records were written
    corpus.build_eval(quick=True, cache=cache, log=lambda m: None)
    assert victim.read_bytes() == before
    assert (out / "guitar" / "manifest-quick.json").read_bytes() == manifest
    after = load_manifest(out, "guitar", quick=True)
    assert [c["id"] for c in after] == [c["id"] for c in clips]
    untouched = [c["path"] for c in clips[1:]]
    assert all((out / p).stat().st_mtime_ns == mtimes[p] for p in untouched)


def test_cli_reports_minutes_per_content_type(quick_data, capsys):
    out, _ = quick_data
    parser = argparse.ArgumentParser(prog="stito")
    data_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "eval", "--quick", "--cache", str(out.parent)])
    assert data_cli.run(args) == 0
    text = capsys.readouterr().out
    guitar_min = sum(c["duration_s"] for c in load_manifest(out, "guitar", quick=True)) / 60
    assert f"guitar   {guitar_min:7.1f} min" in text
    manifest = json.loads((out / "speech" / "manifest-quick.json").read_text())
    assert manifest["quick"] is True and manifest["seed"] == 0
