"""RAVDESS trees: parse file names, scan a folder, draw reproducible samples.

RAVDESS (Livingstone & Russo 2018) names every file ``MM-VV-EE-II-SS-RR-AA.ext`` inside a
folder ``Actor_AA``:

=====  ==================  ===========================================================
field  meaning             codes
=====  ==================  ===========================================================
MM     modality            01 full-AV, 02 video-only, 03 audio-only
VV     vocal channel       01 speech, 02 song
EE     emotion             01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful,
                           07 disgust, 08 surprised
II     intensity           01 normal, 02 strong (none for neutral)
SS     statement           01 "Kids are talking by the door", 02 "Dogs are sitting by the door"
RR     repetition          01, 02
AA     actor               01..24 (odd male, even female); must match the folder
=====  ==================  ===========================================================
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from vidinv.errors import InputError

__all__ = ["MODALITIES", "VOCAL_CHANNELS", "EMOTIONS", "INTENSITIES", "STATEMENTS", "RavdessItem", "Problem",
           "parse_name", "scan_tree", "sample_videos"]

MODALITIES = {1: "full-AV", 2: "video-only", 3: "audio-only"}
VOCAL_CHANNELS = {1: "speech", 2: "song"}
EMOTIONS = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust", 8: "surprised"}
INTENSITIES = {1: "normal", 2: "strong"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}

_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_ACTOR_DIR = re.compile(r"^Actor_(\d{2})$")
_FIELDS = (("modality", MODALITIES), ("vocal channel", VOCAL_CHANNELS), ("emotion", EMOTIONS),
           ("intensity", INTENSITIES), ("statement", STATEMENTS), ("repetition", {1: "1st", 2: "2nd"}),
           ("actor", {a: f"Actor_{a:02d}" for a in range(1, 25)}))


@dataclass(frozen=True)
class RavdessItem:
    """One RAVDESS file and its decoded name fields (codes as ints)."""

    path: Path
    modality: int
    vocal_channel: int
    emotion: int
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def stem(self) -> str:
        """The ``MM-VV-EE-II-SS-RR-AA`` name without extension."""
        return self.path.stem

    @property
    def emotion_name(self) -> str:
        return EMOTIONS[self.emotion]

    @property
    def modality_name(self) -> str:
        return MODALITIES[self.modality]

    @property
    def vocal_channel_name(self) -> str:
        return VOCAL_CHANNELS[self.vocal_channel]

    @property
    def intensity_name(self) -> str:
        return INTENSITIES[self.intensity]

    @property
    def statement_text(self) -> str:
        return STATEMENTS[self.statement]

    @property
    def gender(self) -> str:
        """``'male'`` for odd actor numbers, ``'female'`` for even ones."""
        return "male" if self.actor % 2 else "female"

    def as_dict(self) -> dict:
        """Plain fields plus names, for CSV/JSON reports."""
        return dict(path=str(self.path), stem=self.stem, modality=self.modality_name,
                    vocal_channel=self.vocal_channel_name, emotion=self.emotion_name,
                    intensity=self.intensity_name, statement=self.statement, repetition=self.repetition,
                    actor=self.actor, gender=self.gender)


@dataclass(frozen=True)
class Problem:
    """A file that is not a valid RAVDESS item, and why."""

    path: Path
    reason: str


def parse_name(path: Union[str, Path], check_folder: bool = True) -> RavdessItem:
    """Decode one RAVDESS path ``.../Actor_XX/MM-VV-EE-II-SS-RR-AA.ext``.

    Args:
        path: the file path (need not exist).
        check_folder: require the parent folder to be ``Actor_XX`` with XX = the actor field.

    Returns:
        The decoded :class:`RavdessItem`.

    Raises:
        InputError: a malformed name, a code out of range, neutral with strong
            intensity, or a folder that does not match the actor.
    """
    p = Path(path)
    m = _NAME.match(p.stem)
    if m is None:
        raise InputError(f"{p.name}: not a RAVDESS name (expected MM-VV-EE-II-SS-RR-AA, seven 2-digit fields)")
    codes = [int(g) for g in m.groups()]
    for (field, table), code in zip(_FIELDS, codes):
        if code not in table:
            lo, hi = min(table), max(table)
            raise InputError(f"{p.name}: {field} code {code:02d} out of range {lo:02d}-{hi:02d}")
    item = RavdessItem(p, *codes)
    if item.emotion == 1 and item.intensity == 2:
        raise InputError(f"{p.name}: RAVDESS has no strong intensity for the neutral emotion")
    if check_folder:
        d = _ACTOR_DIR.match(p.parent.name)
        if d is None:
            raise InputError(f"{p.name}: parent folder {p.parent.name!r} is not Actor_XX")
        if int(d.group(1)) != item.actor:
            raise InputError(f"{p.name}: actor {item.actor:02d} does not match its folder {p.parent.name}")
    return item


def scan_tree(root: Union[str, Path], exts: Sequence[str] = (".mp4",)) -> tuple[list[RavdessItem], list[Problem]]:
    """Find every RAVDESS file under ``root`` (recursively, any depth above ``Actor_XX``).

    Files with other extensions are ignored; files with a matching extension whose name
    or folder is malformed are reported as problems, not raised.

    Args:
        root: the dataset folder.
        exts: extensions to collect (case-insensitive), e.g. ``('.mp4',)`` or ``('.wav',)``.

    Returns:
        ``(items sorted by path, problems sorted by path)``.

    Raises:
        InputError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"RAVDESS root {root} is not a folder")
    want = {e.lower() if e.startswith(".") else "." + e.lower() for e in exts}
    items, problems = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if p.suffix.lower() not in want or fn.startswith("."):
                continue
            try:
                items.append(parse_name(p))
            except InputError as e:
                problems.append(Problem(p, str(e)))
    return sorted(items, key=lambda i: str(i.path)), sorted(problems, key=lambda q: str(q.path))


