"""Bytes a client downloads per update, debchunk's packing against the baselines.

For every update pair of real Debian trees (``benches.update_pairs``: every
package set, from a small appliance to a KDE desktop; trixie and bookworm ->
the same + updates + security, forky -> sid, and a back-to-back rebuild of
trixie) and every strategy: plan the old tree, plan the
new tree with the old plan as prior (strategies that take one), and count the
bytes of new layers whose content is not already in an old layer.  Against that:
the ideal (file content found nowhere in the old tree) and a single layer;
waste = (download - ideal) / (single - ideal).

Then a 52-week simulation on each set's trixie tree's components: each week
every component changes with its own weekly probability (and its size by a
few percent), plans are remade with the previous week's as prior, and a layer
is downloaded when any component in it changed.

Over the corpus: for each set, pair and layer budget, the ratio of debchunk's
waste to the best baseline's (the baseline downloading least), and over all
non-rebuild pairs their mean and worst.

``python -m benches.update_cost [--frozen] [--sets all|server,desktop,...]
[--layers 64,128] [--json FILE]`` prints one table per case, strategies as
rows, the simulations, the corpus summary and the targets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import stat
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from benches import baselines
from benches.update_pairs import (
    SETS,
    TreeIndex,
    corpus_sets,
    download_bytes,
    epoch_day,
    frozen_builds,
    ideal_bytes,
    load_index,
    pairs,
    single_layer_bytes,
)
from chunker import Plan, pack
from chunker.cost import make_plan
from mapping import Component, split_components
from mapping.changelog import probability
from mapping.model import Kind
from mapping.split import DATA_SUFFIX, is_data_path

# (components, max_layers, prior, the peer's own inputs as keyword arguments).
Strategy = Callable[[Sequence[Component], int, Plan | None, Mapping[str, Any]], Plan]


def _debchunk(
    components: Sequence[Component], max_layers: int, prior: Plan | None, inputs: Mapping[str, Any]
) -> Plan:
    return pack(components, max_layers, prior)


def _no_prior(fn: Callable[..., Plan]) -> Strategy:
    return lambda components, max_layers, prior, inputs: fn(components, max_layers, None, **inputs)


def _with_prior(fn: Callable[..., Plan]) -> Strategy:
    return lambda components, max_layers, prior, inputs: fn(components, max_layers, prior, **inputs)


STRATEGIES: dict[str, Strategy] = {
    "single layer": _no_prior(baselines.single_layer),
    "one per layer + catch-all": _no_prior(baselines.one_per_layer),
    "ostree-ext (no prior)": _no_prior(baselines.ostree_ext_basic_packing),
    "ostree-ext (prior)": _with_prior(baselines.ostree_ext_basic_packing),
    "chunkah": _with_prior(baselines.chunkah_packing),
    "rechunk (prior)": _with_prior(baselines.rechunk_greedy),
    "debchunk": _debchunk,
}
OURS = "debchunk"
# Strategies that plan on components split below package level (mapping.split).
SPLITS = {OURS}


def split_index(index: TreeIndex, prior: Plan | None = None) -> TreeIndex:
    """The index with its package components split as debchunk splits them."""
    components, owners = split_components(
        index.components,
        index.paths,
        index.sizes,
        index.content_ids,
        index.owners,
        prior=None if prior is None else prior.layer_index().keys(),
    )
    return replace(
        index,
        components=components,
        component_index={c.name: i for i, c in enumerate(components)},
        owners=owners,
    )


# --------------------------------------------------------------------------- the peers' views
#
# Each peer forms its own units from the tree (rpm-ostree and rechunk: binary
# packages; chunkah: source packages, bigfiles, one unclaimed component) and
# computes its own change estimate from the changelogs (benches.baselines); a
# view is the index regrouped into those units, with those inputs.  Ownership
# is what the dpkg file lists say (the index's ``row_packages``), plus, by
# default (``PEER_OWNERSHIP``), the content the mapping gives a package by
# other means (byte code, files made by maintainer scripts), each row to one
# binary package of that source; with ``--peer-ownership dpkg`` that content
# is unpackaged for the peers, as a literal port of their dpkg support would
# see it.


@dataclass(frozen=True, eq=False)
class PeerView:
    """The index as one peer sees it: its units as components, its inputs
    (keyword arguments of its baseline) and, for each unit, the index's
    components whose files it holds (a unit changes when any of them does)."""

    index: TreeIndex
    inputs: dict[str, Any]
    parts: tuple[tuple[int, ...], ...]


def binary_packages(index: TreeIndex) -> list[baselines.BinaryPackage]:
    """The index's binary packages with their changelog records."""
    return [
        baselines.BinaryPackage(p.package_id or p.package, p.source, p.changelog_days, p.changelog_entries)
        for p in index.packages
    ]


def reference_day(index: TreeIndex) -> int:
    """The day peers count back from: the tree's reference date (debchunk's, the
    newest changelog date or ``SOURCE_DATE_EPOCH``; chunkah's image creation
    date, rechunk's wall clock at build time)."""
    if index.reference_date is None:
        raise ValueError(f"{index.set_name}/{index.build_name}: the index has no reference date")
    return epoch_day(dt.datetime.fromisoformat(index.reference_date))


# How the peers' views own content no dpkg file list names (byte code, caches
# and other files maintainer scripts write), which the mapping gives to a
# source package: "mapped" gives each such row to a binary package of that
# source (``adopted_row_packages``), "dpkg" leaves it unowned for the peers
# (their catch-all).  "mapped" is the default: it is the more favourable to the
# peers on the frozen corpus (docs/update-cost.md), and a fair comparison gives
# them the benefit of the doubt.
PEER_OWNERSHIPS = ("mapped", "dpkg")
PEER_OWNERSHIP = "mapped"


def _listed_row_packages(index: TreeIndex) -> npt.NDArray[np.int64]:
    if index.row_packages is None:
        raise ValueError(
            f"{index.set_name}/{index.build_name}: index format 1 has no per-binary-package records; "
            f"run `python -m benches.update_pairs build --set {index.set_name} --reindex` (and freeze)"
        )
    return index.row_packages


