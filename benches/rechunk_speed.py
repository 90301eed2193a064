"""How fast ``container-encapsulate --from`` re-chunks an existing single-layer
image, how much memory it needs, measured against encapsulating the same tree
from disk and against the manual path users take without it.

Two trees: ``--tree minbase`` (default; the trixie minbase tree that
``benches.encapsulate_speed`` uses, mmdebstrap, laid out for OSTree by
``benches.debtrees.ostreeify``), and ``--tree desktop``, the 2.3 GB trixie
gnome-core tree of ``benches.update_pairs`` (built with ``python -m
benches.update_pairs build --set desktop``), on which the targets are set.

The input is the tree as a squashed Containerfile build leaves it: one gzip
layer, ``tar -C TREE --numeric-owner --xattrs --sort=name -c .`` compressed by
``gzip -n -6``, with a manifest and config written here.  It is made once
(untimed), checked with ``skopeo inspect`` and cached beside the tree under the
debchunk cache directory (``$DEBCHUNK_CACHE`` or ``~/.cache/debchunk``) as
``trees/<key>.single-layer.oci``.

Timed, best of N runs (default 3), taking turns, ``SOURCE_DATE_EPOCH`` set,
every command a child process (wall time, CPU time and peak RSS from ``os.wait4``):

1. ours: ``container-encapsulate --from oci:IMAGE:single oci:OUT --max-layers 64
   --format plain --json``;
2. the same tree from disk: ``container-encapsulate --rootfs TREE oci:OUT ...``
   with the same options;
3. the manual path: ``skopeo copy oci:IMAGE:single oci:COPY:x``, ``umoci unpack
   --image COPY:x BUNDLE`` (as root it keeps owners; ``--rootless`` otherwise)
   and ``container-encapsulate --rootfs BUNDLE/rootfs`` with the same options,
   the three times added up.

Targets: ours / (--rootfs of the tree) <= 1.2; ours / manual path <= 0.5; peak
RSS of ours < 500 MB (10^6 bytes).  Checked (a failure exits 1): the images of
1. and 2. have the same number of layers and the same components in each layer,
ours gives the same manifest digest every run, and ``skopeo inspect`` reads it;
whether their layers are byte for byte the same (same diff_ids) is printed.  A
target missed is reported, not a failure.

Measured (trixie minbase, 12733 entries, 333 MB; 214 MB gzip layer; 2 cores
shared with other work, so wall times vary by run): with tarfile reading the
headers from a spool and a second pass hashing content, ours took 4.40 s
(5.59 s CPU) against 3.07 s for --rootfs (1.43x) and 8.60 s for the manual
path (0.51x), peak RSS 81 MB.  Reading the headers ourselves from the inflating
stream, hashing content as it passes, inflating in a thread: 4.33 s (4.75 s
CPU) against 3.85 s (1.13x) and 11.19 s (0.39x), peak RSS 87 MB, under a load
average of 5; an earlier run at load 1-2 gave 3.21 s against 2.64 s (1.21x)
and 7.85 s (0.41x).  Mapping the layer alone went from 1.9-2.2 s to 1.1-1.2 s.
Once every layer was verified (blob digest, size and diff_id) the ratio
grew to 1.27-1.35x: the threads of one process waited on each other's GIL.
With the inflating and hashing in a child process (``mapping.spooler``) and
the spool mapped rather than read: three runs of ``--runs 3`` gave 4.66,
5.15 and 4.99 s against 4.05, 4.08 and 3.99 s (1.15x, 1.26x, 1.25x), CPU
7.96-8.40 s against 6.59-6.68 s.  Reading file contents back from the spool
with one copy instead of three: 4.70 and 4.80 s against 3.82 s (1.23x,
1.26x), CPU 7.84-8.05 s against 6.37-6.38 s.  The extra CPU, 1.3-1.7 s, is at least
0.98 s of inflating and hashing (zlib-ng 0.61 s, the blob's sha256 0.14 s,
the diff_id's 0.23 s), so on 2 cores ours cannot go below ~1.12x.  The
spooling child opened its spool with O_TRUNC, which on ext4 has the file
written to disk when it is closed (auto_da_alloc): 0.15 s of its CPU on the
critical path, and a slower removal.  Without it, with the child's pieces at
1 MiB and a quicker common case in the tar reader: five runs of ``--runs 3``
gave 1.211x, 1.179x, 1.212x, 1.181x and 1.178x (4.39-4.57 s against
3.73-3.88 s; CPU 7.56-7.76 s against 6.18-6.37 s).

Usage: ``python -m benches.rechunk_speed [--tree minbase|desktop] [--runs N] [--json FILE]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benches.debtrees import cache_dir
from benches.encapsulate_speed import (
    SOURCE_DATE_EPOCH,
    Job,
    Measure,
    Run,
    bench_arguments,
    fresh,
    json_job,
    load,
    measure_and_record,
    print_measures,
    run_child,
    run_interleaved,
    tree_and_key,
    tree_option,
    tree_stats,
    verdict,
)
from benches.mapping_speed import note

MAX_LAYERS = 64
ROOTFS_RATIO_TARGET = 1.2
MANUAL_RATIO_TARGET = 0.5
RSS_TARGET_BYTES = 500_000_000
# container-encapsulate is the entry point beside this interpreter (the venv's).
VENV_BIN = Path(sys.executable).parent
TAG = "single"
# Bumped when the way the single-layer image is made changes, so a cached one
# made the old way is not used.
IMAGE_RECIPE = 1
CREATED = "2026-01-01T00:00:00Z"
# Go's names for the machine, as OCI configs spell the architecture.
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _write_blob(layout: Path, data: bytes) -> dict[str, Any]:
    """Store ``data`` as a blob of ``layout``; its descriptor (without media type)."""
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def single_layer_image(tree: Path, key: str) -> Path:
    """An OCI layout holding ``tree`` as one gzip layer tagged ``single``, made
    the first time (tar, gzip, hand-written config and manifest) and cached."""
    final = cache_dir() / f"{key}.single-layer.oci.{IMAGE_RECIPE}"
    if (final / "index.json").is_file():
        return final
    partial = final.with_name(final.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    blobs = partial / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    note(f"  making the single-layer image {final}")
    layer_tar = partial / "layer.tar"
    # --sort=name: the same tree gives the same blob, as a reproducible build's would.
    run_child(
        ["tar", "-C", str(tree), "--numeric-owner", "--xattrs", "--sort=name", "-cf", str(layer_tar), "."]
    )
    diff_id = _sha256_file(layer_tar)
    run_child(["gzip", "-n", "-6", str(layer_tar)])
    gz = layer_tar.with_name("layer.tar.gz")
    layer_digest = _sha256_file(gz)
    layer_size = gz.stat().st_size
    gz.rename(blobs / layer_digest.removeprefix("sha256:"))
    config = {
        "created": CREATED,
        "architecture": GO_ARCH.get(platform.machine(), platform.machine()),
        "os": "linux",
        "config": {"Cmd": ["/bin/bash"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "tar -c . | gzip -n -6 (one squashed layer)"}],
    }
    config_desc = _write_blob(partial, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    manifest_desc = _write_blob(partial, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "annotations": {"org.opencontainers.image.ref.name": TAG},
            }
        ],
    }
    (partial / "index.json").write_text(json.dumps(index))
    (partial / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    inspect = json.loads(run_child(["skopeo", "inspect", f"oci:{partial}:{TAG}"], capture=True).stdout)
    if inspect["Layers"] != [layer_digest]:
        raise SystemExit(f"{partial}: skopeo inspect sees layers {inspect['Layers']}, not [{layer_digest}]")
    partial.rename(final)
    return final


def _encapsulate(origin: Sequence[str], out: Path) -> list[str]:
    return [
        str(VENV_BIN / "container-encapsulate"),
        *origin,
        f"oci:{out}",
        "--max-layers",
        str(MAX_LAYERS),
        "--format",
        "plain",
        "--json",
    ]


def encapsulate_job(name: str, origin: Sequence[str], out: Path) -> tuple[Job, list[dict[str, Any]]]:
    """``container-encapsulate`` of ``origin`` into a fresh layout ``out`` each
    run; the ``--json`` report of every run is kept for the checks."""
    return json_job(name, _encapsulate(origin, out), out)


@dataclass
class Steps:
    """The wall time of each step of the manual path's fastest run."""

    names: list[str]
    runs: list[list[float]] = field(default_factory=list)


