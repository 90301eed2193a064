"""Go's archive/tar as a reference: a small Go program (``main.go``, stdlib
only, built once per session) reads tar streams sent to it one after another
and reports each one's entries, or where it refused; ``by_debchunk`` reads
the same bytes the way debchunk's layer reader does (``TarReader``, the
entries made inodes, content hashed as ``LayersTree`` and ``LayerStream``
hash it) and reports them in the same form, so the two compare whole.

The session fixture ``gotar`` fails when ``go`` is missing (``make test``
installs golang-go)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from mapping import LayerArchive, MappingError
from mapping.layers import _dir_meta, _meta, _read_members, _xattrs
from mapping.tarread import (
    _HEADER_ONLY,
    _REGULAR,
    PAX_GLOBAL,
    TarEndsInside,
    TarFormatError,
    TarMember,
    TarReader,
)

SOURCE = Path(__file__).resolve().parent / "main.go"
# What main.go leaves unread (maxContent).
GO_MAX_CONTENT = 64 << 20
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
FAKE_DIGEST = "sha256:" + "0" * 64
Result = dict[str, Any]


def build(where: Path) -> None:
    """Build main.go into ``where``/gotar, offline (no module, stdlib only)."""
    env = {**os.environ, "GO111MODULE": "off", "GOPROXY": "off", "GOFLAGS": "", "CGO_ENABLED": "0"}
    env["GOCACHE"] = str(where / "cache")
    subprocess.run(["go", "build", "-o", str(where / "gotar"), str(SOURCE)], check=True, env=env, cwd=where)


class GoTar:
    """The Go reader built in ``where``, one process for many streams."""

    def __init__(self, where: Path) -> None:
        self._process = subprocess.Popen([where / "gotar"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._process.stdin is not None and self._process.stdout is not None
        self._in: IO[bytes] = self._process.stdin
        self._out: IO[bytes] = self._process.stdout

    def read(self, data: bytes) -> Result:
        """What Go reads from ``data``: {"entries": [...], "error": ""}."""
        self._in.write(struct.pack(">Q", len(data)))
        self._in.write(data)
        self._in.flush()
        line = self._out.readline()
        assert line, "the Go reader died"
        result: Result = json.loads(line)
        return result

    def close(self) -> None:
        self._in.close()
        self._process.wait(timeout=30)


@pytest.fixture(scope="session")
def gotar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoTar]:
    """The Go reader; without ``go`` (which ``make test`` installs), a failure."""
    if shutil.which("go") is None:
        pytest.fail("go is missing: install golang-go (the Makefile's APT_PACKAGES), or run make test")
    where = tmp_path_factory.mktemp("gotar")
    build(where)
    reader = GoTar(where)
    yield reader
    reader.close()


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in chunks of ``size`` bytes."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _hex(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").hex()


def _record(member: TarMember, content_id: str | None) -> dict[str, Any]:
    """An entry as main.go prints it."""
    sha256: str | None = None
    if member.size > GO_MAX_CONTENT:
        sha256 = "unread"
    elif member.type in _HEADER_ONLY:
        sha256 = EMPTY_SHA256
    elif member.isreg():
        sha256 = content_id
    return {
        "name": _hex(member.name),
        "link": _hex(member.linkname),
        "type": member.type[0],
        "mode": member.mode,
        "uid": member.uid,
        "gid": member.gid,
        "size": member.size,
        "mtime": member.mtime,
        "devmajor": member.devmajor,
        "devminor": member.devminor,
        "xattrs": [[k.hex(), v.hex()] for k, v in _xattrs(member)],
        "sha256": sha256,
    }


def _inode(member: TarMember, content_id: str | None) -> None:
    """The entry made an inode as LayersTree makes it (its checks raise)."""
    if member.isdir():
        _dir_meta(member, FAKE_DIGEST)
    elif not member.islnk():
        _meta(0, member, content_id, FAKE_DIGEST)


def by_debchunk(data: bytes, chunk: int = 1 << 16) -> Result:
    """What debchunk's layer reader reads from ``data``, in main.go's form;
    the error is the ``MappingError``'s text."""
    layer = LayerArchive("<test>", FAKE_DIGEST, "none")
    reader = TarReader(pieces(data, chunk))
    entries: list[dict[str, Any]] = []
    try:
        for member, content_id in _read_members(reader, layer, lambda m: m.size <= GO_MAX_CONTENT):
            _inode(member, content_id)
            entries.append(_record(member, content_id))
    except MappingError as e:
        return {"entries": entries, "error": e.what}
    return {"entries": entries, "error": ""}


def _expanded(member: TarMember, stored: bytes) -> bytes:
    if member.sparse is None:
        return stored
    out, at = bytearray(member.size), 0
    for offset, size in member.sparse:
        out[offset : offset + size] = stored[at : at + size]
        at += size
    return bytes(out)


def by_tarreader(data: bytes, chunk: int = 1 << 16) -> Result:
    """What ``TarReader`` alone reads from ``data`` (no layer rules), in
    main.go's form; a PAX global header as ``global_view`` gives it."""
    reader = TarReader(pieces(data, chunk))
    entries: list[dict[str, Any]] = []
    try:
        for member in reader:
            if member.type == PAX_GLOBAL:
                entries.append(global_view(_record(member, None)))
                continue
            sha256 = "unread" if member.size > GO_MAX_CONTENT else None
            if sha256 is None:
                stored = bytearray()
                reader.data(stored.extend)
                sha256 = hashlib.sha256(_expanded(member, bytes(stored))).hexdigest()
            entries.append({**_record(member, None), "sha256": sha256})
    except (TarFormatError, TarEndsInside) as e:
        return {"entries": entries, "error": f"{type(e).__name__}: {e}"}
    return {"entries": entries, "error": ""}


def global_view(entry: dict[str, Any]) -> dict[str, Any]:
    """What a PAX global header entry is compared by: its records (Go sets
    its name from a path record in a random order when another record is
    bad)."""
    if entry["type"] != PAX_GLOBAL[0]:
        return entry
    return {"type": entry["type"], "xattrs": entry["xattrs"]}


def go_as_tarreader_reads(result: Result) -> Result:
    """Go's result with PAX global headers as ``global_view`` gives them."""
    return {"entries": [global_view(e) for e in result["entries"]], "error": result["error"]}


def go_as_debchunk_reads(result: Result) -> Result:
    """Go's result without what debchunk leaves out on purpose: PAX global
    headers are entries to Go, and ignored by containerd and moby; the
    content of types debchunk does not store is not hashed."""
    entries = []
    for entry in result["entries"]:
        kind = bytes([entry["type"]])
        if kind == PAX_GLOBAL:
            continue
        if kind not in _HEADER_ONLY and kind not in _REGULAR and entry["sha256"] != "unread":
            entry = {**entry, "sha256": None}
        entries.append(entry)
    return {"entries": entries, "error": result["error"]}
