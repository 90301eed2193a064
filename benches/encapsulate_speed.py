"""How fast Stage 3 (encapsulate) writes a real tree, how much memory it needs and
how well its layers compress, measured against tools doing the same work.

On a real Debian trixie tree (mmdebstrap minbase, laid out for OSTree by
``benches.debtrees.ostreeify``; ~330 MB), with the page cache warm, best of N
runs (default 3) of each command, the commands taking turns so that load from
elsewhere on the machine does not fall on one of them only:

1. ours: ``container-encapsulate --rootfs TREE oci:OUT --max-layers 64 --format
   plain --json`` into a fresh OUT each run, ``SOURCE_DATE_EPOCH`` set: wall time,
   peak RSS (``os.wait4``), total compressed size of its layers (the sum of the
   layer sizes it reports);
2. ``umoci insert --image L:t TREE /`` into a fresh image made by ``umoci init``
   and ``umoci new`` (only the insert is timed): one gzip layer of the whole tree;
3. ``tar -cf - -C TREE . | cat > /dev/null``: "tar, read" — reads every file (the
   floor for anything that must read the tree), and ``tar -cf - -C TREE . >
   /dev/null``: "tar, no read" — GNU tar notices its archive is /dev/null and
   skips reading file data, so this is only the cost of walking the tree;
4. ``tar -cf - -C TREE . | gzip -6 > FILE`` and ``| pigz -6 > FILE``: time and size
   (one single-threaded and one parallel gzip at ours' level).

5. ours with ``--compression zstd``, and ``tar -cf - -C TREE . | zstd -3 -T2``.

Each is reported with its CPU time (user + system, children included) and peak
RSS.  Targets: ours / umoci insert <= 0.6 in time and <= 1 in size; ours zstd /
(tar | zstd -3 -T2) <= 1.3; ours / tar-read <= 2.5; compressed size ours /
(tar | gzip -6) <= 1.06; peak RSS < 500 MB (10^6 bytes); the same manifest
every run and when built (untimed, by the library) in 1 and in 2 threads.  Also printed, for
information: ours / (tar | pigz -6).  The image is checked: ``skopeo inspect``
reads it and its manifest has at most 64 layers.

The tree is cached under the debchunk cache directory (``$DEBCHUNK_CACHE`` or
``~/.cache/debchunk``) as ``trees/<key>.ostree``, beside the raw mmdebstrap tree,
so reruns only measure.

``--tree desktop`` runs the same on the 2.3 GB trixie gnome-core tree of
``benches.update_pairs`` (built there first; issue 14's fourth point: the
same targets, peak RSS included).

Usage: ``python -m benches.encapsulate_speed [--tree minbase|desktop] [--runs N]
[--json FILE]``; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benches.debtrees import TreeSpec, build_tree, cache_dir, ostreeify
from benches.mapping_speed import host_info, note, source_revision
from benches.update_pairs import spec_for, tree_path

MAX_LAYERS = 64
SOURCE_DATE_EPOCH = "1767225600"  # 2026-01-01T00:00:00Z
# A fresh gzip build of the tree in at most 0.6x umoci insert's time (project
# issue 14); 0.35 was the goal before umoci's parallel gzip was measured.
UMOCI_RATIO_TARGET = 0.6
ZSTD_RATIO_TARGET = 1.3  # ours --compression zstd / tar | zstd -3 -T2
TAR_RATIO_TARGET = 2.5
SIZE_RATIO_TARGET = 1.06
RSS_TARGET_BYTES = 500_000_000
VENV_BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parent.parent


def laid_out_tree(spec: TreeSpec) -> Path:
    """The cached tree of ``spec`` laid out for OSTree, made from the cached raw
    tree (built with mmdebstrap if missing) the first time."""
    final = cache_dir() / f"{spec.key}.ostree"
    if (final / "usr").is_dir():
        return final
    raw = build_tree(spec)
    partial = final.with_name(final.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    note(f"  laying out {raw} into {final}")
    ostreeify(raw, partial)
    partial.rename(final)
    return final


def tree_stats(tree: Path) -> tuple[int, int]:
    """Number of entries below ``tree`` (itself included) and bytes of regular
    file content, each inode counted once."""
    entries, size = 1, 0
    seen: set[tuple[int, int]] = set()
    for top, dirs, files in os.walk(tree):
        entries += len(dirs) + len(files)
        for name in files:
            st = os.lstat(os.path.join(top, name))
            if (st.st_dev, st.st_ino) not in seen and st.st_mode & 0o170000 == 0o100000:
                seen.add((st.st_dev, st.st_ino))
                size += st.st_size
    return entries, size


@dataclass
class Run:
    """One run of a child process.  ``others_cpu_s`` is the CPU time the rest of
    the machine used meanwhile (busy time from /proc/stat minus the child's)."""

    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    others_cpu_s: float
    stdout: bytes = field(repr=False)


def busy_cpu_s() -> float:
    """CPU time all CPUs of the machine have spent busy since boot (0 if unknown)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0
    # cpu user nice system idle iowait irq softirq steal ...
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_child(argv: Sequence[str], env: Mapping[str, str] | None = None, capture: bool = False) -> Run:
    """Run ``argv``; its wall time, CPU time (user + system, its reaped children
    included) and peak RSS (``os.wait4``: this child's own, not the maximum over
    every child so far as ``RUSAGE_CHILDREN`` would give).  Fails loudly."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        busy0 = busy_cpu_s()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out if capture else subprocess.DEVNULL,
            stderr=err,
            env=None if env is None else dict(env),
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        busy = busy_cpu_s() - busy0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err.read().decode()}")
        out.seek(0)
        stdout = out.read()
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, usage.ru_maxrss * 1024, max(0.0, busy - cpu), stdout)  # maxrss in KiB


