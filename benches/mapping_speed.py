"""How fast Stage 1 (mapping) is, and how much memory it needs.

Two measurements, each reported as figures taken in the same run:

1. A real Debian trixie tree (mmdebstrap, laid out for OSTree, committed into a
   bare-user repo): wall time of ``mapping.build_mapping`` in this process (best
   of N after one warm-up, so imports and the page cache do not count), of
   ``ostree ls -R -C`` over the same commit (the floor: libostree listing every
   object with its checksum) and of ``debchunk map`` end to end.  Target:
   build_mapping <= 1.5x ostree ls.
2. A generated commit with many small files (500,000 with ``--profile full``,
   50,000 with ``short``), mapped by ``build_mapping`` in a child process.
   Targets: wall time <= 60 s, peak RSS <= 1.5 GB (10^9 bytes).

Trees and repositories are cached under the debchunk cache directory
(``$DEBCHUNK_CACHE`` or ``~/.cache/debchunk``), so reruns only measure.

Usage: ``python -m benches.mapping_speed [--profile short|full] [--json FILE]``;
exits non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benches.debtrees import TreeSpec, build_tree, cache_dir, ostree_commit, ostreeify

RATIO_TARGET = 1.5
GEN_TIME_TARGET_S = 60.0
GEN_RSS_TARGET_BYTES = 1_500_000_000
GEN_FILES = {"short": 50_000, "full": 500_000}
FILES_PER_DIR = 100
DIRS_PER_GROUP = 100
REAL_REF = "debian/trixie"
GEN_REF = "gen"
VENV_BIN = Path(sys.executable).parent


def note(message: str) -> None:
    """A progress message on stderr, after whatever the report has printed so far."""
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)


def source_revision() -> str | None:
    """The git commit of the code measured, with ``-dirty`` if it has local changes."""
    here = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--", "mapping", "chunker", "encapsulate"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def host_info() -> dict[str, object]:
    """What a result was measured on."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}


def bench_root() -> Path:
    """The cache directory shared with ``benches.debtrees`` (its parent)."""
    return cache_dir().parent


def _replace_dir(partial: Path, final: Path) -> Path:
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return final


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _has_ref(repo: Path, ref: str) -> bool:
    return (repo / "config").is_file() and (repo / "refs" / "heads" / ref).is_file()


def real_repo(spec: TreeSpec) -> Path:
    """A bare-user repo holding the OSTree layout of ``spec``'s tree as ``REAL_REF``."""
    final = bench_root() / "repos" / spec.key
    if _has_ref(final, REAL_REF):
        return final
    tree = build_tree(spec)
    work = _fresh(bench_root() / "work" / spec.key)
    partial = _fresh(final.with_name(final.name + ".partial"))
    try:
        ostreeify(tree, work)
        ostree_commit(work, partial, REAL_REF)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _replace_dir(partial, final)