def _parents(path: str) -> list[str]:
    """``path``'s ancestor directories, nearest first (``""`` the root)."""
    out = []
    while path:
        path = path.rpartition("/")[0]
        out.append(path)
    return out


def adopted_row_packages(index: TreeIndex) -> npt.NDArray[np.int64]:
    """For each row, the binary package owning it: the one whose dpkg file list
    names it, else, for a row the mapping gives to a source package, the binary
    package of that source listing files in the row's nearest ancestor
    directory (``__pycache__/x.pyc`` goes with ``x.py``, a module cache with
    its modules), else that source's binary package listing the most bytes
    (its first by name when it lists none); -1 for the rest (the mapping's
    volatile and unpackaged content)."""
    listed = _listed_row_packages(index)
    result = listed.copy()
    source_of = [p.source for p in index.packages]
    by_dir: dict[tuple[str, str], int] = {}
    listed_bytes: dict[int, int] = {}
    for row, k in enumerate(listed.tolist()):
        if k < 0:
            continue
        directory = index.paths[row].rpartition("/")[0]
        by_dir.setdefault((source_of[k], directory), k)
        listed_bytes[k] = listed_bytes.get(k, 0) + int(index.sizes[row])
    biggest: dict[str, int] = {}
    for k, source in enumerate(source_of):
        best = biggest.get(source)
        if best is None or listed_bytes.get(k, 0) > listed_bytes.get(best, 0):
            biggest[source] = k
    for row in np.flatnonzero(listed < 0).tolist():
        owner = index.components[int(index.owners[row])]
        if owner.kind != "package" or owner.name not in biggest:
            continue
        found = (by_dir.get((owner.name, d)) for d in _parents(index.paths[row]))
        result[row] = next((k for k in found if k is not None), biggest[owner.name])
    return result


def _row_packages(index: TreeIndex, ownership: str) -> npt.NDArray[np.int64]:
    """Each row's binary package (-1: none) under ``ownership`` (``PEER_OWNERSHIPS``)."""
    if ownership == "dpkg":
        return _listed_row_packages(index)
    if ownership == "mapped":
        return adopted_row_packages(index)
    raise ValueError(f"peer ownership {ownership!r}: one of {', '.join(PEER_OWNERSHIPS)}")


def regroup(
    index: TreeIndex, labels: Sequence[str], kinds: Mapping[str, Kind], p: Mapping[str, float]
) -> tuple[TreeIndex, tuple[tuple[int, ...], ...]]:
    """``index`` with its rows grouped by ``labels`` (one per row) into
    components of ``kinds``, change probability ``p`` (0 when absent), size
    counting each distinct content once; and each new component's parts."""
    names = sorted(set(labels))
    position = {n: i for i, n in enumerate(names)}
    owners = np.fromiter((position[label] for label in labels), dtype=np.int64, count=len(labels))
    contents: list[dict[str, int]] = [{} for _ in names]
    parts: list[set[int]] = [set() for _ in names]
    for row, (k, cid, size) in enumerate(
        zip(owners.tolist(), index.content_ids, index.sizes.tolist(), strict=True)
    ):
        contents[k].setdefault(cid, size)
        parts[k].add(int(index.owners[row]))
    files = np.bincount(owners, minlength=len(names))
    components = tuple(
        Component(
            n, kinds[n], size=sum(contents[k].values()), files=int(files[k]), change_probability=p.get(n, 0.0)
        )
        for k, n in enumerate(names)
    )
    view = replace(index, components=components, component_index=position, owners=owners)
    return view, tuple(tuple(sorted(x)) for x in parts)


def _binary_names(index: TreeIndex) -> list[str]:
    """Each binary package's unit name: its name, ``name:arch`` when the name is
    installed for several architectures."""
    count: dict[str, int] = {}
    for p in index.packages:
        count[p.package] = count.get(p.package, 0) + 1
    return [p.package if count[p.package] == 1 else f"{p.package}:{p.architecture}" for p in index.packages]


def ostree_ext_view(index: TreeIndex, ownership: str = PEER_OWNERSHIP) -> PeerView:
    """rpm-ostree's content sources (``rust/src/container.rs``): one per binary
    package (its dpkg-listed files, ``change_frequency`` from its changelog),
    ``user.component`` components as exclusive ones, the mapping's volatile
    components (initramfs, like rpm-ostree's own initramfs source, and the
    dpkg database) with ``u32::MAX``, and everything else one unpackaged
    source."""
    rows = _row_packages(index, ownership)
    names = _binary_names(index)
    frequency_by_id = baselines.ostree_ext_change_frequency(binary_packages(index))
    frequency = {names[k]: frequency_by_id[p.package_id or p.package] for k, p in enumerate(index.packages)}
    labels: list[str] = []
    kinds: dict[str, Kind] = {}
    kind: Kind
    for row, k in enumerate(rows.tolist()):
        owner = index.components[int(index.owners[row])]
        if owner.kind == "component":
            label, kind = owner.name, owner.kind
        elif k >= 0:
            label, kind = names[k], "package"
        elif owner.kind == "volatile":
            label, kind = owner.name, owner.kind
        else:
            label, kind = "rpmostree-unpackaged-content", "unpackaged"
        labels.append(label)
        kinds[label] = kind
    p = {n: probability(f) for n, f in frequency.items()}
    view, parts = regroup(index, labels, kinds, p)
    present = {n: f for n, f in frequency.items() if n in view.component_index}
    return PeerView(view, {"change_frequency": present}, parts)