def shell(pipeline: str) -> list[str]:
    """A bash command line running ``pipeline`` that fails if any part fails."""
    return ["bash", "-c", "set -euo pipefail; " + pipeline]


@dataclass
class Measure:
    """The best of N runs of one command."""

    name: str
    command: str
    best_s: float
    runs_s: list[float]
    cpu_s: float  # of the fastest run
    others_cpu_s: float  # used by the rest of the machine during the fastest run
    peak_rss_bytes: int  # the largest over the runs
    size_bytes: int | None = None  # what it wrote, when that matters


@dataclass
class Job:
    """A command to time: ``once()`` runs it once and returns the run and the
    size of what it wrote (None when that does not matter)."""

    name: str
    command: str
    once: Callable[[], tuple[Run, int | None]]
    results: list[tuple[Run, int | None]] = field(default_factory=list)

    def measure(self) -> Measure:
        """The fastest run's figures (the peak RSS is the largest of all runs)."""
        best, size = min(self.results, key=lambda r: r[0].wall_s)
        return Measure(
            self.name,
            self.command,
            best.wall_s,
            [r.wall_s for r, _ in self.results],
            best.cpu_s,
            best.others_cpu_s,
            max(r.peak_rss_bytes for r, _ in self.results),
            size,
        )


def run_interleaved(jobs: Sequence[Job], runs: int) -> None:
    """Run every job ``runs`` times, round-robin, so that a burst of load from
    elsewhere on the machine slows one run of each rather than every run of one."""
    for i in range(runs):
        for job in jobs:
            note(f"  run {i + 1}/{runs}: {job.name}")
            job.results.append(job.once())


@dataclass
class Ours:
    """Figures of ``container-encapsulate`` beyond its time."""

    layers: int
    compressed_bytes: int
    uncompressed_bytes: int
    manifest: str
    reproducible: bool
    same_in_1_and_2_threads: bool


def fresh(path: Path) -> Path:
    """``path``, removed first if it exists."""
    if path.exists():
        shutil.rmtree(path)
    return path


