"""Edit schedules: the stated strength multiplier on every frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidinv.editing.directions import Direction, apply_edits
from vidinv.editing.schedule import Schedule
from vidinv.errors import VidinvError


def test_smoke_constant():
    s = Schedule.parse("constant")
    np.testing.assert_array_equal(s.strengths(5), np.ones(5))
    np.testing.assert_array_equal(Schedule.parse(None).strengths(3), np.ones(3))
    np.testing.assert_array_equal(Schedule.parse("constant:0.5").strengths(4), np.full(4, 0.5))
    assert Schedule.parse("constant").strengths(0).shape == (0,)


def test_ramp_frames():
    np.testing.assert_allclose(Schedule.parse("ramp:2").strengths(6), [0, 0.5, 1, 1, 0.5, 0])
    np.testing.assert_allclose(Schedule.parse("ramp:4,1").strengths(7), [0, 0.25, 0.5, 0.75, 1, 1, 0])
    np.testing.assert_allclose(Schedule.parse("ramp:0").strengths(4), np.ones(4))
    # a clip shorter than the ramps never reaches 1
    assert Schedule.parse("ramp:10").strengths(5).max() < 1


def test_ramp_seconds_uses_timestamps():
    s = Schedule.parse("ramp:0.5s")
    assert s.seconds and s.ramp_in == 0.5 and s.ramp_out == 0.5
    np.testing.assert_allclose(s.strengths(6, fps=4), [0, 0.5, 1, 1, 0.5, 0])
    # variable frame rate: the real times decide, and an offset start does not matter
    times = np.array([10.0, 10.1, 10.25, 10.5, 11.0, 11.4, 11.5])
    np.testing.assert_allclose(s.strengths(7, times=times), [0, 0.2, 0.5, 1, 1, 0.2, 0])


def test_keys():
    np.testing.assert_allclose(Schedule.parse("keys:0=0,50=2,100=0").strengths(101)[[0, 25, 50, 75, 100]],
                               [0, 1, 2, 1, 0])
    # held before the first and after the last key
    np.testing.assert_allclose(Schedule.parse("keys:2=1,4=3").strengths(7), [1, 1, 1, 2, 3, 3, 3])
    s = Schedule.parse("keys:0s=0,1s=1")
    np.testing.assert_allclose(s.strengths(5, fps=2), [0, 0.5, 1, 1, 1])


def test_exception():
    for bad in ("wobble", "ramp:", "ramp:x", "ramp:1,2,3", "ramp:-1", "keys:", "keys:5=1,2=0", "keys:a=1",
                "keys:1=x", "keys:1=0,2s=1", "keys:3", "constant:big"):
        with pytest.raises(VidinvError):
            Schedule.parse(bad)
    with pytest.raises(VidinvError, match="seconds"):
        Schedule.parse("ramp:0.5s").strengths(10)
    with pytest.raises(VidinvError, match="times"):
        Schedule.parse("ramp:0.5s").strengths(3, times=np.zeros(4))
    with pytest.raises(VidinvError, match="kind"):
        Schedule("sine")


def test_feature_schedule_drives_apply_edits():
    """Per-frame strengths from a schedule give per-frame W+ offsets of exactly that size."""
    T, L, sd = 6, 10, 16
    d = Direction("x", "w", torch.nn.functional.normalize(torch.randn(sd), dim=0), (3, 4), 3.0)
    mult = Schedule.parse("ramp:2").strengths(T)
    w = torch.randn(T, L, sd)
    delta = apply_edits(w, [(d, torch.as_tensor(1.5 * mult, dtype=torch.float32))]) - w
    for t in range(T):
        torch.testing.assert_close(delta[t, 3], float(1.5 * mult[t]) * 3.0 * d.vector, atol=1e-5, rtol=0)
    assert delta[0].abs().max() == 0 and delta[-1].abs().max() == 0


@pytest.mark.parametrize("text", ["constant:nan", "constant:inf", "keys:0=0,10=nan", "keys:0=-inf"])
def test_exception_non_finite_schedule_values(text):
    from vidinv.errors import InputError

    with pytest.raises(InputError, match="finite"):
        Schedule.parse(text)
