"""Which compressor and level debchunk's layers use, chosen by measurement.

On the tar stream of the real trixie tree (the cached laid-out tree of
``benches.encapsulate_speed``), each candidate compresses the whole stream in
one thread (zstd's multi-threaded mode: in its workers): its CPU seconds
(speed per core) and output size.  Then a sample
(default 8 MiB of the stream) is compressed by every candidate natively and
under ``qemu-x86_64 -cpu MODEL`` for several CPU models (Debian's qemu-user
emulates each model's instruction set and CPUID, so a library that picks code
paths by CPU features takes the model's): a candidate whose digests differ
between models would make a layer's bytes depend on the machine that built it.

Candidates: debchunk's own gzip encoder (``encapsulate/write/gzipstream.py``,
zlib-ng in independently compressed 1 MiB segments, the one whose segments
every core can share) at each level; zlib-ng as one stream; libdeflate
(PyPI ``deflate``, one call per 4 MiB block: each call ends its stream with a
final block, so its blocks cannot be joined into one gzip member without
parsing them, and a layer of several blocks would be several members, of which
ostree-ext reads only the first); ISA-L (PyPI ``isal``); zstd level 3,
single-threaded and in the multi-threaded mode debchunk uses.

The check run under emulation loads ``gzipstream.py`` by itself: it imports
nothing but zlib-ng, as numpy does not start on the emulated CPUs.

Usage: ``python -m benches.compressors [--sample-mib N] [--models M,...] [--json FILE]``;
exits 1 when one of debchunk's own encoders gives different bytes on
different CPUs.  ``--digests FILE`` (used under emulation) prints each
candidate's sha256 of FILE compressed, as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
GZIPSTREAM = REPO_ROOT / "encapsulate" / "write" / "gzipstream.py"
# The baseline x86-64, the first with SSE4.2, the first with AVX2 (which qemu
# 7.2 does not emulate: it runs the model without it, as a CPU lacking it),
# a server one with AVX-512 (likewise), then this machine itself.
MODELS = ("qemu64", "Nehalem", "Haswell", "Skylake-Server")
NATIVE = "native"
_PIECE = 1 << 20  # how the stream is handed to streaming compressors
_LIBDEFLATE_BLOCK = 4 << 20
# debchunk's encoders: these must give the same bytes on every CPU.
OURS_GZIP = "debchunk gzip {level} (zlib-ng segments)"
OURS_ZSTD = "debchunk zstd 3 (multi-threaded mode)"
# The same encoder where zlib-ng is not installed (the Debian package): the
# standard library's zlib.
OURS_GZIP_ZLIB = "debchunk gzip {level} (zlib segments)"


def pieces(data: bytes, size: int = _PIECE) -> Iterator[memoryview]:
    """``data`` in pieces of ``size`` bytes."""
    with memoryview(data) as view:
        for i in range(0, len(view), size):
            yield view[i : i + size]


def load_gzipstream(stdlib_zlib: bool = False) -> ModuleType:
    """debchunk's gzip encoder, loaded from its file alone (not through the
    ``encapsulate`` package, which imports numpy); with ``stdlib_zlib``, as it
    loads where zlib-ng is not installed."""
    name = "debchunk_gzipstream_zlib" if stdlib_zlib else "debchunk_gzipstream"
    spec = importlib.util.spec_from_file_location(name, GZIPSTREAM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and annotations look modules up by name
    saved = sys.modules.get("zlib_ng")
    if stdlib_zlib:
        sys.modules["zlib_ng"] = None  # type: ignore[assignment]  # importing it raises ImportError
    try:
        spec.loader.exec_module(module)
    finally:
        if stdlib_zlib:
            if saved is None:
                del sys.modules["zlib_ng"]
            else:
                sys.modules["zlib_ng"] = saved
    return module


class _Collect:
    """A writer that keeps what it is given."""

    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        self.out += data
        return len(data)


def ours_gzip(level: int, stdlib_zlib: bool = False) -> Callable[[bytes], bytes]:
    """debchunk's gzip member of ``data`` at ``level``, in this thread (with
    ``stdlib_zlib``, by the standard library's zlib)."""

    def compress(data: bytes) -> bytes:
        gzipstream = load_gzipstream(stdlib_zlib)
        sink = _Collect()
        member = gzipstream.GzipMember(sink, level, gzipstream.CompressPool(1))
        for piece in pieces(data):
            member.compressed(piece)
        member.finish()
        return bytes(sink.out)

    return compress