def chunkah_view(index: TreeIndex, ownership: str = PEER_OWNERSHIP) -> PeerView:
    """chunkah's components (``src/components/``): ``xattr/<name>`` for
    ``user.component`` components (highest priority), ``dpkg/<source>`` for
    dpkg-listed files, ``bigfiles/<file name>`` for any other regular file of
    1 MiB or more (the full path when the name is taken; hard links are not
    grouped, the index has no inode numbers), and ``chunkah/unclaimed``; the
    last two with stability 0."""
    rows = _row_packages(index, ownership)
    stability = baselines.chunkah_dpkg_stability(binary_packages(index), reference_day(index))
    labels: list[str] = []
    kinds: dict[str, Kind] = {}
    bigfile_names: set[str] = set()
    kind: Kind
    for row, k in enumerate(rows.tolist()):
        owner = index.components[int(index.owners[row])]
        path = index.paths[row]
        if owner.kind == "component":
            label, kind = f"xattr/{owner.name}", owner.kind
            stability[label] = 1.0 - owner.change_probability
        elif k >= 0:
            label, kind = f"{baselines.CHUNKAH_DPKG_REPO}/{index.packages[k].source}", "package"
        elif (
            stat.S_ISREG(int(index.modes[row]))
            and int(index.sizes[row]) >= baselines.CHUNKAH_BIGFILE_MIN_SIZE
        ):
            base = path.rpartition("/")[2]
            name = path if base in bigfile_names else base
            bigfile_names.add(base)
            label, kind = f"bigfiles/{name}", "bigfile"
            stability[label] = 0.0
        else:
            label, kind = baselines.CHUNKAH_UNCLAIMED, "unpackaged"
            stability[label] = 0.0
        labels.append(label)
        kinds[label] = kind
    view, parts = regroup(index, labels, kinds, {n: 1.0 - s for n, s in stability.items()})
    present = {n: s for n, s in stability.items() if n in view.component_index}
    return PeerView(view, {"stability": present}, parts)


def rechunk_view(index: TreeIndex, ownership: str = PEER_OWNERSHIP) -> PeerView:
    """rechunk's packages (``alg.process_meta``): one per binary package name
    (its dpkg-listed files but those under ``/etc`` and ``/usr/etc``, which
    rechunk leaves to ``unpackaged``), ``user.component`` components as meta
    packages, and ``unpackaged`` for the rest; update weeks from the
    changelogs."""
    rows = _row_packages(index, ownership)
    weeks = baselines.rechunk_weeks(binary_packages(index), reference_day(index))
    labels: list[str] = []
    kinds: dict[str, Kind] = {}
    kind: Kind
    for row, k in enumerate(rows.tolist()):
        owner = index.components[int(index.owners[row])]
        path = index.paths[row]
        if owner.kind == "component":
            label, kind = owner.name, owner.kind
        elif k >= 0 and not (path.startswith("etc/") or path.startswith("usr/etc/")):
            label, kind = index.packages[k].package, "package"
        else:
            label, kind = baselines.RECHUNK_UNPACKAGED, "unpackaged"
        labels.append(label)
        kinds[label] = kind
    p = {n: bin(w).count("1") / baselines.RECHUNK_WEEKS for n, w in weeks.items()}
    view, parts = regroup(index, labels, kinds, p)
    present = {n: w for n, w in weeks.items() if n in view.component_index}
    return PeerView(view, {"weeks": present}, parts)


VIEWS: dict[str, Callable[[TreeIndex, str], PeerView]] = {
    "ostree-ext (no prior)": ostree_ext_view,
    "ostree-ext (prior)": ostree_ext_view,
    "chunkah": chunkah_view,
    "rechunk (prior)": rechunk_view,
}


def view_of(
    name: str, index: TreeIndex, prior: Plan | None = None, ownership: str = PEER_OWNERSHIP
) -> PeerView:
    """What strategy ``name`` plans on: a peer's view (its files owned as
    ``ownership`` says), debchunk's split components, or the index's
    components as they are."""
    if name in VIEWS:
        return VIEWS[name](index, ownership)
    view = split_index(index, prior) if name in SPLITS else index
    return PeerView(view, {}, tuple((k,) for k in range(len(view.components))))


BASELINES = (
    "ostree-ext (no prior)",
    "ostree-ext (prior)",
    "chunkah",
    "rechunk (prior)",
    "one per layer + catch-all",
)


@dataclass
class Row:
    """One strategy on one case."""

    strategy: str
    layers_old: int
    layers_new: int
    download: int
    waste: float | None
    seconds: float
    # Waste with every change probability moved by up to +-PERTURBATION, over
    # the draws: how much of the figure is luck of the exact values.
    perturbed_mean: float | None = None
    perturbed_sd: float | None = None


@dataclass
class Case:
    """One update pair at one layer budget."""

    set_name: str
    pair: str
    old_build: str
    new_build: str
    max_layers: int
    ideal: int
    single: int
    changed_sources: int
    rows: list[Row] = field(default_factory=list)
    # ``component_bound``: the least any packing of debchunk's components
    # downloads; ``finest_bound``: the same with every finest unit alone.
    bound: int = 0
    finest: int = 0

    def row(self, strategy: str) -> Row:
        return next(r for r in self.rows if r.strategy == strategy)


def _plan_pair(
    name: str,
    strategy: Strategy,
    old: TreeIndex,
    new: TreeIndex,
    max_layers: int,
    ownership: str = PEER_OWNERSHIP,
) -> tuple[Plan, Plan, int]:
    """Plan the old tree, then the new one with the old plan as prior, each as
    the strategy sees it (``view_of``); the bytes downloaded."""
    old_view = view_of(name, old, ownership=ownership)
    before = strategy(old_view.index.components, max_layers, None, old_view.inputs)
    new_view = view_of(name, new, before, ownership)
    after = strategy(new_view.index.components, max_layers, before, new_view.inputs)
    return before, after, download_bytes(old_view.index, before.groups(), new_view.index, after.groups())


