"""How fast a rebuild after a point update is when the layers that did not
change are taken, not compressed again (project issue 14, acceptance 3).

Trees: the trixie minbase tree of ``benches.encapsulate_speed`` (cached, laid
out for OSTree) as the old build, and a copy of it with one package's file
changed (``usr/bin/gzip``, new content) as the point update.  The real trees
of the frozen update pairs are not kept on disk (only their indexes), so this
stands in for one pair.

Untimed: the old tree built as ``oci-archive:OLD.tar``, pushed to a real
``docker-registry`` (started here on a free port), and built with ``--cache
CACHE``.  Timed, best of N runs taking turns (``run_child``: wall time of the
child process):

1. ``umoci insert`` of the new tree into an empty image (the reference);
2. the new tree ``--prior oci-archive:OLD.tar`` into ``oci-archive:NEW.tar``;
3. the new tree ``--prior registry:OLD`` into ``registry:NEW`` (plain HTTP);
4. the new tree ``--cache CACHE --prior-plan PLAN`` (the old image's plan)
   into a fresh ``oci:`` layout (the cache restored to its state after the
   old build before each run, untimed).

Targets: each of 2-4 at most 0.3x of 1; each manifest the one a build from
scratch (the same plan, nothing to take) gives.

``--tree desktop`` takes a real point update instead: the desktop set's
trixie tree as the old build and its trixie + updates + security tree as the
new one (``benches.update_pairs``, 2.3 GB each, built there first).

Usage: ``python -m benches.rebuild_speed [--tree minbase|desktop] [--runs N]
[--json FILE]``; exits 1 when a target is missed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benches.debtrees import TreeSpec
from benches.encapsulate_speed import (
    SOURCE_DATE_EPOCH,
    Job,
    Run,
    bench_arguments,
    laid_out_tree,
    run_child,
    run_interleaved,
    tree_option,
    umoci_job,
)
from benches.mapping_speed import host_info, note, source_revision
from benches.registry import docker_registry, manifest_digest
from benches.update_pairs import tree_path
from encapsulate.oci.imgref import DEFAULT_REGISTRY
from encapsulate.oci.prior import prior_plan as read_plan

# container-encapsulate is the entry point beside this interpreter (the venv's).
VENV_BIN = Path(sys.executable).parent

MAX_LAYERS = 64
RATIO_TARGET = 0.3
CHANGED = "usr/bin/gzip"


def point_update(old: Path, new: Path) -> None:
    """``new``: a copy of ``old`` whose ``CHANGED`` has new content."""
    if new.exists():
        shutil.rmtree(new)
    subprocess.run(["cp", "-a", "--reflink=auto", str(old), str(new)], check=True)
    target = new / CHANGED
    data = target.read_bytes() + b"\0point update\0"
    target.unlink()  # a hardlink of the old tree's file must not change
    target.write_bytes(data)
    os.utime(target, (0, 1_767_225_600))


def encapsulate_argv(tree: Path, destination: str, *extra: str) -> list[str]:
    """The ``container-encapsulate`` command line building ``tree``."""
    return [
        str(VENV_BIN / "container-encapsulate"),
        "--rootfs",
        str(tree),
        destination,
        "--max-layers",
        str(MAX_LAYERS),
        "--json",
        *extra,
    ]


ENV = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}


def ours_job(name: str, argv: Sequence[str], before: Any = None) -> tuple[Job, list[dict[str, Any]]]:
    """A timed build; its ``--json`` reports kept.  ``before()`` runs untimed first."""
    reports: list[dict[str, Any]] = []

    def once() -> tuple[Run, int | None]:
        if before is not None:
            before()
        run = run_child(argv, ENV, capture=True)
        reports.append(json.loads(run.stdout))
        return run, None

    return Job(name, " ".join(argv[1:]), once), reports


def pair_trees(tree: str, work: Path) -> tuple[Path, Path, str]:
    """The old and new trees of the point update, and how the new one was made:
    ``minbase``, the trixie minbase tree and a copy with ``CHANGED`` changed;
    ``desktop``, the trees of the desktop set's trixie point update
    (``benches.update_pairs``, built there first)."""
    if tree == "desktop":
        old, new = (tree_path("desktop", b) for b in ("trixie", "trixie-updated"))
        for path in (old, new):
            if not (path / "usr").is_dir():
                raise SystemExit(f"{path}: not built; run python -m benches.update_pairs build --set desktop")
        return old, new, "the desktop set's trixie + updates + security"
    old = laid_out_tree(TreeSpec("trixie"))
    new = work / "new-tree"
    note(f"  point update of {old}: {CHANGED}")
    point_update(old, new)
    return old, new, f"{old} with {CHANGED} changed"


def bench(runs: int, work: Path, tree: str = "minbase") -> dict[str, Any]:
    """Build, time and check; the figures."""
    old, new, what = pair_trees(tree, work)
    with docker_registry(work) as registry:
        note("  old builds (untimed)")
        run_child(encapsulate_argv(old, f"oci-archive:{work}/old.tar"), ENV)
        run_child(encapsulate_argv(old, f"registry:{registry}/os:old", "--dest-tls-verify", "false"), ENV)
        run_child(encapsulate_argv(old, f"oci:{work}/old-layout", "--cache", str(work / "cache")), ENV)
        subprocess.run(["cp", "-a", str(work / "cache"), str(work / "cache.pristine")], check=True)
        prior_plan = work / "prior-plan.json"
        # The old image's plan, as --prior reads it: the build from scratch
        # plans as the rebuilds do, with nothing to take.
        prior_plan.write_text(
            json.dumps(read_plan(f"oci-archive:{work}/old.tar", DEFAULT_REGISTRY).to_json())
        )
        scratch = json.loads(
            run_child(
                encapsulate_argv(new, f"oci:{work}/scratch", "--prior-plan", str(prior_plan)),
                ENV,
                capture=True,
            ).stdout
        )

        def restore_cache() -> None:
            shutil.rmtree(work / "cache")
            subprocess.run(["cp", "-a", str(work / "cache.pristine"), str(work / "cache")], check=True)
            shutil.rmtree(work / "cached-out", ignore_errors=True)

        umoci = umoci_job(new, work / "umoci")
        archive, archive_reports = ours_job(
            "--prior oci-archive: -> oci-archive:",
            encapsulate_argv(new, f"oci-archive:{work}/new.tar", "--prior", f"oci-archive:{work}/old.tar"),
        )
        pushed, pushed_reports = ours_job(
            "--prior registry: -> registry:",
            encapsulate_argv(
                new,
                f"registry:{registry}/os:new",
                "--prior",
                f"registry:{registry}/os:old",
                "--tls-verify",
                "false",
                "--dest-tls-verify",
                "false",
            ),
        )
        cached, cached_reports = ours_job(
            "--cache -> oci:",
            # The plan of the previous build, as a CI job passes it (the cache
            # holds layers, not which plan to keep).
            encapsulate_argv(
                new, f"oci:{work}/cached-out", "--cache", str(work / "cache"), "--prior-plan", str(prior_plan)
            ),
            restore_cache,
        )
        jobs = [umoci, archive, pushed, cached]
        run_interleaved(jobs, runs)
        registry_digest = manifest_digest(f"{registry}/os:new")
    reference = umoci.measure().best_s
    rows = []
    ok = True
    for job, reports in ((archive, archive_reports), (pushed, pushed_reports), (cached, cached_reports)):
        m = job.measure()
        last = reports[-1]
        digest = registry_digest if job is pushed else last["manifest"]
        same = all(r["manifest"] == scratch["manifest"] for r in reports) and digest == scratch["manifest"]
        written = sum(1 for layer in last["layers"] if not layer["reused"])
        ratio = m.best_s / reference
        ok = ok and same and ratio <= RATIO_TARGET
        rows.append(
            {
                **asdict(m),
                "ratio_to_umoci": ratio,
                "layers": len(last["layers"]),
                "layers_compressed": written,
                "same_manifest_as_from_scratch": same,
            }
        )
    return {
        "host": host_info(),
        "revision": source_revision(),
        "trees": {"old": str(old), "new": str(new), "update": what},
        "umoci_insert_s": reference,
        "umoci_runs_s": umoci.measure().runs_s,
        "rebuilds": rows,
        "scratch_manifest": scratch["manifest"],
        "target_ratio": RATIO_TARGET,
        "ok": ok,
    }


def report(result: dict[str, Any]) -> None:
    """The figures, one line each."""
    print(f"umoci insert of the new tree: {result['umoci_insert_s']:.2f} s (runs {result['umoci_runs_s']})")
    for row in result["rebuilds"]:
        verdict = (
            "ok"
            if row["ratio_to_umoci"] <= RATIO_TARGET and row["same_manifest_as_from_scratch"]
            else "MISSED"
        )
        print(
            f"{row['name']}: {row['best_s']:.2f} s = {row['ratio_to_umoci']:.3f}x umoci "
            f"(target <= {RATIO_TARGET}), {row['layers_compressed']}/{row['layers']} layers compressed, "
            f"manifest {'=' if row['same_manifest_as_from_scratch'] else '!='} from scratch: {verdict}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; 1 when a target is missed."""
    args = bench_arguments(argv, "benches.rebuild_speed", __doc__, tree_option)
    with tempfile.TemporaryDirectory(prefix="debchunk-rebuild-", dir=os.environ.get("TMPDIR")) as tmp:
        result = bench(args.runs, Path(tmp), args.tree)
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