def _raw_stream(make: Callable[[], Any]) -> Callable[[bytes], bytes]:
    """One raw deflate stream from the zlib-style compressor ``make()`` returns."""

    def compress(data: bytes) -> bytes:
        deflate = make()
        out: bytes = b"".join(deflate.compress(p) for p in pieces(data)) + deflate.flush()
        return out

    return compress


def zlib_ng_stream(level: int) -> Callable[[bytes], bytes]:
    """One raw deflate stream by zlib-ng."""

    def make() -> Any:
        from zlib_ng import zlib_ng

        return zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15)

    return _raw_stream(make)


def libdeflate_blocks(level: int) -> Callable[[bytes], bytes]:
    """libdeflate, one whole deflate stream per 4 MiB block."""

    def compress(data: bytes) -> bytes:
        import deflate

        return b"".join(deflate.deflate_compress(bytes(p), level) for p in pieces(data, _LIBDEFLATE_BLOCK))

    return compress


def isal_stream(level: int) -> Callable[[bytes], bytes]:
    """One raw deflate stream by ISA-L (levels 0 to 3)."""

    def make() -> Any:
        from isal import isal_zlib

        return isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)

    return _raw_stream(make)


def zstd_stream(level: int, threads: int) -> Callable[[bytes], bytes]:
    """One zstd frame; ``threads`` 0 is zstd's single-threaded mode, 1 or more its
    multi-threaded one (whose bytes do not depend on the number)."""

    def compress(data: bytes) -> bytes:
        import zstandard

        z = zstandard.ZstdCompressor(level=level, threads=threads).compressobj()
        return b"".join(z.compress(p) for p in pieces(data)) + z.flush()

    return compress


def candidates(timed: bool) -> dict[str, Callable[[bytes], bytes]]:
    """Every candidate by name; ``timed``: the ones timed on the whole stream
    (the determinism check takes every level of debchunk's encoder)."""
    levels = (1, 3, 4, 6, 9) if timed else tuple(range(1, 10))
    found: dict[str, Callable[[bytes], bytes]] = {OURS_GZIP.format(level=k): ours_gzip(k) for k in levels}
    found.update({OURS_GZIP_ZLIB.format(level=k): ours_gzip(k, stdlib_zlib=True) for k in levels})
    found["zlib-ng 6 (one stream)"] = zlib_ng_stream(6)
    found["libdeflate 4 (4 MiB blocks)"] = libdeflate_blocks(4)
    found["libdeflate 6 (4 MiB blocks)"] = libdeflate_blocks(6)
    found["ISA-L 1"] = isal_stream(1)
    found["ISA-L 3"] = isal_stream(3)
    found["zstd 3 (single-threaded mode)"] = zstd_stream(3, 0)
    found[OURS_ZSTD] = zstd_stream(3, 1)
    return found


def ours(name: str) -> bool:
    """Whether ``name`` is one of debchunk's own encoders."""
    return name.startswith("debchunk ")


def digests(sample: bytes, names: Sequence[str] | None = None) -> dict[str, str]:
    """The sha256 of ``sample`` compressed by each candidate (of ``names``, or all)."""
    table = candidates(timed=False)
    return {
        name: hashlib.sha256(fn(sample)).hexdigest()
        for name, fn in table.items()
        if names is None or name in names
    }


def digests_on(model: str, sample: Path, names: Sequence[str] | None = None) -> dict[str, str]:
    """``digests`` of the file ``sample``, computed in a child process running
    on the CPU ``model`` (``qemu-x86_64 -cpu MODEL``), or natively (``NATIVE``)."""
    argv = [sys.executable, "-m", "benches.compressors", "--digests", str(sample)]
    if model != NATIVE:
        argv = ["qemu-x86_64", "-cpu", model, *argv]
    for name in names or ():
        argv += ["--name", name]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, str] = json.loads(done.stdout)
    return result


@dataclass
class Figures:
    """One candidate: CPU seconds and output bytes for the whole stream (0 when
    not timed), and its sample digest on each CPU model."""

    name: str
    cpu_s: float
    size_bytes: int
    digests: dict[str, str]

    @property
    def reproducible(self) -> bool:
        """The same digest on every model."""
        return len(set(self.digests.values())) == 1


