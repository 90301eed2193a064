"""Every benchmark in one run: one table of ratios against the peers measured in
the same run, ``bench-results.json``, and a verdict that fails only on a clear
regression.

Profiles:

- ``short`` (CI, a few minutes once the trixie tree is cached): mapping speed on
  the real trixie commit and a 50,000-file generated commit, the chunker's
  speed, encapsulation against umoci, tar and gzip/pigz, re-chunking a
  single-layer image against ``--rootfs`` and skopeo + umoci unpack, a
  rebuild after a point update taking its layers from the prior (in an
  archive and in a registry) and from ``--cache``, against ``umoci insert``
  (one run each; re-chunking best of 3), and the update-cost experiment on the frozen update pairs stored in
  the repository (``benches/data``) of a subset of the package sets
  (``SHORT_UPDATE_SETS``);
- ``full`` (``make bench``): the same with more runs, a 500,000-file generated
  commit, the update-cost experiment on every frozen set, and also on freshly built update pairs
  (``benches.update_pairs build``, cached between runs).

Each figure is printed with its target and a status: ``ok`` (target met),
``missed`` (target missed, within twice the target: noise, not a failure),
``REGRESSION`` (worse than twice the target).  A target not yet reached is a
*known gap* listed in ``benches/reference.json`` with the figure last measured;
it fails only when it gets worse than twice that figure.  Update-cost figures are
exact on the frozen pairs, so they are also compared with the reference: any
debchunk figure that got worse at all is a ``REGRESSION``;
``--update-reference`` records the current exact figures after an intended
change (known gaps are edited by hand, with the reason).

Usage: ``python -m benches.suite [--profile short|full] [--json FILE]
[--update-reference]``; exits 1 on a regression or a benchmark that failed to run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benches import encapsulate_speed, mapping_speed, rebuild_speed, rechunk_speed
from benches.chunker_speed import COMPONENTS_TARGET_S, FILES_TARGET_S
from benches.mapping_speed import host_info, note, source_revision

REFERENCE = Path(__file__).resolve().parent / "reference.json"
REGRESSION_FACTOR = 2.0
OURS = "debchunk"
PROFILES: dict[str, dict[str, list[str]]] = {
    "short": {
        "mapping_speed": ["--profile", "short", "--runs", "3", "--gen-runs", "1"],
        "chunker_speed": [],
        "encapsulate_speed": ["--runs", "1"],
        # Best of 3: its ratio is measured on 2 shared cores against a
        # target (1.2x) about 0.05 above what those cores allow (~1.13x), and
        # one run of each command varied from 1.02x to 1.20x.
        "rechunk_speed": ["--runs", "3"],
        "rebuild_speed": ["--runs", "1"],
    },
    "full": {
        "mapping_speed": ["--profile", "full"],
        "chunker_speed": [],
        "encapsulate_speed": ["--runs", "3"],
        "rechunk_speed": ["--runs", "3"],
        "rebuild_speed": ["--runs", "3"],
    },
}

# The update-cost experiment's arguments per profile.  The short profile (CI,
# under 3 minutes in all) plans a subset of the frozen sets and skips the
# perturbed draws (the suite reads only downloads and simulations); the full
# one plans every set.
SHORT_UPDATE_SETS = "server,desktop"
UPDATE_COST_ARGS: dict[str, list[str]] = {
    "short": ["--sets", SHORT_UPDATE_SETS, "--draws", "0"],
    "full": [],
}


@dataclass
class Figure:
    """One line of the table.  ``value / target`` is how far from its target a
    figure is (lower is better); ``exact`` figures are compared with the
    reference instead of being allowed noise."""

    bench: str
    measure: str
    value: float
    unit: str
    target: float | None
    peer: str = ""
    exact: bool = False
    reference: float | None = None
    known_gap: float | None = None
    status: str = ""

    def judge(self) -> None:
        """Set ``status`` from the target (or the known gap), and for exact
        figures the reference."""
        status = "info"
        if self.target is not None:
            limit = REGRESSION_FACTOR * max(self.target, self.known_gap or 0.0)
            status = "ok" if self.value <= self.target else "missed" if self.value <= limit else "REGRESSION"
            if status == "missed" and self.known_gap is not None:
                status = "missed (known gap)"
        if self.exact and self.reference is not None:
            if self.value > self.reference * (1 + 1e-9):
                status = "REGRESSION"
            elif self.value < self.reference * (1 - 1e-9) and status != "REGRESSION":
                status += " (better than reference)"
        self.status = status


def run_bench(module: str, args: Sequence[str], log: Path) -> tuple[dict[str, Any] | None, float]:
    """Run ``python -m benches.MODULE ARGS --json FILE``; its JSON (None when it
    crashed or wrote none) and wall time.  Its output goes to ``log`` and the terminal."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        started = time.monotonic()
        note(f"== {module} {' '.join(args)}")
        with log.open("a") as f:
            proc = subprocess.run(
                [sys.executable, "-m", f"benches.{module}", *args, "--json", out.name],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            f.write(proc.stdout)
        print(proc.stdout, end="", file=sys.stderr)
        seconds = time.monotonic() - started
        try:
            data: dict[str, Any] = json.loads(Path(out.name).read_text())
        except ValueError:
            note(f"{module}: exited {proc.returncode} and wrote no results")
            return None, seconds
        return data, seconds


def mapping_figures(data: dict[str, Any]) -> list[Figure]:
    real, gen = data["real_tree"], data["generated"]
    return [
        Figure(
            "mapping",
            "build_mapping / ostree ls -R (real commit)",
            real["ratio_mapping"],
            "x",
            mapping_speed.RATIO_TARGET,
            "ostree ls",
        ),
        Figure(
            "mapping",
            f"{gen['files']:,}-file commit, wall",
            gen["wall_s"],
            "s",
            mapping_speed.GEN_TIME_TARGET_S,
        ),
        Figure(
            "mapping",
            f"{gen['files']:,}-file commit, peak RSS",
            gen["peak_rss_bytes"] / 1e6,
            "MB",
            mapping_speed.GEN_RSS_TARGET_BYTES / 1e6,
        ),
    ]


def chunker_figures(data: dict[str, Any]) -> list[Figure]:
    return [
        Figure(
            "chunker", "plan 20,000 components", data["plan_20000_components_s"], "s", COMPONENTS_TARGET_S
        ),
        Figure("chunker", "plan 1,000,000 files", data["plan_1000000_files_s"], "s", FILES_TARGET_S),
    ]


def encapsulate_figures(data: dict[str, Any]) -> list[Figure]:
    r = data["result"]
    rss = r["measures"]["ours"]["peak_rss_bytes"]
    return [
        Figure(
            "encapsulate",
            "wall / umoci insert",
            r["ratio_umoci"],
            "x",
            encapsulate_speed.UMOCI_RATIO_TARGET,
            "umoci",
        ),
        Figure(
            "encapsulate",
            "wall / tar read",
            r["ratio_tar_read"],
            "x",
            encapsulate_speed.TAR_RATIO_TARGET,
            "tar",
        ),
        Figure(
            "encapsulate",
            "size / tar | gzip -6",
            r["ratio_size_gzip"],
            "x",
            encapsulate_speed.SIZE_RATIO_TARGET,
            "gzip -6",
        ),
        Figure("encapsulate", "wall / tar | pigz -6", r["ratio_pigz"], "x", None, "pigz"),
        Figure(
            "encapsulate",
            "size / umoci insert",
            r["ratio_size_umoci"],
            "x",
            1.0,
            "umoci",
        ),
        Figure(
            "encapsulate",
            "zstd wall / tar | zstd -3 -T2",
            r["ratio_zstd"],
            "x",
            encapsulate_speed.ZSTD_RATIO_TARGET,
            "zstd",
        ),
        # 1 when two runs, or builds in 1 and 2 threads, gave different bytes:
        # any difference is a regression (the target is 0).
        Figure(
            "encapsulate",
            "images differ (2 runs, 1 and 2 threads)",
            0.0 if r["same_bytes_passed"] else 1.0,
            "",
            0.0,
        ),
        Figure(
            "encapsulate", "again, layers reused / umoci insert", r["ratio_again_umoci"], "x", None, "umoci"
        ),
        Figure("encapsulate", "peak RSS", rss / 1e6, "MB", encapsulate_speed.RSS_TARGET_BYTES / 1e6),
    ]


def rechunk_figures(data: dict[str, Any]) -> list[Figure]:
    r = data["result"]
    rss = r["measures"]["ours"]["peak_rss_bytes"]
    return [
        Figure(
            "rechunk",
            "wall / --rootfs of the tree",
            r["ratio_rootfs"],
            "x",
            rechunk_speed.ROOTFS_RATIO_TARGET,
            "--rootfs",
        ),
        Figure(
            "rechunk",
            "wall / skopeo + umoci unpack + --rootfs",
            r["ratio_manual"],
            "x",
            rechunk_speed.MANUAL_RATIO_TARGET,
            "umoci unpack",
        ),
        Figure("rechunk", "peak RSS", rss / 1e6, "MB", rechunk_speed.RSS_TARGET_BYTES / 1e6),
    ]


def rebuild_figures(data: dict[str, Any]) -> list[Figure]:
    """Per rebuild after a point update (layers taken from the prior or the
    cache): its time against ``umoci insert`` of the new tree, and whether its
    manifest differs from a build from scratch (any difference is a regression)."""
    out = []
    for row in data["rebuilds"]:
        out.append(
            Figure(
                "rebuild",
                f"{row['name']} / umoci insert",
                row["ratio_to_umoci"],
                "x",
                rebuild_speed.RATIO_TARGET,
                "umoci",
            )
        )
        out.append(
            Figure(
                "rebuild",
                f"{row['name']}: manifest differs from scratch",
                0.0 if row["same_manifest_as_from_scratch"] else 1.0,
                "",
                0.0,
            )
        )
    return out


def update_cost_figures(data: dict[str, Any], source: str) -> list[Figure]:
    """Per case: debchunk's download and its ratio to the best baseline; per
    simulation: the mean weekly download and its ratio to the floor."""
    out: list[Figure] = []
    bench = f"update cost ({source})"
    for case in data["cases"]:
        rows = {r["strategy"]: r for r in case["rows"]}
        ours = rows.pop(OURS)
        others = {k: v for k, v in rows.items() if k not in ("single layer",)}
        best_name, best = min(others.items(), key=lambda kv: kv[1]["download"])
        label = f"{case['set_name']} {case['pair']} N={case['max_layers']}"
        exact = source == "frozen"
        out.append(Figure(bench, f"{label}: download", ours["download"] / 1e6, "MB", None, exact=exact))
        if case["pair"] == "rebuild":
            floor = max(case["ideal"], 1)
            out.append(
                Figure(bench, f"{label}: download / floor", ours["download"] / floor, "x", 1.1, "floor")
            )
        elif best["download"]:
            out.append(
                Figure(
                    bench,
                    f"{label}: download / best baseline",
                    ours["download"] / best["download"],
                    "x",
                    1.0,
                    best_name,
                )
            )
    for f in data.get("corpus", []):
        kind = f.get("pairs_of", "all")
        if kind == "all":
            label = f"corpus N={f['max_layers']} ({f['pairs']} pairs)"
            out.append(Figure(bench, f"{label}: mean waste / best baseline's", f["mean"], "x", 0.7, "best"))
            out.append(Figure(bench, f"{label}: worst waste / best baseline's", f["worst"], "x", 1.0, "best"))
        else:
            label = f"{kind} pairs N={f['max_layers']} ({f['pairs']} pairs)"
            out.append(Figure(bench, f"{label}: worst waste / best baseline's", f["worst"], "x", 0.8, "best"))
    for sim in data["simulations"]:
        weekly = sim["mean"][OURS]
        label = f"{sim.get('set_name', 'desktop')} 52 weeks N={sim['max_layers']}"
        out.append(Figure(bench, f"{label}: MB/week", weekly / 1e6, "MB", None, exact=source == "frozen"))
        for gap, per in sim.get("by_gap", {}).items():
            out.append(
                Figure(
                    bench,
                    f"{label}: a client every {gap}: MB/update",
                    per[OURS] / 1e6,
                    "MB",
                    None,
                    exact=source == "frozen",
                )
            )
        out.append(Figure(bench, f"{label}: / floor", weekly / sim["floor"], "x", 1.5, "floor"))
        for name, limit in (("ostree-ext (prior)", 0.75), ("chunkah", 0.85)):
            # Targets set on the desktop; the other sets' figures are reported.
            target = (
                limit if sim["max_layers"] == 64 and sim.get("set_name", "desktop") == "desktop" else None
            )
            out.append(Figure(bench, f"{label}: / {name}", weekly / sim["mean"][name], "x", target, name))
    return out


def _key(f: Figure) -> str:
    return f"{f.bench} | {f.measure}"


def print_table(figures: list[Figure]) -> None:
    head = ("benchmark", "measure", "value", "target", "peer", "status")
    rows = [head] + [
        (
            f.bench,
            f.measure,
            f"{f.value:.3f} {f.unit}" if f.unit == "x" else f"{f.value:.2f} {f.unit}",
            "" if f.target is None else f"<= {f.target:g} {f.unit}",
            f.peer,
            f.status,
        )
        for f in figures
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        cells = zip(r, widths, strict=True)
        print("  ".join(c.rjust(w) if i in (2, 3) else c.ljust(w) for i, (c, w) in enumerate(cells)).rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the profile, print the table, write the results; 1 on a regression."""
    parser = argparse.ArgumentParser(prog="python -m benches.suite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument("--json", metavar="FILE", default="bench-results.json", help="(bench-results.json)")
    parser.add_argument(
        "--update-reference", action="store_true", help="record the exact figures in benches/reference.json"
    )
    args = parser.parse_args(argv)
    log = Path(args.json).with_suffix(".log")
    log.write_text("")
    figures: list[Figure] = []
    broken: list[str] = []
    timings: dict[str, float] = {}
    makers = {
        "mapping_speed": mapping_figures,
        "chunker_speed": chunker_figures,
        "encapsulate_speed": encapsulate_figures,
        "rechunk_speed": rechunk_figures,
        "rebuild_speed": rebuild_figures,
    }
    for module, extra in PROFILES[args.profile].items():
        data, timings[module] = run_bench(module, extra, log)
        if data is None:
            broken.append(module)
        else:
            figures += makers[module](data)
    sources = ["frozen"]
    if args.profile == "full":
        built = subprocess.run([sys.executable, "-m", "benches.update_pairs", "build", "--set", "all"])
        if built.returncode == 0:
            sources.append("built")
        else:
            broken.append("update_pairs build")
    for source in sources:
        extra = UPDATE_COST_ARGS[args.profile] + (["--frozen"] if source == "frozen" else [])
        data, timings[f"update_cost {source}"] = run_bench("update_cost", extra, log)
        if data is None:
            broken.append(f"update_cost {source}")
        else:
            figures += update_cost_figures(data, source)

    stored: dict[str, Any] = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}
    reference: dict[str, float] = stored.get("figures", {})
    gaps: dict[str, dict[str, Any]] = stored.get("known_gaps", {})
    for f in figures:
        if f.exact:
            f.reference = reference.get(_key(f))
        if _key(f) in gaps:
            f.known_gap = float(gaps[_key(f)]["value"])
        f.judge()
    print()
    print(f"debchunk benchmarks, profile {args.profile}, code {source_revision()}")
    print_table(figures)
    regressions = [f for f in figures if f.status == "REGRESSION"]
    result = {
        "profile": args.profile,
        "revision": source_revision(),
        "host": host_info(),
        "seconds": timings,
        "figures": [asdict(f) for f in figures],
        "regressions": [_key(f) for f in regressions],
        "broken": broken,
    }
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nresults: {args.json}; every benchmark's own output: {log}")
    if args.update_reference:
        exact = {_key(f): f.value for f in figures if f.exact}
        stored.update(revision=source_revision(), figures=exact)
        REFERENCE.write_text(json.dumps(stored, indent=1) + "\n")
        print(f"reference updated: {REFERENCE} ({len(exact)} exact figures)")
    for f in regressions:
        print(f"REGRESSION: {_key(f)}: {f.value:.4g} {f.unit}", file=sys.stderr)
    for name in broken:
        print(f"FAILED TO RUN: {name}", file=sys.stderr)
    return 1 if regressions or broken else 0


if __name__ == "__main__":
    sys.exit(main())