def _codes(values: Optional[Iterable[Union[int, str]]], table: dict[int, str], field: str) -> Optional[set[int]]:
    if values is None:
        return None
    if isinstance(values, (int, str)):
        values = [values]
    by_name = {v.lower(): k for k, v in table.items()}
    out = set()
    for v in values:
        if isinstance(v, str) and not v.isdigit():
            if v.lower() not in by_name:
                raise InputError(f"unknown {field} {v!r}; one of {', '.join(table.values())}")
            out.add(by_name[v.lower()])
        else:
            code = int(v)
            if code not in table:
                raise InputError(f"{field} code {code} out of range {min(table)}-{max(table)}")
            out.add(code)
    return out


def sample_videos(items: Sequence[RavdessItem], n: int, seed: int = 0,
                  actors: Optional[Iterable[Union[int, str]]] = None,
                  emotions: Optional[Iterable[Union[int, str]]] = None,
                  modalities: Optional[Iterable[Union[int, str]]] = None) -> list[RavdessItem]:
    """Draw ``n`` items at random, reproducibly, after filtering.

    The draw depends only on ``seed`` and on the set of items that pass the filters (not
    on their input order). When fewer than ``n`` pass, all of them are returned.

    Args:
        items: the items from :func:`scan_tree`.
        n: how many to draw (>= 0).
        seed: the random seed.
        actors: actor numbers (1..24) to keep, or None for all.
        emotions: emotion codes (1..8) or names ('happy') to keep, or None for all.
        modalities: modality codes (1..3) or names ('full-AV', 'video-only') to keep.

    Returns:
        The drawn items, sorted by path.

    Raises:
        InputError: negative ``n`` or an unknown filter value.
    """
    if n < 0:
        raise InputError(f"n must be >= 0, got {n}")
    a = _codes(actors, {k: f"{k:02d}" for k in range(1, 25)}, "actor")
    e = _codes(emotions, EMOTIONS, "emotion")
    m = _codes(modalities, MODALITIES, "modality")
    pool = sorted((i for i in items if (a is None or i.actor in a) and (e is None or i.emotion in e)
                   and (m is None or i.modality in m)), key=lambda i: str(i.path))
    if n >= len(pool):
        return pool
    idx = np.random.default_rng(seed).choice(len(pool), size=n, replace=False)
    return [pool[j] for j in sorted(idx)]