def json_job(name: str, argv: Sequence[str], out: Path) -> tuple[Job, list[dict[str, Any]]]:
    """A ``container-encapsulate ... --json`` command writing into a fresh
    ``out`` each run, ``SOURCE_DATE_EPOCH`` set; the report of every run is
    kept, and a run's size is the sum of its layers'."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    reports: list[dict[str, Any]] = []

    def once() -> tuple[Run, int | None]:
        fresh(out)
        run = run_child(argv, env, capture=True)
        report: dict[str, Any] = json.loads(run.stdout)
        reports.append(report)
        return run, sum(int(layer["size"]) for layer in report["layers"])

    return Job(name, " ".join(argv), once), reports


def ours_job(tree: Path, out: Path, compression: str = "gzip") -> tuple[Job, Callable[[], Ours]]:
    """``container-encapsulate`` of ``tree`` into a fresh layout ``out`` each run,
    and a check of the image the last run left there (skopeo inspect, layer count,
    sizes, the same manifest digest every run, and the same as a build in one
    thread and in two)."""
    argv = [
        str(VENV_BIN / "container-encapsulate"),
        "--rootfs",
        str(tree),
        f"oci:{out}",
        "--max-layers",
        str(MAX_LAYERS),
        "--format",
        "plain",
        "--compression",
        compression,
        "--json",
    ]
    name = "ours: container-encapsulate" + ("" if compression == "gzip" else f" --compression {compression}")
    job, reports = json_job(name, argv, out)

    def check() -> Ours:
        report = reports[-1]
        layers = report["layers"]
        inspect = json.loads(run_child(["skopeo", "inspect", f"oci:{out}"], capture=True).stdout)
        index = json.loads((out / "index.json").read_text())
        manifest_digest = index["manifests"][0]["digest"]
        algo, _, hexdigest = manifest_digest.partition(":")
        manifest = json.loads((out / "blobs" / algo / hexdigest).read_text())
        if manifest_digest != report["manifest"]:
            raise SystemExit(
                f"{out}: index.json names {manifest_digest}, the command reported {report['manifest']}"
            )
        if len(manifest["layers"]) > MAX_LAYERS:
            raise SystemExit(f"{out}: {len(manifest['layers'])} layers, more than --max-layers {MAX_LAYERS}")
        if len(inspect["Layers"]) != len(manifest["layers"]) or len(layers) != len(manifest["layers"]):
            raise SystemExit(
                f"{out}: skopeo sees {len(inspect['Layers'])} layers, the manifest has "
                f"{len(manifest['layers'])}, the command reported {len(layers)}"
            )
        if sum(d["size"] for d in manifest["layers"]) != sum(int(layer["size"]) for layer in layers):
            raise SystemExit(f"{out}: the manifest's layer sizes do not add up to the reported ones")
        by_threads = {
            n: manifest_with_threads(tree, out.with_name(f"{out.name}-t{n}"), compression, n) for n in (1, 2)
        }
        return Ours(
            len(layers),
            sum(int(layer["size"]) for layer in layers),
            sum(int(layer["uncompressed_size"]) for layer in layers),
            report["manifest"],
            len({r["manifest"] for r in reports}) == 1,
            len({report["manifest"], *by_threads.values()}) == 1,
        )

    return job, check


def manifest_with_threads(tree: Path, out: Path, compression: str, threads: int) -> str:
    """The manifest digest of ``tree`` built (untimed) into a fresh ``out`` by
    the library with ``threads`` threads, as the timed command builds it."""
    from encapsulate import BuildConfig, Compression, Format, RootfsOrigin, build_image

    config = BuildConfig(
        origin=RootfsOrigin(str(tree)),
        destination=f"oci:{fresh(out)}",
        max_layers=MAX_LAYERS,
        format=Format.PLAIN,
        compression=Compression(compression),
        epoch=int(SOURCE_DATE_EPOCH),
        threads=threads,
    )
    image = build_image(config).image
    assert image is not None
    shutil.rmtree(out)
    return image.manifest.digest


def umoci_job(tree: Path, layout: Path) -> Job:
    """``umoci insert`` of ``tree`` at ``/`` into a fresh empty image (only the
    insert is timed); the size is its layer's."""

    def once() -> tuple[Run, int | None]:
        fresh(layout)
        run_child(["umoci", "init", "--layout", str(layout)])
        run_child(["umoci", "new", "--image", f"{layout}:t"])
        run = run_child(["umoci", "insert", "--image", f"{layout}:t", str(tree), "/"])
        index = json.loads((layout / "index.json").read_text())
        (desc,) = [
            m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "t"
        ]
        algo, _, hexdigest = desc["digest"].partition(":")
        manifest = json.loads((layout / "blobs" / algo / hexdigest).read_text())
        return run, sum(int(d["size"]) for d in manifest["layers"])

    return Job("umoci insert", f"umoci insert --image L:t {tree} /", once)


def shell_job(name: str, pipeline: str, output: Path | None = None) -> Job:
    """A shell pipeline; the size of ``output`` if given (removed after each run)."""

    def once() -> tuple[Run, int | None]:
        run = run_child(shell(pipeline))
        size = None
        if output is not None:
            size = output.stat().st_size
            output.unlink()
        return run, size

    return Job(name, pipeline, once)


