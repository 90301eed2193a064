"""The cost model: expected bytes a client downloads per update.

A layer is downloaded again when any component in it changes, so with weekly
change probabilities ``p_c`` (independent), layer ``L`` costs
``size(L) * (1 - prod_{c in L} (1 - p_c))`` and the whole image
``E = sum_L size(L) * (1 - prod(1 - p_c))``.  Its floor, reached with one
component per layer, is ``sum_c size(c) * p_c``.

One dependence is known and modelled: a package split in two by
``mapping.split`` has a data part (its ``Component.part_of`` names the package)
that changes only with the upstream version, and then the binaries change too.
Its changes are a subset of the other part's, so the two parts together change
exactly as often as the binaries do, not more.
``Events`` writes every component's changes as a union of independent events,
the two parts of a package sharing the upstream one; a layer is kept when none of
the distinct events behind its components happens.

Everything that turns a change probability into a cost or a rate goes through
here: ``P_CAP`` and ``log_keep_probability``, ``changes_per_year`` (the inverse
of ``mapping.changelog.probability``), and ``refit`` for a plan whose layers
are regrouped after planning.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mapping import Component

from .plan import ChunkerError, Layer, Plan

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

#: The highest change probability the cost model takes: ``log(1 - p)`` stays
#: finite at p = 1, and a p = 1 component's "no change" weighs 1e-15 of its
#: size, far below a byte.  ``pack`` decides with the cap ``make_plan`` costs
#: with; every frozen update-cost figure (``benches.update_cost --frozen``) is
#: the same as with the 1 - 1e-12 ``pack`` took before.
P_CAP = 1.0 - 1e-15
# Changes per year <-> weekly probability, as mapping.changelog.probability has them.
_DAYS_PER_YEAR = 365.0
_DAYS_PER_UPDATE = 7.0


def log_keep_probability(p: float) -> float:
    """``log(1 - p)``, the log of the probability of no change, for ``p``
    clipped to ``[0, P_CAP]``: finite even for p = 1."""
    return math.log1p(-min(max(p, 0.0), P_CAP))


def log_keep_probabilities(probabilities: npt.ArrayLike) -> FloatArray:
    """``log_keep_probability`` of each of ``probabilities``, at once."""
    clipped = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, P_CAP)
    return np.asarray(np.log1p(-clipped), dtype=np.float64)


def changes_per_year(p: float) -> float:
    """The changes per year behind a weekly change probability ``p``: the
    inverse of ``mapping.changelog.probability`` (``p = 1 - exp(-7 r / 365)``,
    so ``r = -365/7 * log(1 - p)``), with ``p`` capped at ``P_CAP``, so p = 1
    gives a large finite rate."""
    rate = -_DAYS_PER_YEAR / _DAYS_PER_UPDATE * log_keep_probability(p)
    return rate + 0.0  # -0.0 (p = 0) as 0.0


@dataclass(frozen=True)
class Events:
    """The independent change events behind components' change probabilities.

    Every shared event belongs to exactly two components (the two parts of a
    package): ``pairs[e]`` holds their indices and ``shared_log[e]`` the
    ``log(1 - p)`` of the event.
    ``own[i]`` is ``log(1 - p)`` of the events only component ``i`` has, so that
    ``own[i]`` plus its shared events' logs is ``log(1 - p_i)``."""

    own: FloatArray
    pairs: IntArray
    shared_log: FloatArray

    @classmethod
    def of(cls, probabilities: FloatArray, part_of_index: Sequence[int] | IntArray) -> Events:
        """Events for components with these change probabilities, where
        ``part_of_index[i]`` is the index of the package component that
        component ``i`` is the data part of (-1: none): the data part shares its
        (upstream) changes with the package."""
        logs = log_keep_probabilities(probabilities)
        own = logs.copy()
        pairs: list[tuple[int, int]] = []
        shared_log: list[float] = []
        for d, base in enumerate(np.asarray(part_of_index, dtype=np.intp).tolist()):
            if base < 0:
                continue
            upstream = float(max(logs[d], logs[base]))  # the rarer change: log(1 - p) nearer 0
            if upstream >= 0.0:
                continue
            own[d] -= upstream
            own[base] -= upstream
            pairs.append((base, d))
            shared_log.append(upstream)
        return cls(own, np.array(pairs, dtype=np.intp).reshape(-1, 2), np.array(shared_log, dtype=np.float64))

    @classmethod
    def for_components(cls, components: Sequence[Component]) -> Events:
        """Events of ``components``, linked by their ``part_of``."""
        probabilities = np.array([c.change_probability for c in components], dtype=np.float64)
        return cls.of(probabilities, part_of_index(components))

    def partners(self) -> tuple[IntArray, FloatArray]:
        """For each component, the other part of its package (-1: none) and
        their shared event's ``log(1 - p)`` (0: none).  A component has one
        shared event at most: a package has one data part."""
        partner = np.full(len(self.own), -1, dtype=np.intp)
        log = np.zeros(len(self.own))
        for side in (0, 1):
            partner[self.pairs[:, side]] = self.pairs[:, 1 - side]
            log[self.pairs[:, side]] = self.shared_log
        return partner, log

    def log_keeps(self, groups: Sequence[Sequence[int]]) -> FloatArray:
        """``log_keep`` of each of ``groups`` (disjoint), at once."""
        of = np.full(len(self.own), -1, dtype=np.intp)
        for k, g in enumerate(groups):
            of[np.asarray(g, dtype=np.intp)] = k
        inside = of >= 0
        out = np.bincount(of[inside], weights=self.own[inside], minlength=len(groups)).astype(np.float64)
        if len(self.shared_log):
            held = of[self.pairs]
            first = held[:, 0] >= 0
            second = (held[:, 1] >= 0) & (held[:, 1] != held[:, 0])
            out += np.bincount(held[first, 0], weights=self.shared_log[first], minlength=len(groups))
            out += np.bincount(held[second, 1], weights=self.shared_log[second], minlength=len(groups))
        return out

    def log_keep(self, members: Iterable[int]) -> float:
        """``log`` of the probability that no component of ``members`` changes."""
        idx = np.fromiter(members, dtype=np.intp)
        total = float(self.own[idx].sum())
        if len(self.shared_log):
            held = np.isin(self.pairs, idx).any(axis=1)
            total += float(self.shared_log[held].sum())
        return total