def _finest_part(index: TreeIndex, row: int, package_names: Sequence[str]) -> str:
    """The finest unit a row belongs to: its component, the binary package
    whose dpkg file list holds it (none for rows no list holds), and whether
    it is data (``mapping.split``'s rule) or documentation.  debchunk's split
    parts, the peers' binary packages and source components are each a union
    of these units."""
    path = index.paths[row]
    package = -1 if index.row_packages is None else int(index.row_packages[row])
    binary = package_names[package] if package >= 0 else ""
    kind = "doc" if path.startswith("usr/share/doc/") else DATA_SUFFIX if is_data_path(path) else ""
    return f"{index.components[index.owners[row]].name}/{binary}/{kind}"


def finest_bound(old: TreeIndex, new: TreeIndex) -> int:
    """Bytes downloaded with every finest unit (``_finest_part``) in a layer of
    its own and unlimited layers: what cutting packages into their binary
    packages' data, documentation and the rest could reach.  Not a strict
    bound: a file moving between two binary packages of one source changes two
    units but not the source's component."""

    def parts(index: TreeIndex) -> dict[str, tuple[bytes, int]]:
        names = [p.package for p in index.packages]
        rows: dict[str, list[int]] = {}
        for r in range(len(index.paths)):
            rows.setdefault(_finest_part(index, r, names), []).append(r)
        out = {}
        for key, members in rows.items():
            distinct: dict[str, int] = {}
            for r in members:
                distinct.setdefault(index.content_ids[r], int(index.sizes[r]))
            out[key] = (hashlib.sha256(index.row_digests[members].tobytes()).digest(), sum(distinct.values()))
        return out

    have = {identity for identity, _ in parts(old).values()}
    return sum(size for identity, size in parts(new).values() if identity not in have)


def component_bound(old: TreeIndex, new: TreeIndex) -> int:
    """Bytes downloaded with each of debchunk's components (split as
    ``split_index`` splits them) in a layer of its own, unlimited layers: a
    layer is downloaded when a component in it changed, so no plan of these
    components, with any budget or prior, downloads less."""
    before = split_index(old)
    after = split_index(new, make_plan(before.components, [[c.name] for c in before.components], 2, 0))
    return download_bytes(
        before, [[c.name] for c in before.components], after, [[c.name] for c in after.components]
    )


# Perturbation of the change probabilities for the sensitivity figures: each
# probability times a factor drawn uniformly in [1 - x, 1 + x], per component
# name and draw, the same for both trees of a pair and for every strategy.
PERTURBATION = 0.02
PERTURBATION_DRAWS = 16


def _stream(purpose: str, k: int, name: str) -> np.random.Generator:
    """Random numbers of one component (by name) for draw or run ``k`` of one
    purpose: independent of which other components exist."""
    seed = int.from_bytes(hashlib.sha256(f"{purpose}\0{k}\0{name}".encode()).digest()[:8], "little")
    return np.random.default_rng(seed)


def _factor(name: str, draw: int) -> float:
    return 1.0 + PERTURBATION * (2.0 * _stream("perturb", draw, name).random() - 1.0)


def perturbed(index: TreeIndex, draw: int) -> TreeIndex:
    """``index`` with every component's change probabilities moved (``PERTURBATION``)."""

    def move(c: Component) -> Component:
        f = _factor(c.name, draw)
        up = c.upstream_change_probability
        return replace(
            c,
            change_probability=min(1.0, c.change_probability * f),
            upstream_change_probability=None if up is None else min(1.0, up * f),
        )

    return replace(index, components=tuple(move(c) for c in index.components))


def run_pair(
    old: TreeIndex,
    new: TreeIndex,
    set_name: str,
    pair: str,
    max_layers: int,
    draws: int = 0,
    ownership: str = PEER_OWNERSHIP,
) -> Case:
    """Every strategy on one update pair (the peers' files owned as
    ``ownership`` says); with ``draws``, also each strategy's waste over that
    many perturbations of the change probabilities."""
    ideal, single = ideal_bytes(old, new), single_layer_bytes(old, new)
    old_v, new_v = old.source_versions(), new.source_versions()
    changed = sum(1 for s in set(old_v) | set(new_v) if old_v.get(s) != new_v.get(s))
    case = Case(set_name, pair, old.build_name, new.build_name, max_layers, ideal, single, changed)
    case.bound, case.finest = component_bound(old, new), finest_bound(old, new)

    def waste(got: int) -> float | None:
        return (got - ideal) / (single - ideal) if single > ideal else None

    views = [(perturbed(old, d), perturbed(new, d)) for d in range(draws)] if single > ideal else []
    for name, strategy in STRATEGIES.items():
        t0 = time.perf_counter()
        before, after, got = _plan_pair(name, strategy, old, new, max_layers, ownership)
        seconds = time.perf_counter() - t0
        reserved = before.reserved_layers
        row = Row(name, len(before.layers) + reserved, len(after.layers) + reserved, got, waste(got), seconds)
        if views and name in VIEWS:
            # A peer's inputs come from the changelogs, not from our
            # probabilities: every draw gives the same plan.
            row.perturbed_mean, row.perturbed_sd = row.waste, 0.0
        elif views:
            wastes = [waste(_plan_pair(name, strategy, o, n, max_layers)[2]) or 0.0 for o, n in views]
            row.perturbed_mean, row.perturbed_sd = float(np.mean(wastes)), float(np.std(wastes))
        case.rows.append(row)
    return case


@dataclass
class Simulation:
    """Mean weekly download of each strategy over simulated weeks; and, per
    client gap (weeks between a client's updates, ``SIMULATED_GAPS``), the
    mean download of one update of such a client (``by_gap``)."""

    set_name: str
    weeks: int
    max_layers: int
    floor: float
    mean: dict[str, float]
    by_gap: dict[str, dict[str, float]] = field(default_factory=dict)


# Clients of the simulation that update less often than weekly: every 4, 13
# and 26 weeks (what the default update gaps plan for, docs/layers.md).
SIMULATED_GAPS = (4, 13, 26)