@dataclass
class Result:
    """Everything measured."""

    tree: str
    stream_bytes: int
    sample_bytes: int
    models: list[str]
    candidates: list[Figures]
    passed: bool


def tar_stream(tree: Path) -> bytes:
    """The tree as GNU tar writes it, in memory."""
    return subprocess.run(["tar", "-cf", "-", "-C", str(tree), "."], capture_output=True, check=True).stdout


def measure(sample_mib: int, models: Sequence[str]) -> Result:
    """Time every candidate on the trixie tree's stream; digest the sample on every model."""
    from benches.debtrees import TreeSpec
    from benches.encapsulate_speed import laid_out_tree
    from benches.mapping_speed import note

    tree = laid_out_tree(TreeSpec("trixie"))
    stream = tar_stream(tree)
    stream_bytes = len(stream)
    note(f"  {tree}: tar stream {len(stream) / 1e6:.1f} MB")
    figures: dict[str, Figures] = {}
    for name, fn in candidates(timed=True).items():
        note(f"  timing {name}")
        t0 = time.process_time()  # every thread: zstd's workers too
        size = len(fn(stream))
        figures[name] = Figures(name, time.process_time() - t0, size, {})
    for name in candidates(timed=False):
        figures.setdefault(name, Figures(name, 0.0, 0, {}))
    sample = stream[: sample_mib << 20]
    del stream
    with tempfile.NamedTemporaryFile(prefix="compressors-sample-") as f:
        f.write(sample)
        f.flush()
        for model in [*models, NATIVE]:
            note(f"  digests on {model}")
            for name, digest in digests_on(model, Path(f.name)).items():
                figures[name].digests[model] = digest
    every = list(figures.values())
    return Result(
        str(tree),
        stream_bytes,
        len(sample),
        [*models, NATIVE],
        every,
        all(c.reproducible for c in every if ours(c.name)),
    )


def report(r: Result) -> None:
    """The table."""
    stream_bytes = r.stream_bytes
    print(
        f"Compressors on the trixie tree's tar stream ({stream_bytes / 1e6:.1f} MB), one thread; "
        f"determinism on a {r.sample_bytes >> 20} MiB sample on {', '.join(r.models)}"
    )
    print(f"  {'candidate':<42} {'cpu-s':>7} {'MB/s/core':>10} {'size':>10}  same bytes on every CPU")
    for c in r.candidates:
        timed = c.cpu_s > 0
        speed = f"{stream_bytes / c.cpu_s / 1e6:>10.0f}" if timed else f"{'-':>10}"
        size = f"{c.size_bytes / 1e6:>7.1f} MB" if timed else f"{'-':>10}"
        cpu = f"{c.cpu_s:>7.2f}" if timed else f"{'-':>7}"
        groups: dict[str, list[str]] = {}
        for model, digest in c.digests.items():
            groups.setdefault(digest, []).append(model)
        same = (
            "yes"
            if c.reproducible
            else f"NO: {len(groups)} outputs: " + " | ".join(",".join(g) for g in groups.values())
        )
        print(f"  {c.name:<42} {cpu} {speed} {size}  {same}")


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print; or, with ``--digests``, print a sample's digests."""
    parser = argparse.ArgumentParser(prog="python -m benches.compressors", description=__doc__.split("\n")[0])
    parser.add_argument("--sample-mib", type=int, default=8, help="MiB of the stream checked on each CPU")
    parser.add_argument("--models", default=",".join(MODELS), help="qemu CPU models, comma-separated")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    parser.add_argument("--digests", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--name", action="append", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.digests:
        print(json.dumps(digests(Path(args.digests).read_bytes(), args.name)))
        return 0
    if platform.machine() != "x86_64" or shutil.which("qemu-x86_64") is None:
        raise SystemExit("this bench runs on x86_64 with qemu-x86_64 (apt-get install qemu-user)")
    result = measure(args.sample_mib, [m for m in args.models.split(",") if m])
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=1) + "\n")
    print(f"\ndebchunk's encoders give the same bytes on every CPU: {'PASS' if result.passed else 'FAIL'}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