def load() -> str:
    """The load averages (1, 5, 15 min): other work on the machine skews times."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


@dataclass
class Result:
    """Everything measured, and the verdicts."""

    tree: str
    entries: int
    content_bytes: int
    tar_stream_bytes: int
    cpus: int | None
    load_before: str
    load_after: str
    measures: dict[str, Measure]
    ours: Ours
    ratio_umoci: float
    ratio_tar_read: float
    ratio_size_gzip: float
    ratio_pigz: float
    ratio_size_pigz: float
    umoci_passed: bool
    tar_passed: bool
    size_passed: bool
    rss_passed: bool
    passed: bool
    ratio_again_umoci: float = 0.0
    ours_zstd: Ours | None = None
    ratio_zstd: float = 0.0  # ours --compression zstd / tar | zstd -3 -T2
    ratio_size_umoci: float = 0.0  # ours' layers / umoci's layer
    zstd_passed: bool = True
    size_umoci_passed: bool = True
    same_bytes_passed: bool = True


def again_job(tree: Path, out: Path) -> Job:
    """``container-encapsulate`` of ``tree`` into a layout already holding its
    image (made once, untimed): every layer is taken from the layout, which is
    checked; the time of a rebuild in which nothing changed."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    command = [
        str(VENV_BIN / "container-encapsulate"),
        "--rootfs",
        str(tree),
        "--max-layers",
        str(MAX_LAYERS),
    ]
    plain = ["--format", "plain", "--json"]

    def once() -> tuple[Run, int | None]:
        if not (out / "index.json").exists():
            run_child([*command, f"oci:{out}:first", *plain], env, capture=True)
        run = run_child([*command, f"oci:{out}:again", *plain], env, capture=True)
        layers = json.loads(run.stdout)["layers"]
        if not all(layer["reused"] for layer in layers):
            raise SystemExit(f"{out}: a layer of an unchanged tree was written again")
        return run, sum(int(layer["size"]) for layer in layers)

    return Job("ours, again into a layout holding it", " ".join([*command, "oci:L:again", *plain]), once)


def tree_and_key(name: str) -> tuple[Path, str]:
    """The laid-out tree a bench runs on and its cache key: ``minbase`` (the
    trixie minbase tree, made here if missing) or ``desktop`` (the trixie
    gnome-core tree of ``benches.update_pairs``, which must have been built)."""
    if name == "desktop":
        tree = tree_path("desktop", "trixie")
        if not (tree / "usr").is_dir():
            raise SystemExit(f"{tree}: not built; run python -m benches.update_pairs build --set desktop")
        return tree, spec_for("desktop", "trixie").key
    spec = TreeSpec("trixie")
    return laid_out_tree(spec), spec.key