def _streams(names: Sequence[str], run: int, weeks: int) -> npt.NDArray[np.float64]:
    """Uniform draws (weeks x components x 3) from one stream per component name
    and run: a component's draws do not depend on which others exist."""
    out = np.empty((weeks, len(names), 3))
    for k, name in enumerate(names):
        out[:, k, :] = _stream("simulate", run, name).random((weeks, 3))
    return out


SIMULATION_RUNS = 16


def simulate(
    index: TreeIndex,
    max_layers: int,
    weeks: int = 52,
    runs: int = SIMULATION_RUNS,
    ownership: str = PEER_OWNERSHIP,
) -> Simulation:
    """Weekly updates of one tree's packages, the same draws for every strategy,
    averaged over ``runs`` independent runs of ``weeks`` weeks.

    Each week every package changes with its weekly probability, and its
    upstream version with its upstream probability (an upstream change is a
    change); other components change with their own probability, and the dpkg
    database whenever any package changed.  A package's ``:data`` part (debchunk
    splits packages, the baselines do not) changes only with its upstream
    version.  Changed components' sizes move by up to 5%.  Plans are remade
    each week with the previous week's as prior; a layer is downloaded when a
    member changed or its set of components is new.  The floor is the size of
    the changed components (whole packages) each week."""
    base = sorted(index.components, key=lambda c: c.name)
    names = [c.name for c in base]
    p = np.array([c.change_probability for c in base])
    up = np.array([min(c.upstream_change_probability or 0.0, c.change_probability) for c in base])
    # P(any) = P(up) + (1 - P(up)) * P(other change), so other = (p - up) / (1 - up).
    other = np.where(up < 1.0, (p - up) / np.maximum(1.0 - up, 1e-12), 0.0)
    packages = np.array([c.kind == "package" for c in base])
    dpkg = [k for k, n in enumerate(names) if n == "volatile:dpkg"]
    sizes0 = np.array([float(c.size) for c in base])
    split = split_index(index)
    position = {n: k for k, n in enumerate(names)}

    def changes(view: Sequence[Component]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        # For each component of a view: its package's column, and whether only
        # upstream changes count for it.
        column = np.array([position[c.part_of or c.name] for c in view], dtype=np.intp)
        data = np.array([c.part_of is not None for c in view])
        return column, data

    # The peers' units and, for each, the simulated columns it spans.
    peer_views = {name: VIEWS[name](index, ownership) for name in STRATEGIES if name in VIEWS}
    column_of = [position[c.name] for c in index.components]
    peer_columns = {
        name: [sorted(column_of[k] for k in part) for part in v.parts] for name, v in peer_views.items()
    }
    peer_matrix: dict[str, npt.NDArray[np.int64]] = {}
    for name, spans in peer_columns.items():
        matrix = np.zeros((len(spans), len(names)), dtype=np.int64)
        for u, cols in enumerate(spans):
            matrix[u, cols] = 1
        peer_matrix[name] = matrix

    floors: list[float] = []
    totals: dict[str, list[float]] = {name: [] for name in STRATEGIES}
    gap_totals: dict[int, dict[str, list[float]]] = {
        g: {name: [] for name in STRATEGIES} for g in SIMULATED_GAPS
    }
    for run in range(runs):
        draws = _streams(names, run, weeks)
        upstream_draw = draws[:, :, 0] < up
        any_draw = upstream_draw | (draws[:, :, 1] < other)
        for k in dpkg:
            any_draw[:, k] = any_draw[:, packages].any(axis=1)
        jitter = 1.0 + 0.1 * (draws[:, :, 2] - 0.5)
        floors.append(float(np.mean([(sizes0 * d).sum() for d in any_draw])))
        for name, strategy in STRATEGIES.items():
            peer = peer_views.get(name)
            view = list(
                peer.index.components if peer else split.components if name in SPLITS else index.components
            )
            inputs = peer.inputs if peer else {}
            if peer:
                # A peer's unit changes when any component holding its files
                # does; its size moves with the first of them.
                column = np.array([cols[0] for cols in peer_columns[name]], dtype=np.intp)
                data_part = np.zeros(len(view), dtype=bool)
            else:
                column, data_part = changes(view)
            sizes = np.array([float(c.size) for c in view])
            plan = strategy(view, max_layers, None, inputs)
            total = 0.0
            # For the slower clients: each week's layers (component sets) and
            # the week each component last changed.
            held: list[set[frozenset[str]]] = [{frozenset(layer.components) for layer in plan.layers}]
            last_change: dict[str, int] = {}
            gap_sums = dict.fromkeys(SIMULATED_GAPS, 0.0)
            for week in range(weeks):
                if peer:
                    changed = (peer_matrix[name] @ any_draw[week].astype(np.int64)) > 0
                else:
                    changed = np.where(data_part, upstream_draw[week, column], any_draw[week, column])
                sizes = np.where(changed, sizes * jitter[week, column], sizes)
                view = [replace(c, size=int(z)) for c, z in zip(view, sizes, strict=True)]
                new_plan = strategy(view, max_layers, plan, inputs)
                where = {c.name: k for k, c in enumerate(view)}
                old_groups = {frozenset(layer.components) for layer in plan.layers}
                for layer in new_plan.layers:
                    members = [where[n] for n in layer.components]
                    if changed[members].any() or frozenset(layer.components) not in old_groups:
                        total += float(sizes[members].sum())
                for k in np.flatnonzero(changed).tolist():
                    last_change[view[k].name] = week + 1
                held.append({frozenset(layer.components) for layer in new_plan.layers})
                for gap in SIMULATED_GAPS:
                    if (week + 1) % gap:
                        continue
                    # A client that last updated ``gap`` weeks ago.
                    since = week + 1 - gap
                    for layer in new_plan.layers:
                        if frozenset(layer.components) not in held[since] or any(
                            last_change.get(n, 0) > since for n in layer.components
                        ):
                            gap_sums[gap] += float(sum(sizes[where[n]] for n in layer.components))
                plan = new_plan
            totals[name].append(total / weeks)
            for gap in SIMULATED_GAPS:
                gap_totals[gap][name].append(gap_sums[gap] / max(1, weeks // gap))
    mean = {name: float(np.mean(v)) for name, v in totals.items()}
    by_gap = {
        f"{gap}w": {name: float(np.mean(v)) for name, v in per.items()}
        for gap, per in gap_totals.items()
        if weeks >= gap
    }
    return Simulation(index.set_name, weeks, max_layers, float(np.mean(floors)), mean, by_gap)


def _mb(n: float) -> str:
    return f"{n / 1e6:9.1f}"


def print_case(case: Case) -> None:
    """One table: strategies as rows."""
    print(
        f"\n{case.set_name}: {case.pair} ({case.old_build} -> {case.new_build}), N={case.max_layers}: "
        f"{case.changed_sources} source packages changed; ideal {case.ideal / 1e6:.1f} MB, "
        f"single layer {case.single / 1e6:.1f} MB; bounds: debchunk's components alone "
        f"{case.bound / 1e6:.1f} MB, finest units alone {case.finest / 1e6:.1f} MB"
    )
    perturbed = any(r.perturbed_mean is not None for r in case.rows)
    spread = f" {'perturbed':>14}" if perturbed else ""
    print(f"  {'strategy':28} {'layers':>7} {'MB':>9} {'waste':>7} {'x ideal':>8} {'secs':>6}{spread}")
    for r in case.rows:
        waste = "-" if r.waste is None else f"{100 * r.waste:6.1f}%"
        ratio = f"{r.download / case.ideal:8.2f}" if case.ideal else "       -"
        layers = f"{r.layers_old}/{r.layers_new}"
        if r.perturbed_mean is not None and r.perturbed_sd is not None:
            spread = f" {100 * r.perturbed_mean:6.1f}% +-{100 * r.perturbed_sd:4.1f}"
        print(f"  {r.strategy:28} {layers:>7} {_mb(r.download)} {waste:>7} {ratio} {r.seconds:6.2f}{spread}")
    if perturbed:
        print(
            f"  perturbed: waste over {PERTURBATION_DRAWS} draws with every change probability moved by up "
            f"to +-{PERTURBATION:.0%} (mean +- sd)"
        )


def print_simulation(sim: Simulation) -> None:
    """The simulation's table."""
    print(
        f"\n{sim.weeks}-week simulation, {sim.set_name} components, N={sim.max_layers}, "
        f"mean of {SIMULATION_RUNS} runs: "
        f"floor {sim.floor / 1e6:.1f} MB/week"
    )
    gaps = list(sim.by_gap)
    head = "".join(f" {'MB/' + g:>9} {'x ours':>7}" for g in gaps)
    print(f"  {'strategy':28} {'MB/week':>9} {'x floor':>8} {'x ours':>7}{head}")
    ours = sim.mean[OURS]
    for name, value in sim.mean.items():
        slow = "".join(
            f" {_mb(sim.by_gap[g][name])} {sim.by_gap[g][name] / sim.by_gap[g][OURS]:7.2f}" for g in gaps
        )
        print(f"  {name:28} {_mb(value)} {value / sim.floor:8.2f} {value / ours:7.2f}{slow}")


@dataclass
class Ratio:
    """debchunk against the best baseline on one case."""

    set_name: str
    pair: str
    max_layers: int
    waste: float | None
    best: str
    best_waste: float | None
    # debchunk's waste over the best baseline's (None when that is 0 or
    # undefined); for a rebuild, debchunk's download over the floor instead.
    ratio: float | None
    # Baselines downloading less than debchunk, and as much.
    beaten_by: list[str]
    tied_with: list[str]
    # The waste of ``component_bound`` over the best baseline's: no plan of
    # debchunk's components has a lower ratio; and of ``finest_bound``.
    bound_ratio: float | None = None
    finest_ratio: float | None = None


def best_baseline(case: Case) -> Row:
    """The baseline downloading least on ``case`` (the first listed on a tie)."""
    return min((case.row(b) for b in BASELINES), key=lambda r: r.download)


def ratios(cases: Sequence[Case]) -> list[Ratio]:
    """For each case, debchunk's waste relative to the best baseline's."""
    out = []
    for c in cases:
        ours, best = c.row(OURS), best_baseline(c)
        if c.pair == "rebuild":
            ratio: float | None = ours.download / max(c.ideal, 1)
        elif ours.waste is not None and best.waste:
            ratio = ours.waste / best.waste
        else:
            ratio = None
        bound: float | None = None
        finest: float | None = None
        if c.pair != "rebuild" and best.waste and c.single > c.ideal:
            bound = (c.bound - c.ideal) / (c.single - c.ideal) / best.waste
            finest = (c.finest - c.ideal) / (c.single - c.ideal) / best.waste
        beaten = [b for b in BASELINES if c.row(b).download < ours.download]
        tied = [b for b in BASELINES if c.row(b).download == ours.download and c.single > c.ideal]
        out.append(
            Ratio(
                c.set_name,
                c.pair,
                c.max_layers,
                ours.waste,
                best.strategy,
                best.waste,
                ratio,
                beaten,
                tied,
                bound,
                finest,
            )
        )
    return out


@dataclass
class CorpusFigure:
    """Mean and worst of debchunk's waste ratio over the non-rebuild pairs at
    one budget (``pairs_of``: all of them, the week-apart ones alone, or the
    short-gap ones: trixie point updates and week-apart pairs)."""

    max_layers: int
    pairs: int
    mean: float
    worst: float
    worst_case: str
    # Pairs where some baseline downloads as much as debchunk or less.
    lost: list[str]
    pairs_of: str = "all"


WEEK_APART_PREFIX = "week-apart-"
# Pairs a client updating every week or two sees: what most clients see.
SHORT_GAP_PAIRS = ("point-update",)


def is_short_gap(pair: str) -> bool:
    """Whether ``pair`` spans days or a couple of weeks of updates (a trixie
    point update's or a week-apart pair's), not months."""
    return pair in SHORT_GAP_PAIRS or pair.startswith(WEEK_APART_PREFIX)


def corpus_summary(rs: Sequence[Ratio]) -> list[CorpusFigure]:
    """Per layer budget, over every non-rebuild pair with a defined ratio; then
    over the week-apart pairs alone and over the short-gap pairs, where there are any."""
    out = []
    kinds: tuple[tuple[str, Callable[[str], bool]], ...] = (
        ("all", lambda pair: True),
        ("week-apart", lambda pair: pair.startswith(WEEK_APART_PREFIX)),
        ("short-gap", is_short_gap),
    )
    for kind, wanted in kinds:
        for n in sorted({r.max_layers for r in rs}):
            these = [r for r in rs if r.max_layers == n and r.pair != "rebuild" and wanted(r.pair)]
            defined = [r for r in these if r.ratio is not None]
            if not defined:
                continue
            worst = max(defined, key=lambda r: r.ratio or 0.0)
            out.append(
                CorpusFigure(
                    n,
                    len(defined),
                    float(np.mean([r.ratio for r in defined])),
                    worst.ratio or 0.0,
                    f"{worst.set_name} {worst.pair}",
                    [f"{r.set_name} {r.pair}" for r in these if r.beaten_by or r.tied_with],
                    kind,
                )
            )
    return out


def print_summary(rs: Sequence[Ratio], corpus: Sequence[CorpusFigure]) -> None:
    """The corpus summary: one line per set, pair and budget, then the totals."""
    print("\ncorpus: debchunk's waste / the best baseline's waste (rebuilds: download / floor)")
    print(
        "  (bound: the ratio with each of debchunk's components in a layer of its own, the least any\n"
        "  plan of them reaches; finest: the same with each binary package's data, docs and rest apart)"
    )
    head = f"  {'set':15} {'pair':22} {'N':>4} {'ours':>7} {'best':>7}  {'best baseline':28} {'ratio':>6}"
    print(f"{head} {'bound':>6} {'finest':>6}")
    for r in rs:
        ours = "-" if r.waste is None else f"{100 * r.waste:6.1f}%"
        best = "-" if r.best_waste is None else f"{100 * r.best_waste:6.1f}%"
        ratio = "-" if r.ratio is None else f"{r.ratio:6.2f}"
        beaten = f"  beaten by {', '.join(r.beaten_by)}" if r.beaten_by else ""
        beaten += f"  tied with {', '.join(r.tied_with)}" if r.tied_with else ""
        bound = "-" if r.bound_ratio is None else f"{r.bound_ratio:6.2f}"
        finest = "-" if r.finest_ratio is None else f"{r.finest_ratio:6.2f}"
        head = f"  {r.set_name:15} {r.pair:22} {r.max_layers:4} {ours:>7} {best:>7}"
        print(f"{head}  {r.best:28} {ratio:>6} {bound:>6} {finest:>6}{beaten}")
    for f in corpus:
        lost = f"; a baseline downloads no more on {', '.join(f.lost)}" if f.lost else ""
        which = {"all": "non-rebuild", "week-apart": "week-apart", "short-gap": "short-gap"}[f.pairs_of]
        print(
            f"  N={f.max_layers}: over {f.pairs} {which} pairs mean {f.mean:.2f}, "
            f"worst {f.worst:.2f} ({f.worst_case}){lost}"
        )


def print_simulation_summary(sims: Sequence[Simulation]) -> None:
    """One line per simulated set and budget: debchunk's weekly download
    against the floor and the best baseline's."""
    if not sims:
        return
    print("\nsimulations: MB/week, debchunk against the floor and the best baseline")
    print(f"  {'set':15} {'N':>4} {'floor':>8} {'ours':>8} {'best':>8}  {'best baseline':28} {'ratio':>6}")
    for sim in sims:
        ours = sim.mean[OURS]
        best = min(BASELINES, key=lambda b: sim.mean[b])
        print(
            f"  {sim.set_name:15} {sim.max_layers:4} {sim.floor / 1e6:8.1f} {ours / 1e6:8.1f} "
            f"{sim.mean[best] / 1e6:8.1f}  {best:28} {ours / sim.mean[best]:6.2f}"
        )
    gaps = sorted({g for sim in sims for g in sim.by_gap}, key=lambda g: int(g.rstrip("w")))
    if not gaps:
        return
    print("\nsimulations, clients updating less often: MB per update, debchunk / the best baseline")
    print(f"  {'set':15} {'N':>4}" + "".join(f" {g:>16}" for g in gaps))
    for sim in sims:
        cells = []
        for g in gaps:
            per = sim.by_gap.get(g)
            if per is None:
                cells.append(f" {'-':>16}")
                continue
            best = min(BASELINES, key=lambda b: per[b])
            cells.append(f" {per[OURS] / 1e6:8.1f} {per[OURS] / per[best]:6.2f}x")
        print(f"  {sim.set_name:15} {sim.max_layers:4}" + "".join(cells))


def check_targets(cases: list[Case], sims: list[Simulation]) -> list[tuple[str, bool, str]]:
    """The acceptance targets of the experiment, each with the figure seen."""
    out: list[tuple[str, bool, str]] = []
    rs = ratios(cases)
    for f in corpus_summary(rs):
        if f.pairs_of == "all":
            label = f"corpus N={f.max_layers} ({f.pairs} pairs)"
            out.append((f"{label}: mean waste ratio <= 0.7", f.mean <= 0.7, f"{f.mean:.2f}"))
            out.append(
                (f"{label}: worst waste ratio <= 1.00", f.worst <= 1.0, f"{f.worst:.2f} ({f.worst_case})")
            )
        elif f.pairs_of == "short-gap":
            label = f"short-gap pairs N={f.max_layers} ({f.pairs} pairs)"
            out.append(
                (f"{label}: worst waste ratio <= 0.8", f.worst <= 0.8, f"{f.worst:.2f} ({f.worst_case})")
            )
    # Where the component bound leaves room (bound ratio <= 0.9), a clear win.
    roomy = [r for r in rs if r.ratio is not None and r.bound_ratio is not None and r.bound_ratio <= 0.9]
    worst_roomy = max(roomy, key=lambda r: r.ratio or 0.0, default=None)
    if worst_roomy is not None:
        out.append(
            (
                f"pairs whose bound ratio is <= 0.9 ({len(roomy)}): waste ratio <= 0.95",
                (worst_roomy.ratio or 0.0) <= 0.95,
                f"worst {worst_roomy.ratio:.2f} ({worst_roomy.set_name} {worst_roomy.pair} "
                f"N={worst_roomy.max_layers}, bound {worst_roomy.bound_ratio:.2f})",
            )
        )
    limits = {("desktop", "point-update"): 0.10, ("desktop", "testing-to-unstable"): 0.22}
    for c in cases:
        ours = c.row(OURS)
        best = best_baseline(c)
        label = f"{c.set_name} {c.pair} N={c.max_layers}"
        if c.pair == "rebuild":
            ok = ours.download <= 1.05 * c.ideal
            out.append((f"{label}: download <= 1.05x floor", ok, f"{ours.download / max(c.ideal, 1):.2f}x"))
            continue
        if c.max_layers != 64:
            continue
        # The desktop's earlier targets, set on its trixie and forky -> sid pairs.
        limit = limits.get((c.set_name, c.pair))
        if limit is not None and ours.waste is not None and best.waste is not None:
            out.append((f"{label}: waste <= {limit:.0%}", ours.waste <= limit, f"{ours.waste:.1%}"))
            out.append(
                (
                    f"{label}: waste <= 0.6x best baseline ({best.strategy})",
                    ours.waste <= 0.6 * best.waste,
                    f"{ours.waste / best.waste if best.waste else 0:.2f}x",
                )
            )
    for s in sims:
        if s.max_layers != 64:
            continue
        weekly = s.mean[OURS]
        label = f"{s.set_name} simulation"
        # The peer targets were set on the desktop; other sets report the figures.
        for name, limit in (
            (("ostree-ext (prior)", 0.75), ("chunkah", 0.85)) if s.set_name == "desktop" else ()
        ):
            ok = weekly <= limit * s.mean[name]
            out.append((f"{label}: <= {limit}x {name}", ok, f"{weekly / s.mean[name]:.2f}x"))
        out.append((f"{label}: <= 1.5x floor", weekly <= 1.5 * s.floor, f"{weekly / s.floor:.2f}x"))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment; exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(
        prog="python -m benches.update_cost", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--sets",
        default="all",
        help=f"package sets, comma-separated, of {', '.join(SETS)} (all: every set; with --frozen, "
        "every set stored in the repository)",
    )
    parser.add_argument("--layers", default="64,128", help="layer budgets (64,128)")
    parser.add_argument("--pairs", help="only these update pairs (default: all)")
    parser.add_argument("--weeks", type=int, default=52, help="weeks to simulate per set (52; 0: none)")
    parser.add_argument(
        "--draws",
        type=int,
        default=PERTURBATION_DRAWS,
        help=f"perturbed draws per update pair at N=64 ({PERTURBATION_DRAWS}; 0: none)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure and package version as JSON")
    parser.add_argument(
        "--frozen",
        action="store_true",
        help="use the trees' indexes stored in the repository (benches/data), not the cached builds",
    )
    parser.add_argument(
        "--peer-ownership",
        choices=PEER_OWNERSHIPS,
        default=PEER_OWNERSHIP,
        help="the peers' ownership of files no dpkg list names: 'mapped' gives them to a binary package "
        "of the source the mapping gives them to (default), 'dpkg' leaves them unowned",
    )
    args = parser.parse_args(argv)
    budgets = [int(x) for x in args.layers.split(",")]
    if args.sets == "all":
        set_names = [s for s in SETS if frozen_builds(s)] if args.frozen else corpus_sets()
    else:
        set_names = args.sets.split(",")
        unknown = [s for s in set_names if s not in SETS]
        if unknown:
            parser.error(f"--sets: unknown set(s) {', '.join(unknown)}; known: {', '.join(SETS)}")
    cases: list[Case] = []
    versions: dict[str, dict[str, dict[str, str]]] = {}
    simulated: list[TreeIndex] = []
    for set_name in set_names:
        for pair, old_build, new_build in pairs(set_name, args.frozen):
            if args.pairs and pair not in args.pairs.split(","):
                continue
            old = load_index(set_name, old_build, args.frozen)
            new = load_index(set_name, new_build, args.frozen)
            versions.setdefault(set_name, {})[old_build] = old.source_versions()
            versions[set_name][new_build] = new.source_versions()
            if pair == "point-update":
                simulated.append(old)
            for n in budgets:
                draws = args.draws if n == 64 else 0
                case = run_pair(old, new, set_name, pair, n, draws, args.peer_ownership)
                print_case(case)
                cases.append(case)
    sims = []
    for index in simulated if args.weeks > 0 else []:
        for n in budgets:
            sim = simulate(index, n, args.weeks, ownership=args.peer_ownership)
            print_simulation(sim)
            sims.append(sim)
    rs = ratios(cases)
    corpus = corpus_summary(rs)
    print_summary(rs, corpus)
    print_simulation_summary(sims)
    targets = check_targets(cases, sims)
    print("\ntargets:")
    for label, ok, figure in targets:
        print(f"  {'PASS' if ok else 'FAIL'}  {label}: {figure}")
    if args.json:
        result: dict[str, Any] = {
            "cases": [asdict(c) for c in cases],
            "simulations": [asdict(s) for s in sims],
            "ratios": [asdict(r) for r in rs],
            "corpus": [asdict(f) for f in corpus],
            "targets": [{"target": t, "ok": ok, "figure": f} for t, ok, f in targets],
            "source_versions": versions,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0 if all(ok for _, ok, _ in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
