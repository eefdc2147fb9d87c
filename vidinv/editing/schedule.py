"""Edit strength over time: a multiplier per frame applied to every edit's strength.

Forms (:meth:`Schedule.parse`):

* ``constant`` (or ``constant:0.5``): the same multiplier on every frame (default 1).
* ``ramp:IN[,OUT]``: 0 -> 1 over ``IN`` at the start and 1 -> 0 over ``OUT`` at the end (``OUT``
  defaults to ``IN``); a duration is frames (``12``) or seconds (``0.5s``). With a ramp of ``R`` frames
  frame ``t`` gets ``min(1, t / R)`` (frame 0 gets 0, frame ``R`` the full strength) and frame
  ``T-1-t`` gets ``min(1, t / R)`` at the end; in seconds the same with times measured from the first
  frame and to the last one. ``ramp:0`` is constant.
* ``keys:0=0,50=2,100=0``: linear interpolation between (frame, multiplier) keyframes, held before
  the first and after the last; ``keys:0s=0,2s=1`` in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vidinv.editing.attributes import parse_strength
from vidinv.errors import VidinvError

FORMS = ("constant | constant:VALUE | ramp:IN[,OUT] (frames, or seconds with an 's') | "
         "keys:T=V,T=V,... (T in frames or seconds)")


def _duration(text: str) -> tuple[float, bool]:
    """``'12'`` -> (12, False) frames; ``'0.5s'`` -> (0.5, True) seconds."""
    t = text.strip().lower()
    secs = t.endswith("s")
    try:
        v = float(t[:-1] if secs else t)
    except ValueError:
        raise VidinvError(f"schedule: {text!r} is not a duration (frames like 12 or seconds like 0.5s)") from None
    if v < 0 or not np.isfinite(v):
        raise VidinvError(f"schedule: duration {text!r} must be >= 0")
    return v, secs


@dataclass
class Schedule:
    """A per-frame strength multiplier.

    Args:
        kind: ``'constant'``, ``'ramp'`` or ``'keys'``.
        value: the constant multiplier (constant and the plateau of a ramp).
        ramp_in, ramp_out: ramp durations (frames, or seconds when ``seconds``).
        keys: ``(time, value)`` keyframes, times in frames (or seconds when ``seconds``), increasing.
        seconds: durations / key times are seconds rather than frames.

    Shape:
        :meth:`strengths` returns ``[T]``.
    """

    kind: str = "constant"
    value: float = 1.0
    ramp_in: float = 0.0
    ramp_out: float = 0.0
    keys: list[tuple[float, float]] = field(default_factory=list)
    seconds: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "ramp", "keys"):
            raise VidinvError(f"schedule kind must be constant, ramp or keys, got {self.kind!r}")
        if self.kind == "keys":
            if not self.keys:
                raise VidinvError("schedule keys: give at least one T=V keyframe")
            ts = [t for t, _ in self.keys]
            if any(b <= a for a, b in zip(ts, ts[1:])):
                raise VidinvError(f"schedule keys: times must increase, got {ts}")
        if self.ramp_in < 0 or self.ramp_out < 0:
            raise VidinvError("schedule ramp durations must be >= 0")

    @classmethod
    def parse(cls, text: str | None) -> "Schedule":
        """Parse ``constant``, ``constant:V``, ``ramp:IN[,OUT]`` or ``keys:T=V,...`` (see the module docstring)."""
        if text is None or str(text).strip() in ("", "constant"):
            return cls()
        if isinstance(text, Schedule):
            return text
        head, _, body = str(text).strip().partition(":")
        head = head.lower()
        if head == "constant":
            return cls(value=parse_strength(body, f"schedule {text!r}"))
        if head == "ramp":
            parts = [p for p in body.split(",") if p.strip()]
            if not 1 <= len(parts) <= 2:
                raise VidinvError(f"schedule {text!r}: use ramp:IN or ramp:IN,OUT")
            (a, sa), (b, sb) = _duration(parts[0]), _duration(parts[-1])
            if sa != sb and a > 0 and b > 0:
                raise VidinvError(f"schedule {text!r}: give both ramp durations in frames or both in seconds")
            return cls("ramp", ramp_in=a, ramp_out=b, seconds=sa or sb)
        if head == "keys":
            keys, unit = [], set()
            for item in body.split(","):
                if not item.strip():
                    continue
                t, eq, v = item.partition("=")
                if not eq:
                    raise VidinvError(f"schedule {text!r}: keyframe {item!r} must be T=V")
                tv, secs = _duration(t)
                unit.add(secs)
                keys.append((tv, parse_strength(v, f"schedule {text!r}, keyframe {item.strip()!r}")))
            if len(unit) > 1:
                raise VidinvError(f"schedule {text!r}: give every key time in frames or every one in seconds")
            return cls("keys", keys=keys, seconds=unit == {True})
        raise VidinvError(f"unknown schedule {text!r}: use {FORMS}")

    def strengths(self, T: int, times: np.ndarray | None = None, fps: float | None = None) -> np.ndarray:
        """The multiplier of each of ``T`` frames.

        Args:
            T: number of frames.
            times: ``[T]`` frame times in seconds (needed for second-based schedules; VFR clips
                should pass their real timestamps).
            fps: alternative to ``times`` for a constant frame rate.

        Returns:
            float64 ``[T]``.

        Shape:
            times ``[T]``; returns ``[T]``.
        """
        if T < 0:
            raise VidinvError(f"schedule: T must be >= 0, got {T}")
        if self.kind == "constant":
            return np.full(T, self.value, np.float64)
        if self.seconds:
            if times is None:
                if not fps:
                    raise VidinvError("this schedule is in seconds: pass the frame times (or fps)")
                times = np.arange(T) / float(fps)
            x = np.asarray(times, np.float64).reshape(-1)
            if len(x) != T:
                raise VidinvError(f"schedule: got {len(x)} frame times for {T} frames")
            x = x - x[0] if T else x
        else:
            x = np.arange(T, dtype=np.float64)
        if self.kind == "keys":
            kt, kv = np.array([k[0] for k in self.keys]), np.array([k[1] for k in self.keys])
            return np.interp(x, kt, kv)
        end = x[-1] if T else 0.0
        m_in = np.clip(x / self.ramp_in, 0, 1) if self.ramp_in > 0 else np.ones(T)
        m_out = np.clip((end - x) / self.ramp_out, 0, 1) if self.ramp_out > 0 else np.ones(T)
        return self.value * np.minimum(m_in, m_out)
