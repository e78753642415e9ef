"""download() and extract_tar() against a loopback HTTP server that honours (or ignores) Range requests."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from greedy_infomax.data.download import download, extract_tar
from greedy_infomax.errors import GimError

BODY = bytes(range(256)) * 1000
BODY_MD5 = hashlib.md5(BODY).hexdigest()


class _Server(ThreadingHTTPServer):
    """Serves `files` by path and records the Range header of every request."""

    files: dict[str, bytes]
    ranges: list[str | None]
    ignore_range: bool = False
    short_by: int = 0
    """Bytes left unsent at the end of each body, to simulate a dropped connection."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        requested = self.headers.get("Range")
        self.server.ranges.append(requested)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0 if requested is None or self.server.ignore_range else int(requested[6:-1])  # "bytes=N-"
        if start >= len(body) and start > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start : len(body) - self.server.short_by])

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.ranges = {"/data.bin": BODY}, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server: _Server, path: str = "/data.bin") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_downloads_verifies_and_renames(server: _Server, tmp_path: Path) -> None:
    destination = tmp_path / "sub" / "data.bin"
    assert download(_url(server), destination, BODY_MD5) == destination
    assert destination.read_bytes() == BODY
    assert not (tmp_path / "sub" / "data.bin.part").exists()
    assert server.ranges == [None]


def test_existing_destination_is_not_fetched_again(server: _Server, tmp_path: Path) -> None:
    destination = tmp_path / "data.bin"
    destination.write_bytes(b"already here")
    assert download(_url(server), destination, BODY_MD5) == destination
    assert server.ranges == []


def test_resumes_a_partial_file_with_a_range_request(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "data.bin.part").write_bytes(BODY[:1000])
    download(_url(server), tmp_path / "data.bin", BODY_MD5)
    assert server.ranges == ["bytes=1000-"]
    assert (tmp_path / "data.bin").read_bytes() == BODY


def test_restarts_when_the_server_ignores_range(server: _Server, tmp_path: Path) -> None:
    server.ignore_range = True
    (tmp_path / "data.bin.part").write_bytes(BODY[:1000])
    download(_url(server), tmp_path / "data.bin", BODY_MD5)
    assert (tmp_path / "data.bin").read_bytes() == BODY


def test_complete_partial_file_is_verified_without_refetching(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "data.bin.part").write_bytes(BODY)
    download(_url(server), tmp_path / "data.bin", BODY_MD5)  # the server answers 416
    assert (tmp_path / "data.bin").read_bytes() == BODY


def test_dropped_connection_keeps_the_partial_file_for_a_resume(server: _Server, tmp_path: Path) -> None:
    server.short_by = 500
    with pytest.raises(GimError, match="run again to resume"):
        download(_url(server), tmp_path / "data.bin", BODY_MD5)
    assert (tmp_path / "data.bin.part").stat().st_size == len(BODY) - 500
    server.short_by = 0
    download(_url(server), tmp_path / "data.bin", BODY_MD5)
    assert server.ranges[-1] == f"bytes={len(BODY) - 500}-"
    assert (tmp_path / "data.bin").read_bytes() == BODY


def test_md5_mismatch_deletes_the_file_and_names_both_checksums(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(GimError) as error:
        download(_url(server), tmp_path / "data.bin", "0" * 32)
    message = str(error.value)
    assert "data.bin" in message and BODY_MD5 in message and "0" * 32 in message
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_a_gim_error(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(GimError, match="404"):
        download(_url(server, "/missing.bin"), tmp_path / "missing.bin", BODY_MD5)


def test_unreachable_server_is_a_gim_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends, so nothing listens there
    with pytest.raises(GimError, match="could not download"):
        download(f"http://127.0.0.1:{port}/data.bin", tmp_path / "data.bin", BODY_MD5)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_extract_tar_moves_the_entries_into_place(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_gz({"folder/x.bin": b"x", "folder/y.bin": b"yy"}))
    extract_tar(archive, tmp_path)
    assert (tmp_path / "folder" / "y.bin").read_bytes() == b"yy"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.tar.gz", "folder"]


@pytest.mark.parametrize(
    "content",
    [b"not a tar at all", _tar_gz({"folder/x.bin": b"x" * 5000})[:-30], _tar_gz({"../escape.bin": b"x"})],
    ids=["garbage", "truncated", "path-traversal"],
)
def test_extract_tar_rejects_bad_archives(tmp_path: Path, content: bytes) -> None:
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(GimError, match="bad.tar.gz"):
        extract_tar(archive, tmp_path / "into")
    assert not (tmp_path / "escape.bin").exists()
