"""The hostile corpus (``tests/hostile.py``) through ``debchunk rechunk``, as
a stranger's image reaches it: each image is refused with one error line and
exit status 1, nothing written, or re-chunked into the tree Go's
``archive/tar`` reads from it.  Never a traceback, an "internal error" or a
raw control byte on the terminal; each run's peak memory and temporary space
are measured and bounded."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.conftest import RunCli
from tests.gotar.harness import GoTar, gotar  # noqa: F401 (a fixture)
from tests.hostile import CASES, EPOCH, TAR_GZIP, TAR_ZSTD, Image, write_layout
from tests.images import manifest

# Peak resident memory of one run, and its temporary space: the issue's
# bound, and the budget each run is given (--tmp-budget), which the gzip
# bomb of the corpus exceeds.
MEMORY_LIMIT = 500 << 20
TEMP_BUDGET = 64 << 20
# Unprintable bytes other than the newline that ends each line.
_RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_KINDS = {ord("0"): "file", 0: "file", ord("7"): "file", ord("2"): "symlink", ord("5"): "dir"}
_KINDS |= {ord("3"): "char", ord("4"): "block", ord("6"): "fifo"}


class _Peak(threading.Thread):
    """The largest space the files under ``root`` took while it ran."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root, self.peak, self.done = root, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, _space(self.root))

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


def _space(root: Path) -> int:
    """The data blocks of the files under ``root``: what they hold, rounded up
    to 4 KiB blocks, or the blocks they have if fewer (holes); not the file
    system's own index blocks, which ``st_blocks`` counts too (an ext4
    extent block, once a spool of 64 MiB spans more extents)."""
    total = 0
    for path, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(path, name))
                total += min(st.st_blocks * 512, -(-st.st_size // 4096) * 4096)
    return total


# The child reports its own peak memory as it exits: its mm's high-water
# mark (VmHWM, proc(5)).  ru_maxrss would not do for it: exec keeps the peak
# of the process it replaced, and a child forked from this large test
# process starts at its size.  To it is added the largest peak of the
# processes it waited for (its spooling children, mapping.spooler): a bound
# of what it and one of them held at once.
_CHILD = """
import atexit, os, resource, sys
def _peak():
    with open("/proc/self/status") as status, open(os.environ["HOSTILE_PEAK"], "w") as out:
        own = int(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
        out.write(str(own + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
atexit.register(_peak)
from encapsulate.cli.main import debchunk_main
sys.exit(debchunk_main())
"""


def _run(ref: str, dest: Path, tmp: Path) -> tuple[int, str, int, int]:
    """``debchunk rechunk ref oci:dest:out`` with TMPDIR at ``tmp``: exit
    status, stderr, peak memory and peak temporary space, in bytes."""
    tmp.mkdir()
    peak = tmp.parent / "peak"
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH), "TMPDIR": str(tmp), "HOSTILE_PEAK": str(peak)}
    budget = f"{TEMP_BUDGET >> 20}M"
    watch = _Peak(tmp)
    watch.start()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, "rechunk", "--tmp-budget", budget, ref, f"oci:{dest}:out"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=300,
    )
    memory = int(peak.read_text()) * 1024  # kB
    return proc.returncode, proc.stderr.decode("utf-8", "replace"), memory, watch.stop()


def _tar_of(data: bytes, media_type: str) -> bytes:
    """The layer's tar; a compressed stream a client cannot read raises ``ValueError``."""
    try:
        if media_type == TAR_GZIP:
            return gzip.decompress(data)
        if media_type == TAR_ZSTD:
            return zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()
    except (OSError, EOFError, zstandard.ZstdError) as e:
        raise ValueError(f"{media_type}: {e}") from None
    return data


def _path(hexname: str) -> str:
    name = bytes.fromhex(hexname).decode("utf-8", "surrogateescape")
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


def _resolve(tree: dict[str, tuple[Any, ...]], path: str) -> str:
    """``path`` with the symlinks among its parents followed inside the
    root (".." stops at it), as clients unpack a layer: chrooted, or with
    securejoin."""
    parts, hops = _clean(path.split("/")), 0
    done: list[str] = []
    while len(parts) > 1:
        entry = tree.get("/".join([*done, parts[0]]))
        if entry is None or entry[0] != "symlink":
            done.append(parts.pop(0))
            continue
        hops += 1
        assert hops < 40, f"{path}: too many symlinks"
        target = entry[4]
        parts = _clean([*([] if target.startswith("/") else done), *target.split("/"), *parts[1:]])
        done = []
    return "/".join([*done, *parts])


def _clean(parts: list[str]) -> list[str]:
    out: list[str] = []
    for p in parts:
        if p == "..":
            out = out[:-1]
        elif p not in ("", "."):
            out.append(p)
    return out


