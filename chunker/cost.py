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

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

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


#: The longest gap between two updates of one client that ``UpdateGaps`` takes,
#: in days: about two years, longer than a Debian release is supported past its
#: successor.
MAX_GAP_DAYS = 730
#: The most gaps one distribution may list: each adds a term to every cost the
#: packer computes (``chunker.pack`` must plan 20,000 components in under 1 s).
MAX_GAPS = 8


@dataclass(frozen=True, eq=True)
class UpdateGaps:
    """How long clients wait between two updates: gaps in days and the share of
    clients whose next update comes after each (``weights``, summing to 1); the
    packer minimises what that next update downloads, averaged over clients.

    A component kept by a week with probability ``q = 1 - p`` is kept by a gap
    of ``t`` days with ``q ** (t / 7)`` (changes as a Poisson process, as
    ``mapping.changelog.probability`` models them), so a layer of log keep ``l``
    (per week) is downloaded by an update after that gap with probability
    ``1 - exp(t l / 7)``, and over the distribution with
    ``change(l) = sum_k w_k (1 - exp(t_k l / 7))``: the expectation of the
    download itself, not the download at an average probability.  A merge of
    two layers costs ``s_A (K(l_A) - K(l_A + l_B)) + s_B (K(l_B) - K(l_A + l_B))``
    with ``K = 1 - change``; since ``exp(t (l_A + l_B)) = exp(t l_A) exp(t l_B)``,
    ``powers`` of each layer (one per gap) multiply, and pairwise costs are
    sums of outer products (``chunker.pack``)."""

    days: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.days or len(self.days) != len(self.weights):
            raise ChunkerError("update gaps: give at least one gap, each with a weight")
        if len(self.days) > MAX_GAPS:
            raise ChunkerError(f"update gaps: {len(self.days)} gaps; give at most {MAX_GAPS}")
        for d, w in zip(self.days, self.weights, strict=True):
            if not (math.isfinite(d) and 1 <= d <= MAX_GAP_DAYS):
                raise ChunkerError(f"update gaps: a gap of {d!r} days; give gaps of 1 to {MAX_GAP_DAYS} days")
            if not (math.isfinite(w) and w > 0):
                raise ChunkerError(f"update gaps: weight {w!r} of the {d:g}-day gap; give a positive weight")
        total = math.fsum(self.weights)
        if abs(total - 1.0) > 1e-9:
            object.__setattr__(self, "weights", tuple(w / total for w in self.weights))

    @property
    def weeks(self) -> FloatArray:
        """The gaps in weeks."""
        return np.array(self._weeks, dtype=np.float64)

    @property
    def _weeks(self) -> tuple[float, ...]:
        return tuple(d / _DAYS_PER_UPDATE for d in self.days)

    @functools.cached_property
    def change_scalar(self) -> Callable[[float], float]:
        """``change`` of one layer, as a float: a function made once (the
        packer calls it for every move it weighs)."""
        if self.single_week:
            return _change_one_week
        terms = tuple(zip(self._weeks, self.weights, strict=True))

        def change(log_keep: float, expm1: Callable[[float], float] = math.expm1) -> float:
            total = 0.0
            for t, w in terms:
                total -= w * expm1(t * log_keep)
            return total

        return change

    @property
    def single_week(self) -> bool:
        """Whether every client updates once a week (the model before gaps)."""
        return self.days == (_DAYS_PER_UPDATE,)

    def powers(self, log_keep: npt.ArrayLike) -> FloatArray:
        """``exp(t_k l)`` for each ``log_keep`` ``l`` (per week) and each gap
        ``t_k`` (weeks), in a last axis of length ``len(days)``."""
        logs = np.asarray(log_keep, dtype=np.float64)
        return np.asarray(np.exp(logs[..., None] * self.weeks), dtype=np.float64)

    def keep(self, log_keep: npt.ArrayLike) -> FloatArray:
        """The probability that a layer of weekly log keep ``log_keep`` is not
        downloaded, over the distribution."""
        return self._weighted(np.exp, log_keep)

    def change(self, log_keep: npt.ArrayLike) -> FloatArray:
        """``1 - keep(log_keep)``, computed without cancelling (``expm1``)."""
        return -self._weighted(np.expm1, log_keep)

    def _weighted(self, fn: np.ufunc, log_keep: npt.ArrayLike) -> FloatArray:
        # Gap by gap, in a fixed order: the same sums on every machine (a
        # matrix product's order depends on the BLAS and the CPU).
        logs = np.asarray(log_keep, dtype=np.float64)
        if self.single_week:
            return np.asarray(fn(logs), dtype=np.float64)
        out = np.zeros(logs.shape)
        for t, w in zip(self._weeks, self.weights, strict=True):
            out += w * fn(t * logs)
        return out

    def describe(self) -> str:
        """The distribution as ``--update-gaps`` takes it, weights in percent."""
        pairs = zip(self.days, self.weights, strict=True)
        return ",".join(f"{_days_text(d)}:{100 * w:.4g}" for d, w in pairs)

    @classmethod
    def parse(cls, text: str) -> UpdateGaps:
        """``GAP:WEIGHT,...`` with each gap in days (``10``, ``10d``) or weeks
        (``4w``), weights relative (``1w:50,4w:30,13w:20``); ChunkerError when
        malformed."""
        days: list[float] = []
        weights: list[float] = []
        for item in text.split(","):
            gap, sep, weight = item.strip().partition(":")
            try:
                value = float(weight) if sep else math.nan
                if gap.endswith("w"):
                    d = float(gap[:-1]) * _DAYS_PER_UPDATE
                else:
                    d = float(gap[:-1] if gap.endswith("d") else gap)
            except ValueError:
                value = d = math.nan
            if not (sep and math.isfinite(value) and math.isfinite(d)):
                raise ChunkerError(
                    f"update gaps {text!r:.80}: {item.strip()!r:.40} is not GAP:WEIGHT; give for example "
                    "1w:50,4w:30,13w:20 (gaps in days, or weeks with 'w')"
                )
            days.append(d)
            weights.append(value)
        if len(set(days)) != len(days):
            raise ChunkerError(f"update gaps {text!r:.80}: a gap is given twice")
        return cls(tuple(days), tuple(weights))


