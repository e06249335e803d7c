"""The one option schema: the CLI's flags, the wire's casts and the report's options all come from MATCH_OPTIONS."""

from __future__ import annotations

from dataclasses import fields

import pytest

from stito_server.cli import get_parser
from stito_server.engine.optimize import OptimizerOptions
from stito_server.engine.options import (MATCH_OPTIONS, MatchOptions, cli_changes, option_values,
                                         wire_changes)
from stito_server.errors import StitoError


def test_every_option_is_a_field_and_a_flag():
    names = {f.name for f in fields(MatchOptions)} | {f.name for f in fields(OptimizerOptions)}
    assert {s.name for s in MATCH_OPTIONS} <= names
    match_parser = get_parser()._subparsers._group_actions[0].choices["match"]
    flags = {a.dest: a.option_strings for a in match_parser._actions}
    assert all(flags[s.name] == [s.flag] for s in MATCH_OPTIONS)


def test_cli_values_become_the_same_options_as_written_out_by_hand():
    args = get_parser().parse_args(["match", "a.wav", "b.wav", "--chain", "zam-strip", "--out", "o.wav",
                                    "--popsize", "12", "--time-budget", "0", "--start", "center"])
    opts = MatchOptions.preset("fast", **cli_changes(args))
    assert opts == MatchOptions.preset("fast", popsize=12, time_budget_s=None, start="center", seed=0, amount=1.0,
                                       loudness="reference")
    defaults = get_parser().parse_args(["match", "a.wav", "b.wav", "--chain", "zam-strip", "--out", "o.wav"])
    assert MatchOptions.preset("fast", **cli_changes(defaults)).optimizer.time_budget_s == 6.5
    bad = get_parser().parse_args(["match", "a", "b", "--chain", "c", "--out", "o", "--time-budget", "-1"])
    with pytest.raises(StitoError, match="--time-budget must be a number of seconds above 0, or 0 for no limit; got -1"):
        cli_changes(bad)


def test_wire_options_round_trip_and_bad_values_name_the_option():
    opts = MatchOptions.preset("fast", popsize=10, start="center", time_budget_s=None, workers=3)
    sent = option_values(opts, wire_only=True)
    assert "workers" not in sent and sent["start"] == "center" and sent["time_budget_s"] is None
    assert MatchOptions.preset("fast", workers=3, **wire_changes(sent)) == opts
    assert wire_changes({"popsize": "12", "metric": "mfcc"}) == {"popsize": 12}  # request-level keys left alone
    for key, value, kind in (("popsize", "many", "an integer"), ("amount", [1], "a number or effect=amount list"),
                             ("time_budget_s", "soon", "a number of seconds or null"), ("seed", 1e999, "an integer")):
        with pytest.raises(StitoError) as err:
            wire_changes({key: value})
        assert str(err.value) == f"options.{key} must be {kind}, got {value!r}"
    assert "workers" not in wire_changes({"workers": 64})  # the server sets its own
