"""The public API of ``stito_server``: pinned names, each the object its module defines, loaded lazily."""

from __future__ import annotations

import json
import subprocess
import sys

import stito_server

PINNED_API = ["AudioError", "Audio", "CancelledError", "Chain", "ChainError", "DEFAULT_METRIC", "MatchOptions",
              "MatchResult", "OptimizerOptions", "ParamChange", "RenderError", "StitoError", "StyleMetric", "get_metric",
              "load_audio", "load_chain", "match", "metric_names", "named_chains", "save_audio", "score_settings",
              "run_batch", "BatchSettings", "BatchJob", "load_manifest", "folder_jobs"]


def test_public_api_is_pinned_and_each_name_is_its_modules_object():
    from stito_server.engine.match import match
    from stito_server.engine.options import MatchOptions
    from stito_server.errors import StitoError

    assert stito_server.__all__ == sorted(PINNED_API)
    assert stito_server.match is match and stito_server.MatchOptions is MatchOptions
    assert stito_server.StitoError is StitoError
    for name in stito_server.__all__:
        assert getattr(stito_server, name) is not None
    assert set(stito_server.__all__) <= set(dir(stito_server))


def test_an_unknown_name_says_what_the_api_is():
    try:
        stito_server.matchh
    except AttributeError as exc:
        assert "'matchh'" in str(exc) and "MatchOptions" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_importing_the_package_or_the_client_loads_neither_the_engine_nor_torch():
    code = ("import sys, json; import stito_server, stito_server.client; "
            "print(json.dumps(sorted(m for m in ('torch', 'pedalboard', 'scipy', 'stito_server.engine.match') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_readme_example_runs_through_the_public_api(tmp_path):
    from stito_server import MatchOptions, get_metric, load_chain, match
    from stito_server.audio import Audio
    from stito_server.examples import phrase, styled

    dry, ref = phrase(5.0, 48000, seed=1), styled(phrase(5.0, 48000, seed=2), 48000)
    result = match(Audio(dry, 48000), Audio(ref, 48000), load_chain("pedalboard-strip"), get_metric("mfcc"),
                   MatchOptions.fast(popsize=4, max_generations=2, time_budget_s=None, workers=1))
    assert result.output.shape == dry.shape and result.similarity["after"] >= result.similarity["before"] - 1e-9