def bench(runs: int, tree_name: str = "minbase") -> Result:
    """Every measurement, on a cached laid-out trixie tree (``tree_and_key``)."""
    tree = tree_and_key(tree_name)[0]
    entries, content = tree_stats(tree)
    work_parent = cache_dir().parent / "work"
    work_parent.mkdir(parents=True, exist_ok=True)
    q = f"'{tree}'"
    with tempfile.TemporaryDirectory(prefix="encapsulate-speed-", dir=work_parent) as tmp:
        work = Path(tmp)
        # Warm the page cache (and learn the size of the tar stream).
        stream = int(run_child(shell(f"tar -cf - -C {q} . | wc -c"), capture=True).stdout)
        note(
            f"  tree {tree}: {entries} entries, {content / 1e6:.0f} MB of content, "
            f"tar stream {stream / 1e6:.0f} MB"
        )
        load_before = load()
        gz, pz, zs = work / "tree.tar.gz", work / "tree.tar.pigz.gz", work / "tree.tar.zst"
        ours, check = ours_job(tree, work / "ours")
        ours_zstd, check_zstd = ours_job(tree, work / "ours-zstd", "zstd")
        jobs = {
            "ours": ours,
            "ours_zstd": ours_zstd,
            "tar_zstd": shell_job("tar | zstd -3 -T2", f"tar -cf - -C {q} . | zstd -q -3 -T2 > '{zs}'", zs),
            "umoci": umoci_job(tree, work / "umoci"),
            "tar_read": shell_job("tar, read: tar -cf - . | cat", f"tar -cf - -C {q} . | cat > /dev/null"),
            "tar_noread": shell_job(
                "tar, no read: tar -cf - . > /dev/null", f"tar -cf - -C {q} . > /dev/null"
            ),
            "tar_gzip": shell_job("tar | gzip -6", f"tar -cf - -C {q} . | gzip -6 > '{gz}'", gz),
            "tar_pigz": shell_job("tar | pigz -6", f"tar -cf - -C {q} . | pigz -6 > '{pz}'", pz),
            "again": again_job(tree, work / "again"),
        }
        run_interleaved(list(jobs.values()), runs)
        load_after = load()
        image = check()
        image_zstd = check_zstd()
    m = {key: job.measure() for key, job in jobs.items()}
    assert m["tar_gzip"].size_bytes and m["tar_pigz"].size_bytes and m["ours"].size_bytes
    ratio_umoci = m["ours"].best_s / m["umoci"].best_s
    ratio_tar = m["ours"].best_s / m["tar_read"].best_s
    ratio_size = m["ours"].size_bytes / m["tar_gzip"].size_bytes
    umoci_ok = ratio_umoci <= UMOCI_RATIO_TARGET
    tar_ok = ratio_tar <= TAR_RATIO_TARGET
    size_ok = ratio_size <= SIZE_RATIO_TARGET
    rss_ok = m["ours"].peak_rss_bytes < RSS_TARGET_BYTES
    assert m["umoci"].size_bytes and m["ours_zstd"].size_bytes
    ratio_zstd = m["ours_zstd"].best_s / m["tar_zstd"].best_s
    ratio_size_umoci = m["ours"].size_bytes / m["umoci"].size_bytes
    zstd_ok = ratio_zstd <= ZSTD_RATIO_TARGET
    size_umoci_ok = ratio_size_umoci <= 1.0
    same_ok = all(o.reproducible and o.same_in_1_and_2_threads for o in (image, image_zstd))
    return Result(
        str(tree),
        entries,
        content,
        stream,
        os.cpu_count(),
        load_before,
        load_after,
        m,
        image,
        ratio_umoci,
        ratio_tar,
        ratio_size,
        m["ours"].best_s / m["tar_pigz"].best_s,
        m["ours"].size_bytes / m["tar_pigz"].size_bytes,
        umoci_ok,
        tar_ok,
        size_ok,
        rss_ok,
        umoci_ok and tar_ok and size_ok and rss_ok and zstd_ok and size_umoci_ok and same_ok,
        m["again"].best_s / m["umoci"].best_s,
        image_zstd,
        ratio_zstd,
        ratio_size_umoci,
        zstd_ok,
        size_umoci_ok,
        same_ok,
    )