def part_of_index(components: Sequence[Component]) -> IntArray:
    """For each component, the index in ``components`` of the package it is the
    data part of (its ``part_of``), or -1 (none, or that package is not among
    ``components``)."""
    index = {c.name: i for i, c in enumerate(components)}
    return np.array(
        [-1 if c.part_of is None else index.get(c.part_of, -1) for c in components], dtype=np.intp
    )


def floor_bytes(sizes: FloatArray, probabilities: FloatArray) -> float:
    """The lower bound of ``E``: every component alone in its layer."""
    return float(np.dot(sizes, probabilities))


def make_plan(
    components: Sequence[Component],
    groups: Iterable[Iterable[str]],
    max_layers: int,
    reserved_layers: int = 1,
) -> Plan:
    """A ``Plan`` for ``groups`` (component names), with sizes, probabilities and
    the cost model filled in from ``components``.  Empty groups are dropped;
    ChunkerError when a group names a component twice or one not in ``components``."""
    index = {c.name: i for i, c in enumerate(components)}
    sizes = np.array([c.size for c in components], dtype=np.float64)
    probabilities = np.array([c.change_probability for c in components], dtype=np.float64)
    events = Events.for_components(components)
    named = [tuple(sorted(g)) for g in groups]
    named = [names for names in named if names]
    unknown = sorted({n for names in named for n in names} - index.keys())
    if unknown:
        raise ChunkerError(f"component {unknown[0]!r} of a group is not among the components to plan")
    index_groups = [[index[n] for n in names] for names in named]
    placed = [i for idx in index_groups for i in idx]
    if len(placed) != len(set(placed)):
        raise ChunkerError("a component is in more than one group")
    change = -np.expm1(events.log_keeps(index_groups))
    layers = [
        Layer(names, int(sizes[idx].sum()), float(p))
        for names, idx, p in zip(named, index_groups, change, strict=True)
    ]
    return Plan(
        max_layers,
        tuple(layers),
        float(sum(layer.size * layer.change_probability for layer in layers)),
        floor_bytes(sizes, probabilities),
        reserved_layers,
    )


def refit(plan: Plan, components: Sequence[Component], empty: Iterable[int]) -> Plan:
    """``plan`` with each layer of ``empty`` (indices into ``plan.layers``:
    layers that would hold nothing of the tree) merged into the nearest kept
    layer before it, else the nearest after it; when every layer is empty,
    their components stay together in one layer.

    Two empty layers have the same diff_id, and ostree-ext's importer finds the
    last commit layer by diff_id (``ostree.final-diffid``), so an image must
    hold none.

    The merged plan is made again by ``make_plan`` from ``components`` (those
    the plan groups), so a merged layer's probability counts a change its
    members share (the two parts of a split package) once, as ``pack`` did;
    ``max_layers`` and ``reserved_layers`` are kept.  A name of the plan not
    among ``components`` (a previous build's component this tree lacks) holds
    nothing, so adds no bytes and no change.  With nothing empty the plan is
    returned as it is."""
    drop = set(empty)
    if not drop:
        return plan
    outside = sorted(i for i in drop if not 0 <= i < len(plan.layers))
    if outside:
        raise ChunkerError(f"layer {outside[0]} is not among the plan's {len(plan.layers)} layers")
    kept = [i for i in range(len(plan.layers)) if i not in drop] or [0]
    into: dict[int, list[int]] = {k: [k] for k in kept}
    for i in sorted(drop - into.keys()):
        before = [k for k in kept if k < i]
        into[before[-1] if before else kept[0]].append(i)
    groups = [[name for i in into[k] for name in plan.layers[i].components] for k in kept]
    known = {c.name for c in components}
    # A component the tree lacks holds no bytes: no size, no change to download.
    absent = sorted({name for g in groups for name in g} - known)
    planned = [*components, *(Component(name, "package", size=0, change_probability=0.0) for name in absent)]
    return make_plan(planned, groups, plan.max_layers, plan.reserved_layers)
