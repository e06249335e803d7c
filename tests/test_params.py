"""Param: scaling round trips, snapping, range errors."""

import numpy as np
import pytest

from stito_server.params import Param


@pytest.mark.parametrize("scale,lo,hi", [("linear", -60.0, 0.0), ("log", 20.0, 20000.0), ("log", 0.1, 100.0)])
def test_round_trip(scale, lo, hi):
    p = Param("x", "", lo, hi, lo, scale)
    for value in np.linspace(lo, hi, 17):
        assert p.from_normalized(p.to_normalized(value)) == pytest.approx(value, rel=1e-9, abs=1e-9)


def test_log_scale_puts_geometric_mean_at_half():
    p = Param("cutoff_hz", "Hz", 20.0, 20000.0, 1000.0, "log")
    assert p.from_normalized(0.5) == pytest.approx(632.455, rel=1e-4)
    assert p.to_normalized(200.0) == pytest.approx(1 / 3, abs=1e-9)


def test_table_scale_follows_measured_points_and_decreasing_tables():
    p = Param("Threshold", "dB", -80.0, 0.0, 0.0, "table", table=((0.0, 0.5, 1.0), (-80.0, -20.0, 0.0)))
    assert p.from_normalized(0.25) == pytest.approx(-50.0)
    assert p.to_normalized(-20.0) == pytest.approx(0.5)
    dec = Param("d", "", 10.0, 0.0, 5.0, "table", table=((0.0, 1.0), (10.0, 0.0)))
    assert dec.to_normalized(2.5) == pytest.approx(0.75)


def test_choice_and_bool_snap():
    c = Param("model", "", 0, 4, 0, kind="choice", steps=5, choices=("a", "b", "c", "d", "e"))
    assert c.snap(0.3) == pytest.approx(0.25)
    assert c.to_normalized("d") == pytest.approx(0.75)
    assert c.format(0.74) == "d"
    b = Param("on", "", 0, 1, 0, kind="bool")
    assert b.snap(0.49) == 0.0 and b.snap(0.51) == 1.0


def test_out_of_range_error_names_value_and_range():
    p = Param("threshold_db", "dB", -60.0, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"threshold_db: 6 dB is outside its range -60\.\.0 dB"):
        p.to_normalized(6.0)
    with pytest.raises(ValueError, match="valid: a, b"):
        Param("m", "", 0, 1, 0, kind="choice", steps=2, choices=("a", "b")).to_normalized("z")


def test_bad_definitions_rejected():
    with pytest.raises(ValueError, match="log scale needs a positive range"):
        Param("f", "Hz", 0.0, 100.0, 1.0, "log")
    with pytest.raises(ValueError, match="scale 'cubic' is not one of linear, log, table"):
        Param("f", "", 0.0, 1.0, 0.0, "cubic")  # type: ignore[arg-type]