def manual_job(image: Path, work: Path, rootless: bool) -> tuple[Job, Steps, list[dict[str, Any]]]:
    """skopeo copy + umoci unpack + ``container-encapsulate --rootfs`` of the
    unpacked tree, into fresh directories each run; one run adds up the three."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    copy, bundle, out = work / "copy", work / "bundle", work / "manual-out"
    unpack = ["umoci", "unpack", *(["--rootless"] if rootless else []), "--image", f"{copy}:x", str(bundle)]
    skopeo = ["skopeo", "copy", "-q", f"oci:{image}:{TAG}", f"oci:{copy}:x"]
    encapsulate = _encapsulate(["--rootfs", str(bundle / "rootfs")], out)
    steps = Steps(["skopeo copy", "umoci unpack", "container-encapsulate --rootfs"])
    reports: list[dict[str, Any]] = []

    def once() -> tuple[Run, int | None]:
        for path in (copy, bundle, out):
            fresh(path)
        parts = [run_child(skopeo), run_child(unpack), run_child(encapsulate, env, capture=True)]
        report: dict[str, Any] = json.loads(parts[-1].stdout)
        reports.append(report)
        steps.runs.append([p.wall_s for p in parts])
        run = Run(
            sum(p.wall_s for p in parts),
            sum(p.cpu_s for p in parts),
            max(p.peak_rss_bytes for p in parts),
            sum(p.others_cpu_s for p in parts),
            b"",
        )
        # The copy and the bundle are as large as the image and the tree: not kept.
        fresh(copy)
        fresh(bundle)
        return run, sum(int(layer["size"]) for layer in report["layers"])

    command = " && ".join(
        [
            "skopeo copy oci:IMAGE:single oci:COPY:x",
            f"umoci unpack {'--rootless ' if rootless else ''}--image COPY:x BUNDLE",
            "container-encapsulate --rootfs BUNDLE/rootfs oci:OUT ...",
        ]
    )
    return Job("manual: skopeo + umoci unpack + ours", command, once), steps, reports


@dataclass
class Compared:
    """How the image re-chunked from the single-layer image compares with the one
    written from the tree on disk (and the manual path's)."""

    layers: int
    same_components: bool
    same_diff_ids: int  # layers whose uncompressed content is byte for byte the same
    same_manifest: bool
    reproducible: bool
    manual_same_components: bool
    manual_same_diff_ids: int


Reports = list[dict[str, Any]]


def compare(ours: Reports, rootfs: Reports, manual: Reports) -> Compared:
    """Check like for like: ours and ``--rootfs`` of the same tree give as many
    layers with the same components each; fails loudly when they do not."""
    a, b, c = ours[-1]["layers"], rootfs[-1]["layers"], manual[-1]["layers"]
    if len(a) != len(b):
        raise SystemExit(f"re-chunked image has {len(a)} layers, the one written from the tree {len(b)}")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x["components"] != y["components"]:
            raise SystemExit(
                f"layer {i}: re-chunked image has components {x['components'][:5]}…, "
                f"the one written from the tree {y['components'][:5]}…"
            )
    if len(a) > MAX_LAYERS:
        raise SystemExit(f"re-chunked image has {len(a)} layers, more than --max-layers {MAX_LAYERS}")
    return Compared(
        len(a),
        True,
        sum(x["diff_id"] == y["diff_id"] for x, y in zip(a, b, strict=True)),
        ours[-1]["manifest"] == rootfs[-1]["manifest"],
        len({r["manifest"] for r in ours}) == 1,
        len(a) == len(c) and all(x["components"] == z["components"] for x, z in zip(a, c, strict=False)),
        sum(x["diff_id"] == z["diff_id"] for x, z in zip(a, c, strict=False)),
    )


def check_image(out: Path, report: dict[str, Any]) -> None:
    """``skopeo inspect`` reads the re-chunked image and sees its reported layers."""
    inspect = json.loads(run_child(["skopeo", "inspect", f"oci:{out}"], capture=True).stdout)
    if inspect["Layers"] != [layer["digest"] for layer in report["layers"]]:
        raise SystemExit(f"{out}: skopeo inspect sees other layers than the command reported")


@dataclass
class Result:
    """Everything measured, and the verdicts."""

    tree: str
    entries: int
    content_bytes: int
    image: str
    image_layer_bytes: int
    cpus: int | None
    load_before: str
    load_after: str
    rootless: bool
    measures: dict[str, Measure]
    manual_steps: dict[str, float]
    compared: Compared
    ratio_rootfs: float
    ratio_manual: float
    rootfs_passed: bool
    manual_passed: bool
    rss_passed: bool
    passed: bool


def bench(runs: int, tree_name: str = "minbase") -> Result:
    """Every measurement, on a cached laid-out tree and its single-layer image."""
    tree, key = tree_and_key(tree_name)
    entries, content = tree_stats(tree)
    image = single_layer_image(tree, key)
    index = json.loads((image / "index.json").read_text())
    algo, _, hexdigest = index["manifests"][0]["digest"].partition(":")
    layer_bytes = json.loads((image / "blobs" / algo / hexdigest).read_text())["layers"][0]["size"]
    # umoci keeps the owners only when it can chown, that is as root.
    rootless = os.geteuid() != 0
    work_parent = cache_dir().parent / "work"
    work_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rechunk-speed-", dir=work_parent) as tmp:
        work = Path(tmp)
        # Warm the page cache with both inputs.
        run_child(["tar", "-cf", "/dev/null", "-C", str(tree), "."])
        for blob in (image / "blobs" / "sha256").iterdir():
            run_child(["cat", str(blob)])
        note(
            f"  tree {tree}: {entries} entries, {content / 1e6:.0f} MB of content; "
            f"image {image}: one {layer_bytes / 1e6:.0f} MB gzip layer"
        )
        load_before = load()
        ours, ours_reports = encapsulate_job(
            "ours: --from the single-layer image", ["--from", f"oci:{image}:{TAG}"], work / "ours"
        )
        rootfs, rootfs_reports = encapsulate_job(
            "ours: --rootfs TREE", ["--rootfs", str(tree)], work / "rootfs"
        )
        manual, steps, manual_reports = manual_job(image, work, rootless)
        jobs: dict[str, Job] = {"ours": ours, "rootfs": rootfs, "manual": manual}
        run_interleaved(list(jobs.values()), runs)
        load_after = load()
        compared = compare(ours_reports, rootfs_reports, manual_reports)
        check_image(work / "ours", ours_reports[-1])
    m = {key: job.measure() for key, job in jobs.items()}
    fastest = min(range(len(steps.runs)), key=lambda i: sum(steps.runs[i]))
    ratio_rootfs = m["ours"].best_s / m["rootfs"].best_s
    ratio_manual = m["ours"].best_s / m["manual"].best_s
    rootfs_ok = ratio_rootfs <= ROOTFS_RATIO_TARGET
    manual_ok = ratio_manual <= MANUAL_RATIO_TARGET
    rss_ok = m["ours"].peak_rss_bytes < RSS_TARGET_BYTES
    return Result(
        str(tree),
        entries,
        content,
        str(image),
        layer_bytes,
        os.cpu_count(),
        load_before,
        load_after,
        rootless,
        m,
        dict(zip(steps.names, steps.runs[fastest], strict=True)),
        compared,
        ratio_rootfs,
        ratio_manual,
        rootfs_ok,
        manual_ok,
        rss_ok,
        rootfs_ok and manual_ok and rss_ok,
    )


def report(r: Result) -> None:
    """The figures, the checks and the verdicts, as a table."""
    print(
        f"Tree: {r.tree} (laid out for OSTree), {r.entries} entries, "
        f"{r.content_bytes / 1e6:.0f} MB of file content; "
        f"single-layer image: {r.image_layer_bytes / 1e6:.0f} MB gzip; "
        f"{r.cpus} CPUs, load average {r.load_before} before, {r.load_after} after"
    )
    print_measures(r.measures.values())
    steps = ", ".join(f"{name} {s:.2f}s" for name, s in r.manual_steps.items())
    print(f"  manual path, its fastest run: {steps}{' (umoci --rootless)' if r.rootless else ''}")
    c = r.compared
    print(
        f"  ours and --rootfs of the tree: {c.layers} layers each, the same components in each; "
        f"{c.same_diff_ids}/{c.layers} layers byte for byte the same, "
        f"{'the same manifest' if c.same_manifest else 'another manifest (--from keeps the config: Cmd)'}"
        f"; ours gave "
        f"{'the same' if c.reproducible else 'a DIFFERENT'} digest every run; skopeo inspect OK"
    )
    print(
        f"  manual path's image: {'the same' if c.manual_same_components else 'other'} components per layer, "
        f"{c.manual_same_diff_ids}/{c.layers} layers byte for byte the same as ours"
    )
    print()
    print(
        f"  ours / --rootfs of the tree:     {r.ratio_rootfs:.3f}x (target <= {ROOTFS_RATIO_TARGET}) "
        f"{verdict(r.rootfs_passed)}"
    )
    print(
        f"  ours / manual path:              {r.ratio_manual:.3f}x (target <= {MANUAL_RATIO_TARGET}) "
        f"{verdict(r.manual_passed)}"
    )
    print(
        f"  peak RSS ours:                   {r.measures['ours'].peak_rss_bytes / 1e6:.0f} MB "
        f"(target < {RSS_TARGET_BYTES / 1e6:.0f} MB) {verdict(r.rss_passed)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, write ``--json``; 0 unless a check of the images failed."""

    args = bench_arguments(argv, "benches.rechunk_speed", __doc__, tree_option)
    for tool in ("umoci", "skopeo", "gzip", "tar"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed; install it (apt-get install {tool})")
    targets = {
        "ours_over_rootfs": ROOTFS_RATIO_TARGET,
        "ours_over_manual": MANUAL_RATIO_TARGET,
        "peak_rss_bytes": RSS_TARGET_BYTES,
    }
    result: Result = measure_and_record(
        f"rechunk speed ({args.tree})", args.runs, args.json, targets, lambda runs: bench(runs, args.tree)
    )
    report(result)
    print(f"\ntargets: {verdict(result.passed)} (a missed target is reported, not a failure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