def generate_tree(root: Path, files: int) -> int:
    """Write ``files`` small regular files (distinct contents), ``FILES_PER_DIR``
    per directory in two levels of directories under ``usr/share/gen``, plus one
    relative symlink per directory.  Returns the number of entries (files,
    symlinks and directories, the root included) the commit will hold."""
    entries = 1
    for top in ("usr", "usr/share", "usr/share/gen"):
        (root / top).mkdir(parents=True)
        entries += 1
    base = root / "usr/share/gen"
    for start in range(0, files, FILES_PER_DIR):
        leaf_no = start // FILES_PER_DIR
        group = base / f"g{leaf_no // DIRS_PER_GROUP:04d}"
        if leaf_no % DIRS_PER_GROUP == 0:
            group.mkdir()
            entries += 1
        leaf = group / f"d{leaf_no % DIRS_PER_GROUP:02d}"
        leaf.mkdir()
        entries += 1
        count = min(FILES_PER_DIR, files - start)
        for i in range(start, start + count):
            fd = os.open(leaf / f"f{i:07d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, f"generated file {i}\n".encode())
            finally:
                os.close(fd)
        os.symlink(f"f{start:07d}", leaf / "first")
        entries += count + 1
    return entries


def gen_repo(files: int) -> tuple[Path, int]:
    """A bare-user repo holding a generated commit of ``files`` files as ``GEN_REF``;
    returns it and the commit's number of entries."""
    final = bench_root() / "repos" / f"gen-{files}"
    count_file = final / "debchunk-entries"
    if _has_ref(final, GEN_REF) and count_file.is_file():
        return final, int(count_file.read_text())
    work = _fresh(bench_root() / "work" / f"gen-{files}")
    partial = _fresh(final.with_name(final.name + ".partial"))
    try:
        t0 = time.perf_counter()
        entries = generate_tree(work, files)
        t1 = time.perf_counter()
        subprocess.run(["ostree", "init", "--mode=bare-user", f"--repo={partial}"], check=True)
        subprocess.run(
            [
                "ostree",
                "commit",
                f"--repo={partial}",
                f"--tree=dir={work}",
                "-b",
                GEN_REF,
                "--fsync=false",
                "--consume",
                "--timestamp=2026-01-01T00:00:00Z",
                "-s",
                f"{files} generated files",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        t2 = time.perf_counter()
        note(f"  generated {files} files in {t1 - t0:.1f} s, committed in {t2 - t1:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (partial / "debchunk-entries").write_text(f"{entries}\n")
    return _replace_dir(partial, final), entries


def best_of(n: int, fn: Callable[[], object]) -> tuple[float, list[float]]:
    """Run ``fn`` ``n`` times; return the fastest wall time and all of them."""
    times = []
    for _ in range(n):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        del result
    return min(times), times


def run_quiet(argv: Sequence[str]) -> None:
    """Run a command with its output thrown away; fail loudly if it fails."""
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")


@dataclass
class RealTreeResult:
    """Figures for the real trixie commit (seconds)."""

    repo: str
    entries: int
    components: int
    build_mapping_s: float
    ostree_ls_s: float
    cli_s: float
    build_mapping_runs: list[float]
    ostree_ls_runs: list[float]
    cli_runs: list[float]
    ratio_mapping: float
    ratio_cli: float
    passed: bool


def bench_real_tree(runs: int) -> RealTreeResult:
    """Time build_mapping, ostree ls and debchunk map over the trixie commit."""
    from mapping import CommitOrigin, build_mapping

    repo = real_repo(TreeSpec("trixie"))
    warm = build_mapping(CommitOrigin(str(repo), REAL_REF))
    assert warm.tree is not None
    entries, components = len(warm.tree), len(warm.components)
    assert any(c.name == "glibc" for c in warm.components), "trixie mapping has no glibc component"
    del warm
    mapping_s, mapping_runs = best_of(runs, lambda: build_mapping(CommitOrigin(str(repo), REAL_REF)))
    ls = ["ostree", "ls", "-R", "-C", f"--repo={repo}", REAL_REF]
    run_quiet(ls)
    ls_s, ls_runs = best_of(runs, lambda: run_quiet(ls))
    cli = [str(VENV_BIN / "debchunk"), "map", "--repo", str(repo), REAL_REF]
    run_quiet(cli)
    cli_s, cli_runs = best_of(runs, lambda: run_quiet(cli))
    ratio = mapping_s / ls_s
    return RealTreeResult(
        str(repo),
        entries,
        components,
        mapping_s,
        ls_s,
        cli_s,
        mapping_runs,
        ls_runs,
        cli_runs,
        ratio,
        cli_s / ls_s,
        ratio <= RATIO_TARGET,
    )


# Runs in the child: report how long build_mapping itself took and what it saw.
_CHILD = """\
import json, sys, time
t0 = time.perf_counter()
from mapping import CommitOrigin, build_mapping
t1 = time.perf_counter()
m = build_mapping(CommitOrigin(sys.argv[1], sys.argv[2]))
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_mapping_s": t2 - t1, "entries": len(m.tree),
                  "components": {c.name: c.files for c in m.components}}))
"""


@dataclass
class ChildRun:
    """One mapping of the generated commit in a child process."""

    wall_s: float
    peak_rss_bytes: int
    build_mapping_s: float
    import_s: float
    entries: int
    components: dict[str, int]


def map_in_child(repo: Path, ref: str) -> ChildRun:
    """Map ``repo``/``ref`` in a fresh interpreter; its own wall time and peak RSS."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(repo), ref],
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        # wait4 gives this child's own rusage; RUSAGE_CHILDREN would be the maximum
        # over every child so far (ostree commit included).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(
                f"mapping the generated commit failed ({proc.returncode}):\n{err.read().decode()}"
            )
    report: dict[str, Any] = json.loads(out)
    return ChildRun(
        wall,
        usage.ru_maxrss * 1024,  # KiB on Linux
        report["build_mapping_s"],
        report["import_s"],
        report["entries"],
        report["components"],
    )


@dataclass
class GeneratedResult:
    """Figures for the generated commit."""

    files: int
    repo: str
    entries: int
    wall_s: float
    peak_rss_bytes: int
    build_mapping_s: float
    import_s: float
    components: dict[str, int]
    runs: list[dict[str, Any]]
    time_passed: bool
    rss_passed: bool


def bench_generated(files: int, runs: int) -> GeneratedResult:
    """Map the generated commit ``runs`` times in child processes."""
    repo, entries = gen_repo(files)
    results = [map_in_child(repo, GEN_REF) for _ in range(runs)]
    for r in results:
        if r.entries != entries:
            raise SystemExit(f"generated commit: mapping saw {r.entries} entries, the commit has {entries}")
        mapped = sum(r.components.values())
        expected = files + -(-files // FILES_PER_DIR)  # one symlink per leaf directory
        if mapped != expected:
            raise SystemExit(f"generated commit: mapping owns {mapped} files and symlinks, not {expected}")
    best = min(results, key=lambda r: r.wall_s)
    peak = max(r.peak_rss_bytes for r in results)
    return GeneratedResult(
        files,
        str(repo),
        entries,
        best.wall_s,
        peak,
        best.build_mapping_s,
        best.import_s,
        best.components,
        [asdict(r) | {"components": None} for r in results],
        best.wall_s <= GEN_TIME_TARGET_S,
        peak <= GEN_RSS_TARGET_BYTES,
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report_real(r: RealTreeResult) -> None:
    print(f"Real tree: trixie minbase commit, {r.entries} entries, {r.components} components")
    print(f"  {'measure':<40} {'best':>9}  runs")
    rows = [
        ("mapping.build_mapping (in process)", r.build_mapping_s, r.build_mapping_runs),
        ("ostree ls -R -C", r.ostree_ls_s, r.ostree_ls_runs),
        ("debchunk map (CLI, end to end)", r.cli_s, r.cli_runs),
    ]
    for name, best, runs in rows:
        print(f"  {name:<40} {best:>8.3f}s  {' '.join(f'{t:.3f}' for t in runs)}")
    print(
        f"  ratio build_mapping / ostree ls: {r.ratio_mapping:.2f}x "
        f"(target <= {RATIO_TARGET}x) {verdict(r.passed)}"
    )
    print(f"  ratio debchunk map / ostree ls:  {r.ratio_cli:.2f}x (no target)")


def report_generated(g: GeneratedResult) -> None:
    print(f"Generated commit: {g.files} files, {g.entries} entries, mapped in a child process")
    print(
        f"  wall time {g.wall_s:.2f} s (build_mapping {g.build_mapping_s:.2f} s, imports {g.import_s:.2f} s)"
        f" (target <= {GEN_TIME_TARGET_S:.0f} s) {verdict(g.time_passed)}"
    )
    print(
        f"  peak RSS {g.peak_rss_bytes / 1e6:.0f} MB ({g.peak_rss_bytes / 2**20:.0f} MiB) "
        f"(target <= {GEN_RSS_TARGET_BYTES / 1e6:.0f} MB) {verdict(g.rss_passed)}"
    )
    print(f"  components: {', '.join(f'{k} ({v} files)' for k, v in sorted(g.components.items()))}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benches.mapping_speed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--profile", choices=sorted(GEN_FILES), default="short")
    parser.add_argument("--runs", type=int, default=5, help="timed runs on the real tree (default 5)")
    parser.add_argument(
        "--gen-runs", type=int, default=2, help="child-process runs on the generated commit (default 2)"
    )
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    args = parser.parse_args(argv)

    revision = source_revision()
    note(f"debchunk mapping speed, profile {args.profile}, code {revision}, cache {bench_root()}")
    real = bench_real_tree(args.runs)
    report_real(real)
    print()
    gen = bench_generated(GEN_FILES[args.profile], args.gen_runs)
    report_generated(gen)
    passed = real.passed and gen.time_passed and gen.rss_passed
    print(f"\noverall: {verdict(passed)}")
    if args.json:
        data = {
            "profile": args.profile,
            "revision": revision,
            "host": host_info(),
            "targets": {
                "ratio_build_mapping_over_ostree_ls": RATIO_TARGET,
                "generated_wall_s": GEN_TIME_TARGET_S,
                "generated_peak_rss_bytes": GEN_RSS_TARGET_BYTES,
            },
            "real_tree": asdict(real),
            "generated": asdict(gen),
            "passed": passed,
        }
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