def flatten(layers: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """The tree Go's reading of ``layers`` (bottom first) gives: each path's
    kind, permissions, owner, target, device numbers, xattrs and content;
    a hard link as the inode it names.  Later entries replace earlier ones."""
    tree: dict[str, tuple[Any, ...]] = {}
    for layer in layers:
        for e in layer["entries"]:
            path = _resolve(tree, _path(e["name"]))
            if e["type"] == ord("g") or path in ("", "."):
                continue
            if e["type"] == ord("1"):
                target = _resolve(tree, _path(e["link"]))
                if target not in tree:
                    raise ValueError(f"hard link {path} to {target}, which is not there")
                tree[path] = tree[target]
                continue
            kind = _KINDS[e["type"]]
            link = bytes.fromhex(e["link"]).decode("utf-8", "surrogateescape") if kind == "symlink" else None
            device = (e["devmajor"], e["devminor"]) if kind in ("char", "block") else None
            content = e["sha256"] if kind == "file" else None
            xattrs = tuple(sorted(map(tuple, e["xattrs"])))
            tree[path] = (kind, e["mode"] & 0o7777, e["uid"], e["gid"], link, device, xattrs, content)
    return tree


def _go_tree(go: GoTar, blobs: list[tuple[bytes, str]]) -> dict[str, tuple[Any, ...]] | str:
    """What Go reads from the layers, or why it (or a client unpacking what
    it read) refuses them."""
    try:
        results = [go.read(_tar_of(blob, media_type)) for blob, media_type in blobs]
        for result in results:
            if result["error"]:
                return str(result["error"])
        return flatten(results)
    except ValueError as e:
        return str(e)


def _source_blobs(image: Image) -> list[tuple[bytes, str]]:
    return [(layer.blob, layer.media_type) for layer in image.layers]


def _output_blobs(layout: Path) -> list[tuple[bytes, str]]:
    out = []
    for d in manifest(layout, "out")["layers"]:
        blob = (layout / "blobs/sha256" / d["digest"].split(":")[1]).read_bytes()
        out.append((blob, d["mediaType"]))
    return out


def _same_tree(source: dict[str, tuple[Any, ...]], output: dict[str, tuple[Any, ...]]) -> None:
    """Every path of the source as it is there; the output adds only the
    parent directories a source may leave out."""
    for path, entry in source.items():
        assert output.get(path) == entry, path
    for path in output.keys() - source.keys():
        assert output[path][0] == "dir" and any(p.startswith(path + "/") for p in source), path


def test_the_corpus_is_large_and_covers_every_class() -> None:
    kinds = {case.kind for case in CASES.values()}
    assert len(CASES) >= 40
    assert kinds == {"tar", "accepts", "numbers", "resources", "paths", "strings", "integrity", "config"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_image(name: str, gotar: GoTar, tmp_path: Path) -> None:  # noqa: F811
    case = CASES[name]
    image = case.image()
    ref = write_layout(tmp_path / "source", image)
    dest = tmp_path / "dest"
    started = time.monotonic()
    status, err, memory, temporary = _run(ref, dest, tmp_path / "tmp")
    seconds = time.monotonic() - started
    assert "Traceback" not in err and "internal error" not in err, err
    assert not _RAW_CONTROL.search(err), ascii(err)
    assert memory < MEMORY_LIMIT, f"{memory >> 20} MiB"
    assert temporary <= TEMP_BUDGET, f"{temporary >> 20} MiB of temporary space"
    assert seconds < 60
    assert not any((tmp_path / "tmp").iterdir()), "temporary files left behind"
    errors = [line for line in err.splitlines() if "error:" in line]
    go = _go_tree(gotar, _source_blobs(image))
    if status == 1:
        assert len(errors) == 1 and errors[0].startswith("debchunk: error: "), err
        assert not dest.exists()
        for word in case.words or ():
            assert word in errors[0], errors[0]
        # Refused where Go refuses, or by a rule of debchunk's own.
        assert isinstance(go, str) or case.words is not None, f"Go reads it; debchunk says {errors[0]}"
        return
    assert status == 0 and not errors, err
    assert case.words is None, f"accepted; expected an error naming {case.words}"
    assert not isinstance(go, str), f"Go refuses it ({go}); debchunk wrote an image"
    _same_tree(go, flatten_output(gotar, dest))


def flatten_output(go: GoTar, layout: Path) -> dict[str, tuple[Any, ...]]:
    tree = _go_tree(go, _output_blobs(layout))
    assert not isinstance(tree, str), f"Go refuses debchunk's own output: {tree}"
    return tree


_TOOLS_READ = sorted(
    name for name, case in CASES.items() if case.kind in ("strings", "integrity", "config", "paths")
)


@pytest.mark.parametrize("name", _TOOLS_READ)
def test_the_tools_read_hostile_images_safely(name: str, run_cli: RunCli, tmp_path: Path) -> None:
    """``inspect`` (its layers streamed) and ``validate`` of a hostile image: exit 0
    or 1, never a traceback, and nothing from the image reaches the
    terminal raw."""
    ref = write_layout(tmp_path / "source", CASES[name].image())
    for args in (("inspect", ref), ("validate", ref)):
        proc = run_cli(*args)
        assert proc.returncode in (0, 1), (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
        for output in (proc.stdout, proc.stderr):
            assert not _RAW_CONTROL.search(output.replace("\t", " ")), (args, ascii(output))
        if proc.returncode == 1:
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
