"""RAVDESS names: parsing valid and malformed names, scanning a tree, reproducible filtered sampling."""

import random
from pathlib import Path

import pytest

from vidinv.errors import InputError
from vidinv.metrics.ravdess import RavdessItem, parse_name, sample_videos, scan_tree


def test_feature_parse_valid():
    it = parse_name("/data/Actor_07/02-01-06-01-02-02-07.mp4")
    assert (it.modality, it.vocal_channel, it.emotion, it.intensity, it.statement, it.repetition, it.actor) == (
        2, 1, 6, 1, 2, 2, 7)
    assert it.modality_name == "video-only" and it.vocal_channel_name == "speech"
    assert it.emotion_name == "fearful" and it.intensity_name == "normal"
    assert it.statement_text == "Dogs are sitting by the door" and it.gender == "male"
    assert parse_name("Actor_24/01-02-08-02-01-01-24.mp4").gender == "female"
    d = parse_name("Actor_12/01-01-03-02-01-01-12.mp4").as_dict()
    assert d["emotion"] == "happy" and d["intensity"] == "strong" and d["actor"] == 12 and d["stem"] == "01-01-03-02-01-01-12"
    assert parse_name("x/01-01-01-01-01-01-05.mp4", check_folder=False).actor == 5


@pytest.mark.parametrize("path,msg", [
    ("Actor_01/01-01-03-01-01-01.mp4", "not a RAVDESS name"),
    ("Actor_01/1-01-03-01-01-01-01.mp4", "not a RAVDESS name"),
    ("Actor_01/video.mp4", "not a RAVDESS name"),
    ("Actor_01/04-01-03-01-01-01-01.mp4", "modality code 04"),
    ("Actor_01/01-03-03-01-01-01-01.mp4", "vocal channel code 03"),
    ("Actor_01/01-01-09-01-01-01-01.mp4", "emotion code 09"),
    ("Actor_01/01-01-00-01-01-01-01.mp4", "emotion code 00"),
    ("Actor_01/01-01-03-03-01-01-01.mp4", "intensity code 03"),
    ("Actor_01/01-01-03-01-03-01-01.mp4", "statement code 03"),
    ("Actor_01/01-01-03-01-01-03-01.mp4", "repetition code 03"),
    ("Actor_25/01-01-03-01-01-01-25.mp4", "actor code 25"),
    ("Actor_01/01-01-01-02-01-01-01.mp4", "no strong intensity for the neutral"),
    ("Actor_02/01-01-03-01-01-01-01.mp4", "does not match its folder Actor_02"),
    ("videos/01-01-03-01-01-01-01.mp4", "is not Actor_XX"),
])
def test_exception_malformed(path, msg):
    with pytest.raises(InputError, match=msg):
        parse_name(path)


VALID = [f"Actor_{a:02d}/{m:02d}-01-{e:02d}-{i:02d}-01-{r:02d}-{a:02d}.mp4"
         for a in (1, 2, 3) for m in (1, 2) for e in (1, 3, 5) for i in (1, 2) for r in (1, 2) if not (e == 1 and i == 2)]


def make_tree(root: Path) -> Path:
    for rel in VALID:
        p = root / "Video_Speech" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    bad = ["Video_Speech/Actor_01/01-01-09-01-01-01-01.mp4", "Video_Speech/Actor_02/01-01-03-01-01-01-03.mp4",
           "Video_Speech/Actor_03/clip.mp4", "loose/01-01-03-01-01-01-01.mp4"]
    for rel in bad:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    (root / "Video_Speech" / "Actor_01" / "README.txt").write_text("ignored: not an .mp4")
    (root / "Video_Speech" / "Actor_01" / "03-01-03-01-01-01-01.wav").write_bytes(b"")
    return root


def test_scan_tree(tmp_path):
    items, problems = scan_tree(make_tree(tmp_path))
    assert len(items) == len(VALID) == 60
    assert all(isinstance(i, RavdessItem) for i in items)
    assert [str(i.path) for i in items] == sorted(str(i.path) for i in items)
    reasons = {p.path.name: p.reason for p in problems}
    assert len(problems) == 4
    assert "emotion code 09" in reasons["01-01-09-01-01-01-01.mp4"]
    assert "not a RAVDESS name" in reasons["clip.mp4"]
    assert any("does not match its folder" in r for r in reasons.values())
    assert any("is not Actor_XX" in r for r in reasons.values())
    wav, _ = scan_tree(tmp_path, exts=("wav",))
    assert [i.modality_name for i in wav] == ["audio-only"]
    with pytest.raises(InputError, match="not a folder"):
        scan_tree(tmp_path / "missing")


def test_sample_reproducible_and_filtered(tmp_path):
    items, _ = scan_tree(make_tree(tmp_path))
    a = sample_videos(items, 10, seed=3)
    shuffled = items[:]
    random.Random(0).shuffle(shuffled)
    assert sample_videos(shuffled, 10, seed=3) == a  # independent of the input order
    assert len(a) == 10 and len(set(a)) == 10
    draws = {tuple(i.stem for i in sample_videos(items, 10, seed=s)) for s in range(5)}
    assert len(draws) > 1  # the seed matters
    f = sample_videos(items, 4, seed=1, actors=[2], emotions=["happy", 5], modalities=["video-only"])
    assert len(f) == 4 and all(i.actor == 2 and i.emotion in (3, 5) and i.modality == 2 for i in f)
    pool = sample_videos(items, 100, seed=0, emotions="neutral")
    assert len(pool) == 12 and all(i.emotion_name == "neutral" for i in pool)  # fewer than n: all
    assert sample_videos(items, 0, seed=0) == []
    with pytest.raises(InputError, match="unknown emotion"):
        sample_videos(items, 2, emotions=["joyful"])
    with pytest.raises(InputError, match="actor code 30"):
        sample_videos(items, 2, actors=[30])
    with pytest.raises(InputError, match="n must be"):
        sample_videos(items, -1)