def _change_one_week(log_keep: float) -> float:
    return -math.expm1(log_keep)


def _days_text(days: float) -> str:
    weeks = days / _DAYS_PER_UPDATE
    if weeks == int(weeks):
        return f"{int(weeks)}w"
    return f"{days:g}d"


#: Every client updating once a week: the model before gap distributions.
WEEKLY = UpdateGaps((_DAYS_PER_UPDATE,), (1.0,))
#: The distribution ``pack`` plans for unless told otherwise; docs/layers.md,
#: "Update gaps", gives the evidence and the alternatives measured.  95% of
#: clients update within a week (bootc's timer runs daily where a system enables
#: it; images are built daily or weekly; every real pair of the corpus but the
#: bookworm point releases fits 0.08-2.2 weeks of the weekly model,
#: ``benches.calibration``), 5% half a year apart (machines left off; the loss
#: the gaps were made against had a 21-week gap).  More weight on long gaps
#: (1w:80,13w:10,26w:10 was the default) cost weekly clients 1.5-1.9% in the
#: 52-week simulation and planned the corpus's real pairs no better; large bets
#: are kept out by rules (``chunker.pack.LARGE_FACTOR``, ``PAIR_FACTOR``).
DEFAULT_GAPS = UpdateGaps((7.0, 182.0), (0.95, 0.05))


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
    gaps: UpdateGaps | None = None,
) -> Plan:
    """A ``Plan`` for ``groups`` (component names), with sizes, probabilities and
    the cost model filled in from ``components``, made for ``gaps`` (recorded).  Empty groups are dropped;
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
        None if gaps is None else gaps.describe(),
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
    return replace(
        make_plan(planned, groups, plan.max_layers, plan.reserved_layers), update_gaps=plan.update_gaps
    )