def print_measures(measures: Iterable[Measure]) -> None:
    """The table of timed commands every speed bench prints, and how to read it."""
    print(f"  {'measure':<40} {'best':>8} {'cpu':>8} {'others':>7} {'peak RSS':>9} {'size':>10}  runs")
    for m in measures:
        size = f"{m.size_bytes / 1e6:.1f} MB" if m.size_bytes is not None else "-"
        print(
            f"  {m.name:<40} {m.best_s:>7.2f}s {m.cpu_s:>7.2f}s {m.others_cpu_s:>6.2f}s "
            f"{m.peak_rss_bytes / 1e6:>6.0f} MB {size:>10}  {' '.join(f'{t:.2f}' for t in m.runs_s)}"
        )
    print("  (cpu: user + system time of the command; others: CPU time the rest of the machine")
    print("  used during that run, from /proc/stat — other work skews the times when it is large)")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(r: Result) -> None:
    print(
        f"Tree: {r.tree}, laid out for OSTree, {r.entries} entries, "
        f"{r.content_bytes / 1e6:.0f} MB of file content, tar stream {r.tar_stream_bytes / 1e6:.0f} MB; "
        f"{r.cpus} CPUs, load average {r.load_before} before, {r.load_after} after"
    )
    print_measures(r.measures.values())
    o = r.ours
    print(
        f"  ours: {o.layers} layers, {o.compressed_bytes / 1e6:.1f} MB compressed, "
        f"{o.uncompressed_bytes / 1e6:.1f} MB uncompressed, manifest {o.manifest[:19]}…, "
        f"{'same' if o.reproducible else 'DIFFERENT'} digest every run, "
        f"{'same' if o.same_in_1_and_2_threads else 'DIFFERENT'} in 1 and 2 threads; skopeo inspect OK"
    )
    if r.ours_zstd is not None:
        z = r.ours_zstd
        print(
            f"  ours zstd: {z.compressed_bytes / 1e6:.1f} MB compressed, "
            f"{'same' if z.reproducible else 'DIFFERENT'} digest every run, "
            f"{'same' if z.same_in_1_and_2_threads else 'DIFFERENT'} in 1 and 2 threads"
        )
    print("  'tar, read' pipes the archive to cat, so tar reads every file; 'tar, no read' writes")
    print("  straight to /dev/null, which GNU tar detects and then skips reading file data.")
    print()
    print(
        f"  ours / umoci insert:             {r.ratio_umoci:.3f}x (target <= {UMOCI_RATIO_TARGET}) "
        f"{verdict(r.umoci_passed)}"
    )
    print(
        f"  size ours / umoci insert:        {r.ratio_size_umoci:.3f}x (target <= 1) "
        f"{verdict(r.size_umoci_passed)}"
    )
    print(
        f"  ours zstd / tar | zstd -3 -T2:   {r.ratio_zstd:.2f}x (target <= {ZSTD_RATIO_TARGET}) "
        f"{verdict(r.zstd_passed)}"
    )
    print(f"  same bytes every run, in 1 and 2 threads: {verdict(r.same_bytes_passed)}")
    print(
        f"  ours / tar, read:                {r.ratio_tar_read:.2f}x (target <= {TAR_RATIO_TARGET}) "
        f"{verdict(r.tar_passed)}"
    )
    print(
        f"  size ours / tar | gzip -6:       {r.ratio_size_gzip:.3f}x (target <= {SIZE_RATIO_TARGET}) "
        f"{verdict(r.size_passed)}"
    )
    print(
        f"  peak RSS ours:                   {r.measures['ours'].peak_rss_bytes / 1e6:.0f} MB "
        f"(target < {RSS_TARGET_BYTES / 1e6:.0f} MB) {verdict(r.rss_passed)}"
    )
    print(
        f"  ours / tar | pigz -6:            {r.ratio_pigz:.2f}x time, "
        f"{r.ratio_size_pigz:.3f}x size (information)"
    )
    print(f"  ours again (layers reused) / umoci insert: {r.ratio_again_umoci:.2f}x (information)")


def tree_option(parser: argparse.ArgumentParser) -> None:
    """``--tree minbase|desktop``: the tree a speed bench runs on (``tree_and_key``)."""
    parser.add_argument(
        "--tree",
        choices=("minbase", "desktop"),
        default="minbase",
        help="minbase (trixie, made if missing) or desktop (trixie gnome-core of benches.update_pairs)",
    )


def bench_arguments(
    argv: Sequence[str] | None,
    module: str,
    doc: str | None,
    more: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """``--runs N`` and ``--json FILE``, the options of every speed bench, and
    those ``more`` adds."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or "").split("\n")[0])
    if more is not None:
        more(parser)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each command (default 3)")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def measure_and_record(
    title: str, runs: int, json_path: str | None, targets: dict[str, float], measure: Callable[[int], Any]
) -> Any:
    """Run ``measure(runs)`` (a dataclass of figures) with a line naming the
    code and cache; with ``json_path``, write the figures, targets, revision
    and host there.  Returns the figures."""
    revision = source_revision()
    note(f"debchunk {title}, {runs} runs, code {revision}, cache {cache_dir().parent}")
    result = measure(runs)
    if json_path:
        data = {"revision": revision, "host": host_info(), "targets": targets, "result": asdict(result)}
        Path(json_path).write_text(json.dumps(data, indent=1) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, write ``--json``; 1 when a target is missed."""
    args = bench_arguments(argv, "benches.encapsulate_speed", __doc__, tree_option)
    for tool in ("umoci", "skopeo", "pigz", "gzip", "tar", "zstd"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed; install it (apt-get install {tool})")
    targets = {
        "ours_over_umoci_insert": UMOCI_RATIO_TARGET,
        "ours_zstd_over_tar_zstd3_T2": ZSTD_RATIO_TARGET,
        "size_ours_over_umoci_insert": 1.0,
        "ours_over_tar_read": TAR_RATIO_TARGET,
        "size_ours_over_tar_gzip6": SIZE_RATIO_TARGET,
        "peak_rss_bytes": RSS_TARGET_BYTES,
    }
    result: Result = measure_and_record(
        f"encapsulate speed ({args.tree})", args.runs, args.json, targets, lambda runs: bench(runs, args.tree)
    )
    report(result)
    print(f"\noverall: {verdict(result.passed)}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
