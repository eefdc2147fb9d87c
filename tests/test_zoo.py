"""The model zoo: config facts, status, resumable fetch from a real local HTTP server, import, require, CLI."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from vidinv.errors import MissingWeightsError, VidinvError
from vidinv.zoo import Zoo, sha256_file

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """http.server in a thread serving PAYLOAD at /blob.bin with Range support; records request headers."""

    def __init__(self):
        self.requests: list[dict] = []  # {'path', 'range', 'status'}
        self.cut_next = 0  # how many upcoming full/partial responses to cut mid-file
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # keep test output clean
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                rec = dict(path=self.path, range=rng, status=None)
                srv.requests.append(rec)
                if self.path != "/blob.bin":
                    rec["status"] = 404
                    self.send_error(404)
                    return
                start = 0
                if rng:
                    m = re.fullmatch(r"bytes=(\d+)-", rng)
                    start = int(m.group(1))
                    if start >= len(PAYLOAD):
                        rec["status"] = 416
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                body = PAYLOAD[start:]
                rec["status"] = 206 if rng else 200
                self.send_response(rec["status"])
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if srv.cut_next > 0:
                    srv.cut_next -= 1
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    import socket

                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("VIDINV_HOME", str(h))
    monkeypatch.delenv("VIDINV_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return h


def _zoo(url: str, sha: str | None = PAYLOAD_SHA, size: int | None = len(PAYLOAD)) -> Zoo:
    cfg = {"artifacts": [
        dict(name="blob", file="blob.bin", kind="direction", source=dict(type="http", url=url), size=size,
             sha256=sha, license="test", cache="models/blob.bin"),
        dict(name="other", file="other.pt", kind="generator", source=dict(type="gdrive", id="XYZ"),
             cache="models/other.pt"),
    ]}
    return Zoo(config=cfg)


# ---- fetch ----------------------------------------------------------------------------------------------------------
def test_fetch_full_download_verified(home, server):
    zoo = _zoo(server.url + "/blob.bin")
    assert zoo.status("blob") == "missing"
    out = zoo.fetch(["blob"], progress=False)
    p = out["blob"]
    assert p == home / "models" / "blob.bin"
    assert p.read_bytes() == PAYLOAD
    assert not p.with_name("blob.bin.part").exists()
    assert zoo.status("blob") == "verified"  # from the stamp written at download time
    assert zoo.status("blob", check=True) == "verified"
    assert [r["range"] for r in server.requests] == [None]
    # a second fetch does not download again
    zoo.fetch(["blob"], progress=False)
    assert len(server.requests) == 1


def test_fetch_resumes_after_cut_connection(home, server):
    server.cut_next = 1
    zoo = _zoo(server.url + "/blob.bin")
    p = zoo.fetch(["blob"], progress=False, retries=2)["blob"]
    assert p.read_bytes() == PAYLOAD
    assert zoo.status("blob", check=True) == "verified"
    assert len(server.requests) == 2
    assert server.requests[0]["range"] is None
    m = re.fullmatch(r"bytes=(\d+)-", server.requests[1]["range"] or "")
    assert m and 0 < int(m.group(1)) < len(PAYLOAD)
    assert server.requests[1]["status"] == 206


def test_fetch_resumes_leftover_part_file(home, server):
    zoo = _zoo(server.url + "/blob.bin")
    part = zoo.path("blob").with_name("blob.bin.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:123_456])
    zoo.fetch(["blob"], progress=False)
    assert server.requests[0]["range"] == "bytes=123456-"
    assert zoo.path("blob").read_bytes() == PAYLOAD
    assert not part.exists()


def test_fetch_checksum_mismatch_leaves_nothing(home, server):
    zoo = _zoo(server.url + "/blob.bin", sha="0" * 64)
    with pytest.raises(VidinvError, match="sha256 mismatch"):
        zoo.fetch(["blob"], progress=False)
    p = zoo.path("blob")
    assert not p.exists()
    assert not p.with_name("blob.bin.part").exists()
    assert zoo.status("blob") == "missing"


def test_fetch_404_is_clear(home, server):
    zoo = _zoo(server.url + "/gone.bin")
    with pytest.raises(VidinvError, match=r"404.*gone\.bin"):
        zoo.fetch(["blob"], progress=False)
    assert not zoo.path("blob").exists()


def test_fetch_without_checksum_is_present(home, server):
    zoo = _zoo(server.url + "/blob.bin", sha=None, size=None)
    zoo.fetch(["blob"], progress=False)
    assert zoo.status("blob") == "present"
    assert zoo.path("blob").read_bytes() == PAYLOAD


def test_fetch_gdrive_through_gdown_is_verified(home, monkeypatch):
    import gdown

    calls = []

    def fake_download(id=None, output=None, quiet=False, resume=False, **kw):
        calls.append((id, output, resume))
        Path(output).write_bytes(PAYLOAD if id == "GOOD" else b"html error page")
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    cfg = {"artifacts": [dict(name=n, file=f"{n}.pt", kind="generator", source=dict(type="gdrive", id=i),
                              sha256=PAYLOAD_SHA, cache=f"models/{n}.pt") for n, i in (("g", "GOOD"), ("b", "BAD"))]}
    zoo = Zoo(config=cfg)
    assert zoo.fetch(["g"], progress=False)["g"].read_bytes() == PAYLOAD
    assert calls[0][0] == "GOOD" and calls[0][1].endswith("g.pt.part") and calls[0][2] is True
    assert zoo.status("g") == "verified"
    with pytest.raises(VidinvError, match="sha256 mismatch"):
        zoo.fetch(["b"], progress=False)
    assert not zoo.path("b").exists() and not zoo.path("b").with_name("b.pt.part").exists()


# ---- require / resolve ----------------------------------------------------------------------------------------------
def test_require_offline_missing_names_file_and_fix(home):
    zoo = _zoo("http://127.0.0.1:9/never")
    with pytest.raises(MissingWeightsError) as ei:
        zoo.require("blob", offline=True)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "blob.bin" in msg and "vidinv weights fetch blob" in msg
    assert str(zoo.path("blob")) in msg and "vidinv weights import" in msg
    assert "http://127.0.0.1:9/never" in msg  # where it comes from


def test_require_offline_from_env(home, monkeypatch):
    monkeypatch.setenv("VIDINV_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="143_enc.pth"):
        Zoo().require("fs_encoder_143")


def test_require_fetches_on_first_use(home, server):
    zoo = _zoo(server.url + "/blob.bin")
    p = zoo.require("blob", offline=False, progress=False)
    assert p.read_bytes() == PAYLOAD
    assert zoo.require("blob", offline=True) == p  # present -> path, no network
    assert len(server.requests) == 1


def test_require_download_failure_is_missing_weights(home, server):
    zoo = _zoo(server.url + "/gone.bin")
    with pytest.raises(MissingWeightsError, match=r"404.*vidinv weights fetch blob"):
        zoo.require("blob", offline=False, progress=False)


def test_resolve_path_override_and_names(home, tmp_path):
    zoo = _zoo("http://127.0.0.1:9/never")
    f = tmp_path / "mine.pt"
    f.write_bytes(b"x")
    assert zoo.resolve(str(f)) == f.resolve()
    with pytest.raises(VidinvError, match="no such file"):
        zoo.resolve(str(tmp_path / "absent.pt"))
    with pytest.raises(VidinvError, match="unknown zoo artifact"):
        zoo.resolve("nonsense")
    zoo.path("blob").parent.mkdir(parents=True)
    zoo.path("blob").write_bytes(PAYLOAD)
    assert zoo.resolve("blob.bin") == zoo.path("blob")  # the published file name works as a name


def test_status_corrupt_on_size_and_checksum(home):
    zoo = _zoo("http://127.0.0.1:9/never")
    p = zoo.path("blob")
    p.parent.mkdir(parents=True)
    p.write_bytes(PAYLOAD[:-1])
    assert zoo.status("blob") == "corrupt"
    bad = bytearray(PAYLOAD)
    bad[10] ^= 1
    p.write_bytes(bytes(bad))
    assert zoo.status("blob") == "present"  # same size, not hashed yet
    assert zoo.verify(["blob"]) == {"blob": "corrupt"}
    with pytest.raises(MissingWeightsError, match="checksum"):
        zoo.require("blob", offline=True)


# ---- import ---------------------------------------------------------------------------------------------------------
def test_import_dir_by_checksum_under_other_name(home, tmp_path):
    zoo = _zoo("http://127.0.0.1:9/never")
    src = tmp_path / "usb" / "deep" / "folder"
    src.mkdir(parents=True)
    (src / "renamed_download(1).bin").write_bytes(PAYLOAD)
    (src / "noise.bin").write_bytes(PAYLOAD[:1000])
    found = zoo.import_dir(tmp_path / "usb")
    assert set(found) == {"blob"}
    assert zoo.path("blob").read_bytes() == PAYLOAD
    assert zoo.status("blob") == "verified"


def test_import_dir_by_name_rejects_wrong_checksum(home, tmp_path):
    zoo = _zoo("http://127.0.0.1:9/never")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "blob.bin").write_bytes(b"not it" * 10)
    (tmp_path / "in" / "other.pt").write_bytes(b"generator bytes")
    found = zoo.import_dir(tmp_path / "in", link=True)
    assert set(found) == {"other"}  # no checksum known: accepted by name
    assert zoo.path("other").is_symlink()
    assert zoo.status("other") == "present"
    assert zoo.status("blob") == "missing"
    with pytest.raises(VidinvError, match="not a folder"):
        zoo.import_dir(tmp_path / "nope")


def test_import_dir_of_the_cache_itself_is_harmless(home):
    zoo = _zoo("http://127.0.0.1:9/never")
    p = zoo.path("other")
    p.parent.mkdir(parents=True)
    p.write_bytes(b"generator bytes")
    assert zoo.import_dir(home, link=True) == {"other": p}
    assert not p.is_symlink() and p.read_bytes() == b"generator bytes"


# ---- the real zoo.yaml ----------------------------------------------------------------------------------------------
def test_zoo_yaml_entries_are_complete(home):
    zoo = Zoo()
    for name in ("fs_encoder_143", "psp_ffhq_encode", "arcface_r50", "bisenet_79999", "e4e_ffhq_encode"):
        a = zoo.get(name)
        assert a.source["type"] == "gdrive" and re.fullmatch(r"[\w-]{25,40}", a.source["id"])
        assert a.license
    assert zoo.get("143_enc.pth").name == "fs_encoder_143"
    assert zoo.get("backbone.pth").kind == "arcface"
    for a in zoo.artifacts.values():
        assert a.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", a.sha256)
        assert not Path(a.cache).is_absolute() and ".." not in Path(a.cache).parts
    assert zoo.path("fan_s3fd").parent == Path(home).parent / "torch" / "hub" / "checkpoints"


def test_zoo_yaml_direction_checksums_match_shared(home, directions_dir):
    zoo = Zoo()
    rows = [ln.split("\t") for ln in (directions_dir / "SOURCES.tsv").read_text().splitlines()[1:] if ln.strip()]
    assert len(rows) >= 7
    by_url = {a.source.get("url"): a for a in zoo.artifacts.values()}
    for file, repo, path_in_repo, commit, _lic in rows:
        url = f"https://raw.githubusercontent.com/{repo}/{commit}/{path_in_repo}"
        assert url in by_url, f"{file}: no zoo entry with {url}"
        a = by_url[url]
        f = directions_dir / file
        assert a.size == f.stat().st_size
        assert a.sha256 == sha256_file(f), a.name
    # and import_dir picks all of them out of the shared folder, verified
    found = zoo.import_dir(directions_dir)
    assert {by_url[f"https://raw.githubusercontent.com/{r[1]}/{r[3]}/{r[2]}"].name for r in rows} <= set(found)
    assert all(zoo.status(n) == "verified" for n in found)


# ---- CLI ------------------------------------------------------------------------------------------------------------
def test_cli_weights_list_shows_missing(home, capsys):
    from vidinv.cli import main

    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"fs_encoder_143\s+fs_encoder\s+missing", out)
    assert "non-commercial" in out and str(home) in out


def test_cli_weights_fetch_offline_and_verify(home, capsys, monkeypatch, directions_dir):
    from vidinv.cli import main

    monkeypatch.setenv("VIDINV_OFFLINE", "1")
    assert main(["weights", "fetch", "fs_smiling"]) == 2
    assert "VIDINV_OFFLINE" in capsys.readouterr().err
    assert main(["weights", "import", str(directions_dir / "fs_boundaries")]) == 0
    assert "fs_smiling" in capsys.readouterr().out
    assert main(["weights", "verify", "fs_smiling", "fs_eyeglasses"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"verified\s+fs_smiling", out)


def test_names_used_elsewhere_exist_in_the_zoo(home):
    from vidinv.paths import config_file

    zoo = Zoo()
    used = set(re.findall(r"^\s*artifact:\s*([\w.-]+)", config_file("attributes.yaml").read_text(), re.M)
               if config_file("attributes.yaml").is_file() else [])
    try:
        from pipelines.components import ZOO_ENCODER, ZOO_GENERATOR

        used |= {ZOO_ENCODER, ZOO_GENERATOR}
    except ImportError:
        pass
    if not used:
        pytest.skip("no other module names zoo artifacts yet")
    for n in used:
        zoo.get(n)  # raises on an unknown name


# ---- several files at once, other inverters, import output ------------------------------------------------
def _zoo3(url_ok: str, url_404: str) -> Zoo:
    cfg = {"artifacts": [
        dict(name="blob", file="blob.bin", kind="direction", source=dict(type="http", url=url_ok),
             size=len(PAYLOAD), sha256=PAYLOAD_SHA, cache="models/blob.bin"),
        dict(name="gone", file="gone.pt", kind="generator", source=dict(type="http", url=url_404),
             cache="models/gone.pt"),
        dict(name="refused", file="refused.pth", kind="fs_encoder",
             source=dict(type="http", url="http://127.0.0.1:9/refused.pth"), cache="models/refused.pth"),
        dict(name="handmade", file="handmade.pth", kind="padinv", note="train it yourself",
             source=dict(type="none", page="https://x.org/p"), cache="models/handmade.pth"),
    ]}
    return Zoo(config=cfg)


def test_require_all_offline_names_every_missing_file_in_one_line(home):
    zoo = _zoo3("http://127.0.0.1:9/blob.bin", "http://127.0.0.1:9/gone.pt")
    with pytest.raises(MissingWeightsError) as ei:
        zoo.require_all(["blob", "gone.pt", "refused", "handmade", "blob"], offline=True)
    msg = str(ei.value)
    assert "\n" not in msg and ei.value.exit_code == 3
    for f in ("blob.bin", "gone.pt", "refused.pth", "handmade.pth"):
        assert msg.count(f) == 1, f
    assert "`vidinv weights fetch blob gone refused`" in msg and "vidinv weights import DIR" in msg
    assert "handmade.pth (handmade: no published download)" in msg and "offline" in msg


def test_require_all_online_fetches_what_it_can_and_summarises_failures(home, server):
    zoo = _zoo3(server.url + "/blob.bin", server.url + "/gone.pt")
    with pytest.raises(MissingWeightsError) as ei:
        zoo.require_all(["blob", "gone", "refused"], offline=False, progress=False)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "gone.pt (gone: could not be downloaded (HTTP 404))" in msg
    assert "refused.pth (refused: could not be downloaded (network error))" in msg
    assert "blob.bin" not in msg and zoo.status("blob") == "verified"  # fetched on the way
    assert "Connection refused" not in msg and "Errno" not in msg and "127.0.0.1:9" not in msg
    assert "`vidinv weights fetch gone refused`" in msg
    assert zoo.require_all(["blob"], offline=True) == {"blob": zoo.path("blob")}


def test_zoo_yaml_other_inverters(home, tmp_path):
    zoo = Zoo()
    hfgi, hyper, ada, pad = (zoo.get(n) for n in ("hfgi_ffhq", "hyperinverter_ffhq", "stylegan2_ada_ffhq",
                                                   "padinv_ffhq"))
    assert hfgi.file == "ckpt.pt" and hfgi.source["id"] == "19y6pxOiJWB0NoG3fAZO9Eab66zkN9XIL"
    assert hyper.source["type"] == "gdrive" and hyper.file.endswith(".pt")
    assert "stylegan2_ada_ffhq" in hyper.note
    assert ada.file == "stylegan2-ffhq-config-f.pkl" and "pickle" in ada.note and "--allow-pickle" in ada.note
    assert pad.source["type"] == "none" and "url" not in pad.source and "published" in pad.note
    assert zoo.get("hfgi").name == "hfgi_ffhq" and zoo.get("padinv").name == "padinv_ffhq"
    with pytest.raises(VidinvError, match="no published download"):
        zoo.fetch(["padinv_ffhq"], progress=False)


def test_import_generic_published_name_needs_its_path_hint(home, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO)
    zoo = Zoo()
    (tmp_path / "usb" / "other_project").mkdir(parents=True)
    (tmp_path / "usb" / "other_project" / "ckpt.pt").write_bytes(b"not hfgi")
    assert "hfgi_ffhq" not in zoo.import_dir(tmp_path / "usb")
    (tmp_path / "usb" / "HFGI" / "checkpoint").mkdir(parents=True)
    (tmp_path / "usb" / "HFGI" / "checkpoint" / "ckpt.pt").write_bytes(b"hfgi weights")
    (tmp_path / "usb" / "143_enc.pth").write_bytes(b"fs encoder")
    found = zoo.import_dir(tmp_path / "usb")
    assert set(found) == {"hfgi_ffhq", "fs_encoder_143"}
    assert zoo.path("hfgi_ffhq").read_bytes() == b"hfgi weights"


def test_cli_weights_import_prints_each_file_once(home, tmp_path, capsys, caplog):
    import logging

    from vidinv.cli import main

    caplog.set_level(logging.INFO)
    (tmp_path / "usb").mkdir()
    (tmp_path / "usb" / "143_enc.pth").write_bytes(b"fs encoder")
    (tmp_path / "usb" / "psp_ffhq_encode.pt").write_bytes(b"psp")
    assert main(["weights", "import", str(tmp_path / "usb")]) == 0
    cap = capsys.readouterr()
    text = cap.out + cap.err + caplog.text
    for f in ("143_enc.pth", "psp_ffhq_encode.pt"):
        assert sum(f in line for line in text.splitlines()) == 1, text


def test_cli_weights_list_shows_published_file_and_source(home, capsys):
    from vidinv.cli import main

    assert main(["weights", "list", "--notes"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"fs_encoder_143\s+fs_encoder\s+missing\s+143_enc\.pth\s", out)
    assert re.search(r"hfgi_ffhq\s+hfgi\s+missing\s+ckpt\.pt\s+\?\s+github\.com/Tengfei-Wang/HFGI\s", out)
    assert "FILE" in out.splitlines()[0] and "SOURCE" in out.splitlines()[0]
    assert "convert_ada_pickle" in out  # the note of stylegan2_ada_ffhq


def test_pickle_refusal_names_the_cli_flag_and_the_python_argument(tmp_path):
    import argparse

    import torch

    from vidinv.models.checkpoint import safe_load

    p = tmp_path / "opts.pt"
    torch.save({"opts": argparse.Namespace(size=64)}, p)
    with pytest.raises(VidinvError) as ei:
        safe_load(p)
    msg = str(ei.value)
    assert "\n" not in msg and "`--allow-pickle`" in msg and "allow_pickle=True" in msg
