"""Fetch a dataset file once: resumable, checksummed, and moved into place only when complete.

A file at `destination` is therefore always whole and verified; a download in progress lives beside it as
`<name>.part`, which the next call resumes with an HTTP Range request.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from http import HTTPStatus
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from greedy_infomax.errors import GimError

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60


def download(url: str, destination: Path, md5: str) -> Path:
    """Download `url` to `destination` unless it is already there, and return `destination`.

    An existing `destination` is trusted without re-hashing: only a verified download is ever renamed to it.
    """
    if destination.exists():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    try:
        _fetch(url, partial)
    except (OSError, http.client.HTTPException) as error:
        raise GimError(f"could not download {url} to {partial}: {_describe(error)}; run again to resume") from error
    _verify(partial, md5)
    partial.replace(destination)
    return destination


def _fetch(url: str, partial: Path) -> None:
    """Append the rest of `url` to `partial`, asking the server to skip the bytes already there."""
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        if error.code != HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
            raise
        error.close()
        return  # the partial file already holds every byte; the checksum decides whether it is right
    with response:
        if response.status != HTTPStatus.PARTIAL_CONTENT:
            offset = 0  # the server ignored the Range header and sends the whole file
        with partial.open("ab" if offset else "wb") as out:
            _copy(response, out, offset, partial.name)


def _copy(response: http.client.HTTPResponse, out: BinaryIO, offset: int, name: str) -> None:
    """Stream the body to `out` with a progress bar, failing if the connection closes early.

    http.client ends a short body silently; the check keeps the partial file for a resume instead of
    letting the checksum delete it.
    """
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length is not None else None
    with tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=name) as bar:
        while chunk := response.read(CHUNK_BYTES):
            out.write(chunk)
            bar.update(len(chunk))
    if total is not None and out.tell() < total:
        raise ConnectionError(f"connection closed after {out.tell()} of {total} bytes")


def _verify(path: Path, md5: str) -> None:
    """Delete `path` and fail unless its MD5 is `md5`: a corrupt partial file must not be resumed."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    if digest.hexdigest() != md5:
        path.unlink()
        raise GimError(f"{path}: MD5 {digest.hexdigest()} is not the expected {md5}; deleted it, run again")


def _describe(error: OSError | http.client.HTTPException) -> str:
    """Unwrap urllib's '<urlopen error ...>' so that the message reads as one sentence."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return str(error.reason)
    return str(error)


def extract_tar(archive: Path, into: Path) -> None:
    """Unpack `archive` into `into`, moving its top-level entries into place only once all are extracted.

    An interrupted extraction therefore never leaves a half-filled dataset folder that looks complete.
    """
    staging = into / f".{archive.name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")  # "data": no absolute paths, links or devices outside `into`
        for entry in staging.iterdir():
            entry.replace(into / entry.name)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise GimError(f"{archive}: cannot extract ({error}); delete it and download again") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
