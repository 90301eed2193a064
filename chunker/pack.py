"""Group components into at most N layers, minimising the expected update bytes.

Merging two layers A and B (sizes S, probabilities of not changing q = 1 - P)
raises ``E`` by exactly ``S_A q_A P_B + S_B q_B P_A``: both layers' bytes are now
also downloaded when only the other one changes.  When the two hold the two
parts of one split package (``chunker.cost.Events``, from ``Component.part_of``),
the change they share is counted once: the union is kept with probability
``q_A q_B / k``, ``k`` the probability that the shared event does not happen.  ``pack`` starts from one layer
per component and repeatedly makes the cheapest merge (agglomerative, over a
numpy matrix of pairwise merge costs with per-row minima), then moves single
components between layers while that lowers ``E``.  Volatile components never
share a layer with anything else.

With a prior plan (the previous image's), components that still exist stay in
their layers; new components go where they cost least, counting the one-time
download of any existing layer they would change; removed components just
leave.  A move of an existing component is made only when its expected saving
over ``horizon`` updates exceeds the bytes it makes every client download once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mapping import Component

from .cost import DEFAULT_GAPS, P_CAP, Events, UpdateGaps, make_plan, part_of_index
from .plan import ChunkerError, Plan

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

# Above this many clusters the pairwise matrix is too large: the smallest
# components are first bucketed by change probability (their merges are the
# cheapest anyway, so the greedy would make them first).
MAX_MATRIX = 1500
# Volatile components certain to change share one layer: what every build
# rewrites (the initramfs, host keys, caches).  Any other volatile component has
# a layer of its own: the dpkg database changes with any package (1 - 1e-7 for a
# desktop tree), so nearly every update, but not when the same packages are
# built again, and a rebuild then downloads the initramfs without it.
ALWAYS = P_CAP
# Updates over which a move of an existing component must pay for itself.
DEFAULT_HORIZON = 26
# No large bets: a component holding at least this many average layers' bytes
# (the content's bytes over the layers left for it) keeps a layer of its own
# (docs/layers.md, "No large bets": 1 cost weekly clients 0.8% more on the
# desktop simulation than 2, and both keep the kernel alone).
LARGE_FACTOR = 2.0
# No two large components in one layer: components of at least this many
# average layers' bytes never share a layer with each other (the two parts of
# one split package aside), whatever the objective says.  A week's model and
# even the gap objective bet two such stable components together on some trees
# (docs/layers.md, "No large bets"); each update of either then downloads both.
PAIR_FACTOR = 1.0


def pack(
    components: Sequence[Component],
    max_layers: int,
    prior: Plan | None = None,
    *,
    reserved_layers: int = 1,
    horizon: int = DEFAULT_HORIZON,
    gaps: UpdateGaps = DEFAULT_GAPS,
) -> Plan:
    """Plan at most ``max_layers`` image layers (``reserved_layers`` of them kept
    for the commit/metadata) for ``components``, minimising the download
    expected over the clients' update ``gaps``; deterministic for any input order."""
    if max_layers < reserved_layers + 1:
        raise ChunkerError(
            f"max layers {max_layers} leaves no layer for content ({reserved_layers} reserved); use at least "
            f"{reserved_layers + 1}"
        )
    comps = sorted(components, key=lambda c: c.name)
    for a, b in itertools.pairwise(comps):
        if a.name == b.name:
            raise ChunkerError(f"component {a.name!r} is given twice")
    budget = max_layers - reserved_layers
    if not comps:
        return make_plan(comps, [], max_layers, reserved_layers, gaps)
    sizes = np.array([float(c.size) for c in comps])
    # The cost model's cap: a certain change is P_CAP here as in the plan's figures.
    probs = np.clip(np.array([c.change_probability for c in comps]), 0.0, P_CAP)
    volatile = np.array([c.kind == "volatile" for c in comps])
    names = [c.name for c in comps]
    events = Events.of(probs, part_of_index(comps))
    if prior is not None and any(n in prior.layer_index() for n in names):
        groups = _pack_with_prior(names, sizes, events, volatile, budget, prior, horizon, gaps)
    else:
        groups = _order(_pack_fresh(sizes, probs, events, volatile, budget, gaps), sizes, events)
    return make_plan(comps, [[names[i] for i in g] for g in groups], max_layers, reserved_layers, gaps)


def _order(groups: list[list[int]], sizes: FloatArray, events: Events) -> list[list[int]]:
    """Layers from the most stable to the most volatile, then by size: an order
    that depends only on the content (content-addressed layers don't need more)."""

    groups = [sorted(g) for g in groups]
    change = -np.expm1(events.log_keeps(groups))
    keys = {min(g): (float(p), -float(sizes[g].sum()), min(g)) for g, p in zip(groups, change, strict=True)}
    return sorted(groups, key=lambda g: keys[min(g)])


def _pack_fresh(
    sizes: FloatArray,
    probs: FloatArray,
    events: Events,
    volatile: npt.NDArray[np.bool_],
    budget: int,
    gaps: UpdateGaps,
) -> list[list[int]]:
    n = len(sizes)
    if n <= budget:
        return [[i] for i in range(n)]
    pinned = [int(i) for i in np.flatnonzero(volatile)]
    free = [int(i) for i in np.flatnonzero(~volatile)]
    if budget == 1:
        return [list(range(n))]
    # Volatile content alone.  Volatile components that change with every build
    # share a layer (that costs nothing, ``ALWAYS``); if there is not room for
    # every volatile layer and something else, the volatile ones share one layer.
    always = [i for i in pinned if probs[i] >= ALWAYS]
    pinned_groups = ([always] if always else []) + [[i] for i in pinned if probs[i] < ALWAYS]
    if len(pinned_groups) >= budget:
        pinned_groups = [pinned] if pinned else []
    room = budget - len(pinned_groups)
    if room <= 0 or not free:
        return pinned_groups + ([free] if free else [])
    # No large bets: a component of at least LARGE_FACTOR average layers
    # stays alone, whatever the model says of its changes (docs/layers.md).
    large = _large(free, sizes, room)
    if large:
        free = [i for i in free if i not in set(large)]
        pinned_groups += [[i] for i in large]
        room -= len(large)
    big = _big(free, sizes, room, events)
    groups = _agglomerate(free, sizes, probs, events, room, gaps, big)
    groups = _refine(groups, sizes, events, gaps, big)
    return pinned_groups + groups


def _large(members: list[int], sizes: FloatArray, room: int) -> list[int]:
    """The members holding at least ``LARGE_FACTOR / room`` of the members'
    bytes, largest first, leaving a layer for the rest."""
    total = float(sizes[members].sum())
    by_size = sorted(members, key=lambda i: (-sizes[i], i))
    large = [i for i in by_size if sizes[i] > 0 and sizes[i] * room >= total * LARGE_FACTOR]
    return large[: min(len(large), room - 1, len(members) - 1)]


def _big(members: list[int], sizes: FloatArray, room: int, events: Events) -> BoolArray:
    """Which components (all of ``sizes``) hold at least ``PAIR_FACTOR``
    average layers of the members' bytes: no two of them share a layer.  The
    data part of a split package is never one of them, so it can stay with its
    package."""
    total = float(sizes[members].sum())
    big = np.zeros(len(sizes), dtype=bool)
    if room <= 1 or total <= 0:
        return big
    partner, _ = events.partners()
    for i in members:
        if sizes[i] * room >= total * PAIR_FACTOR and not (partner[i] >= 0 and sizes[partner[i]] > sizes[i]):
            big[i] = True
    return big


def _bucket_small(members: list[int], sizes: FloatArray, probs: FloatArray, target: int) -> list[list[int]]:
    """Reduce ``members`` to about ``target`` starting clusters: the largest stay
    alone, the smallest are grouped in runs of similar change probability."""
    by_size = sorted(members, key=lambda i: (-sizes[i], i))
    keep = by_size[: target // 2]
    small = sorted(by_size[target // 2 :], key=lambda i: (probs[i], i))
    runs = max(1, target - len(keep))
    step = -(-len(small) // runs)
    return [[i] for i in keep] + [small[k : k + step] for k in range(0, len(small), step)]


def _agglomerate(
    members: list[int],
    sizes: FloatArray,
    probs: FloatArray,
    events: Events,
    target: int,
    gaps: UpdateGaps,
    big: BoolArray | None = None,
) -> list[list[int]]:
    """Merge clusters, cheapest first, until ``target`` remain."""
    clusters = (
        _bucket_small(members, sizes, probs, MAX_MATRIX)
        if len(members) > MAX_MATRIX
        else [[i] for i in members]
    )
    if len(clusters) <= target:
        return clusters
    merging = _Agglomeration(clusters, sizes, events, gaps, big)
    for _ in range(len(clusters) - target):
        merging.merge_cheapest()
    return [c for c in merging.clusters if c]


class _Agglomeration:
    """Clusters merged pairwise, cheapest first: a pair's cost is the expected
    bytes its union adds; ``best[k]`` is each cluster's cheapest partner.

    ``keep_by_gap[g, k]`` is the probability that cluster ``k`` is kept over
    gap ``g`` (``UpdateGaps.powers``); a union's is the product of its
    clusters', so a pair costs ``sum_g w_g (a[g, i] (1 - p[g, j]) + a[g, j]
    (1 - p[g, i]))`` with ``p = keep_by_gap`` and ``a = s p``."""

    def __init__(
        self,
        clusters: list[list[int]],
        sizes: FloatArray,
        events: Events,
        gaps: UpdateGaps,
        big: BoolArray | None = None,
    ) -> None:
        self.clusters = clusters
        # Whether each cluster holds a big component (``_big``): two such never merge.
        flags = np.zeros(len(sizes), dtype=bool) if big is None else big
        self.big = np.array([flags[c].any() for c in clusters], dtype=bool)
        self.m = m = len(clusters)
        self.s = np.array([sizes[c].sum() for c in clusters])
        self.t = gaps.weeks.tolist()
        self.w = list(gaps.weights)
        # Per gap, contiguous: keep, 1 - keep and size x keep of every cluster
        # (a row of costs is 2 products per gap over these).
        self.keep_by_gap = np.ascontiguousarray(gaps.powers(events.log_keeps(clusters)).T)
        self.change_by_gap = 1.0 - self.keep_by_gap
        self.kept_by_gap = self.s * self.keep_by_gap
        self.alive = np.ones(m, dtype=bool)
        # The two clusters holding each shared event (-1: none; the same twice
        # once merged): only an event held by both makes a pair's cost differ.
        self.shared_log = events.shared_log
        cluster_of = np.full(len(sizes), -1, dtype=np.intp)
        for n, c in enumerate(clusters):
            cluster_of[c] = n
        self.holders = cluster_of[events.pairs]
        self.holders[self.holders[:, 0] == self.holders[:, 1]] = -1  # inside one cluster, or in none
        self._cost_all()

    def _cost_all(self) -> None:
        """Every live pair's cost and every cluster's cheapest partner, afresh."""
        cost = self._pair_costs()
        cost[~self.alive, :] = np.inf
        cost[:, ~self.alive] = np.inf
        self.cost = cost
        self.best = cost.argmin(axis=1)
        self.best_cost = cost[np.arange(self.m), self.best]

    def _union_cost(self, x: IntArray | int, y: IntArray, shared: npt.ArrayLike) -> FloatArray:
        """The cost of merging ``x`` with each of ``y`` when they share events
        of log keep ``shared`` (per week): their union keeps those once."""
        s, p = self.s, self.keep_by_gap
        common = np.asarray(shared, dtype=np.float64)
        out = np.zeros(len(y))
        for g, (t, w) in enumerate(zip(self.t, self.w, strict=True)):
            px, py = p[g, x], p[g, y]
            out += w * (s[x] * px + s[y] * py - (s[x] + s[y]) * (px * py * np.exp(-t * common)))
        return out

    def _pair_costs(self) -> FloatArray:
        """The cost of merging each pair of clusters (inf on the diagonal)."""
        holders, shared_log = self.holders, self.shared_log
        cost = np.zeros((self.m, self.m))
        term = np.empty((self.m, self.m))
        for g, w in enumerate(self.w):
            np.multiply.outer(w * self.kept_by_gap[g], self.change_by_gap[g], out=term)
            cost += term
        cost += cost.T
        cost[np.ix_(self.big, self.big)] = np.inf
        split = (holders[:, 0] >= 0) & (holders[:, 1] >= 0) & (holders[:, 0] != holders[:, 1])
        if split.any():
            pairs, where = np.unique(np.sort(holders[split], axis=1), axis=0, return_inverse=True)
            common = np.bincount(where.ravel(), weights=shared_log[split])
            x, y = pairs[:, 0], pairs[:, 1]
            cost[x, y] = cost[y, x] = self._union_cost(x, y, common)
        np.fill_diagonal(cost, np.inf)
        return cost

    def _correct(self, i: int, r: FloatArray) -> None:
        """Set ``r[k]`` to the cost of merging ``i`` and ``k`` for the clusters
        ``k`` sharing events with ``i``: their union keeps the shared factor once."""
        holders, shared_log = self.holders, self.shared_log
        if not len(shared_log):
            return
        mine = (holders[:, 0] == i) | (holders[:, 1] == i)
        other = holders[mine].sum(axis=1) - i
        valid = (other >= 0) & (other != i)
        if not valid.any():
            return
        common = np.bincount(other[valid], weights=shared_log[mine][valid], minlength=self.m)
        ks = np.flatnonzero(common)
        r[ks] = self._union_cost(i, ks, common[ks])

    def _row(self, i: int) -> FloatArray:
        """The cost of merging cluster ``i`` with each other cluster."""
        r = np.zeros(self.m)
        term = np.empty(self.m)
        for g, w in enumerate(self.w):
            kept, change = self.kept_by_gap[g], self.change_by_gap[g]
            np.multiply(change, w * kept[i], out=term)
            r += term
            np.multiply(kept, w * change[i], out=term)
            r += term
        if self.big[i]:
            r[self.big] = np.inf
        self._correct(i, r)
        r[~self.alive] = np.inf
        r[i] = np.inf
        return r

    def _join(self, i: int, j: int) -> None:
        """Cluster ``j`` merged into ``i``: sizes, keep probabilities and the
        shared events now inside ``i``."""
        holders, shared_log = self.holders, self.shared_log
        if len(shared_log):
            first, second = holders[:, 0], holders[:, 1]
            both = ((first == i) & (second == j)) | ((first == j) & (second == i))
            if both.any():
                common = float(shared_log[both].sum())
                self.keep_by_gap[:, i] /= np.exp(np.array(self.t) * common)
                holders[both] = -1  # inside i from now on: no pair shares it
            holders[holders == j] = i
        self.clusters[i].extend(self.clusters[j])
        self.clusters[j] = []
        self.big[i] |= self.big[j]
        self.s[i] += self.s[j]
        keep = self.keep_by_gap[:, i]
        keep *= self.keep_by_gap[:, j]
        self.change_by_gap[:, i] = 1.0 - keep
        self.kept_by_gap[:, i] = self.s[i] * keep
        self.alive[j] = False

    def merge_cheapest(self) -> None:
        """Merge the cheapest pair, and bring the costs and best partners up to date."""
        cost, best, best_cost, alive = self.cost, self.best, self.best_cost, self.alive
        i = int(best_cost.argmin())
        if not np.isfinite(best_cost[i]):
            # Only big clusters are left to merge (cannot happen while the big
            # components are fewer than the target): the rule gives way.
            self.big[:] = False
            self._cost_all()
            cost, best, best_cost = self.cost, self.best, self.best_cost
            i = int(best_cost.argmin())
        j = int(best[i])
        if j < i:
            i, j = j, i
        self._join(i, j)
        cost[j, :] = np.inf
        cost[:, j] = np.inf
        best_cost[j] = np.inf
        r = self._row(i)
        cost[i, :] = r
        cost[:, i] = r
        best[i] = int(r.argmin())
        best_cost[i] = r[best[i]]
        # Rows whose best partner was i or j: look again; others may now prefer i.
        stale = np.flatnonzero(alive & ((best == i) | (best == j)))
        for k in stale:
            if k != i:
                best[k] = int(cost[k].argmin())
                best_cost[k] = cost[k, best[k]]
        better = alive & (r < best_cost)
        better[i] = False
        best[better] = i
        best_cost[better] = r[better]


def _refine(
    groups: list[list[int]],
    sizes: FloatArray,
    events: Events,
    gaps: UpdateGaps,
    big: BoolArray | None = None,
    rounds: int = 8,
) -> list[list[int]]:
    """Move single components to another layer while that lowers ``E``.

    Each round finds every component's best move at once (a components x layers
    matrix), then applies the improving ones, best first, checking each again
    against the layers as they are by then.  A part of a split package adds the
    change it shares with the other part only to a layer not holding that part,
    and takes it away only from such a layer.  A big component (``_big``)
    never moves to a layer holding another."""
    if len(groups) < 2:
        return groups
    members = np.array([c for g in groups for c in g], dtype=np.intp)
    is_big = np.zeros(len(members), dtype=bool) if big is None else big[members]
    owner = np.array([k for k, g in enumerate(groups) for _ in g], dtype=np.intp)
    size = sizes[members]
    n = len(members)
    # The other part of each member's package, by position here (-1: none, or
    # not among these layers: then the shared change counts as the member's own).
    partner_of, partner_log = events.partners()
    position = np.full(len(sizes) + 1, -1, dtype=np.intp)
    position[members] = np.arange(n)
    partner = position[partner_of[members]]  # a -1 partner reads position[-1], always -1
    own = events.own[members] + np.where(partner < 0, partner_log[members], 0.0)
    shared = np.where(partner >= 0, partner_log[members], 0.0)
    total = own + shared  # log(1 - p) of each member
    n_groups = len(groups)
    gs = np.bincount(owner, weights=size, minlength=n_groups)
    counts = np.bincount(owner, minlength=n_groups)
    # A layer's log keep: its members' totals, a shared change once when both parts are in.
    twice = (partner > np.arange(n)) & (owner[partner] == owner)
    gl = np.bincount(owner, weights=total, minlength=n_groups) - np.bincount(
        owner[twice], weights=shared[twice], minlength=n_groups
    )

    def cost(total: npt.ArrayLike, log_k: npt.ArrayLike) -> FloatArray:
        return np.asarray(np.asarray(total, dtype=np.float64) * gaps.change(log_k), dtype=np.float64)

    for _ in range(rounds):
        base = cost(gs, gl)
        partner_layer = np.where(partner >= 0, owner[partner], -1)
        leave = total - np.where(partner_layer == owner, shared, 0.0)
        src = cost(gs[owner] - size, gl[owner] - leave) - base[owner]
        tgt = _join_costs(gaps, gs, gl, size, total, shared, partner_layer) - base[None, :]
        delta = src[:, None] + tgt
        delta[np.arange(n), owner] = np.inf
        delta[counts[owner] == 1, :] = np.inf
        bigs = np.bincount(owner[is_big], minlength=n_groups)
        delta[np.ix_(is_big, bigs > 0)] = np.inf
        target = delta.argmin(axis=1)
        gain = delta[np.arange(n), target]
        order = np.flatnonzero(gain < 0)[np.argsort(gain[gain < 0], kind="stable")].tolist()
        moves = _Moves(
            gs.tolist(), gl.tolist(), counts.tolist(), owner.tolist(), gaps.change_scalar, bigs.tolist()
        )
        moved = moves.apply(
            order, target, size.tolist(), total.tolist(), shared.tolist(), partner.tolist(), is_big.tolist()
        )
        gs, gl, counts = np.array(moves.gs), np.array(moves.gl), np.array(moves.counts)
        owner = np.array(moves.owner, dtype=np.intp)
        if not moved:
            break
    out: list[list[int]] = [[] for _ in groups]
    for c, g in zip(members, owner, strict=True):
        out[g].append(int(c))
    return [g for g in out if g]


def _join_costs(
    gaps: UpdateGaps,
    gs: npt.NDArray[Any],
    gl: npt.NDArray[Any],
    size: FloatArray,
    total: FloatArray,
    shared: FloatArray,
    partner_layer: npt.NDArray[np.signedinteger[Any]],
) -> FloatArray:
    """The cost of each layer (``gs`` bytes, log keep ``gl``) with each member
    added (``size``, log keep ``total``; ``shared`` of it already in the layer
    holding its partner, ``partner_layer``): a members x layers matrix."""
    n, n_groups = len(size), len(gs)
    grown = gs[None, :] + size[:, None]
    if gaps.single_week:
        join = total[:, None] - shared[:, None] * (np.arange(n_groups)[None, :] == partner_layer[:, None])
        return np.asarray(grown * -np.expm1(gl[None, :] + join), dtype=np.float64)
    # A layer's keep over gap k times a member's: one product per gap (no
    # exponential per pair), gap by gap in a fixed order.
    layer_keep, member_keep = gaps.powers(gl), gaps.powers(total)
    keep = np.zeros((n, n_groups))
    for k, w in enumerate(gaps.weights):
        keep += np.multiply.outer(w * member_keep[:, k], layer_keep[:, k])
    out = np.asarray(grown * (1.0 - keep), dtype=np.float64)
    # Joining the layer that holds its partner adds no shared change.
    rows = np.flatnonzero(partner_layer >= 0)
    if len(rows):
        cols = partner_layer[rows]
        out[rows, cols] = grown[rows, cols] * gaps.change(gl[cols] + total[rows] - shared[rows])
    return out


@dataclass
class _Moves:
    """Each layer's size, log keep, member count and big components, and each
    member's layer, as plain floats and ints (cheaper than numpy scalars one
    move at a time)."""

    gs: list[float]
    gl: list[float]
    counts: list[int]
    owner: list[int]
    change: Callable[[float], float]
    bigs: list[int]

    def apply(
        self,
        order: list[int],
        target: npt.NDArray[np.intp],
        size_l: list[float],
        total_l: list[float],
        shared_l: list[float],
        partner_l: list[int],
        big_l: list[bool],
    ) -> bool:
        """Move each member of ``order`` (best gain first) to its ``target``
        layer if that still lowers ``E`` against the layers as they are by
        then; whether any moved."""
        gs_l, gl_l, counts_l, owner_l, change = self.gs, self.gl, self.counts, self.owner, self.change
        moved = False
        for c in order:
            g, t = owner_l[c], int(target[c])
            if counts_l[g] == 1 or (big_l[c] and self.bigs[t] > 0):
                continue
            with_partner = owner_l[partner_l[c]] if partner_l[c] >= 0 else -1
            sc = size_l[c]
            out_k = total_l[c] - (shared_l[c] if with_partner == g else 0.0)
            in_k = total_l[c] - (shared_l[c] if with_partner == t else 0.0)
            now = (
                (gs_l[g] - sc) * change(gl_l[g] - out_k)
                - gs_l[g] * change(gl_l[g])
                + (gs_l[t] + sc) * change(gl_l[t] + in_k)
                - gs_l[t] * change(gl_l[t])
            )
            if now >= -1e-9 * max(1.0, sc):
                continue
            gs_l[g] -= sc
            gl_l[g] -= out_k
            counts_l[g] -= 1
            gs_l[t] += sc
            gl_l[t] += in_k
            counts_l[t] += 1
            owner_l[c] = t
            if big_l[c]:
                self.bigs[g] -= 1
                self.bigs[t] += 1
            moved = True
        return moved


def _pack_with_prior(
    names: list[str],
    sizes: FloatArray,
    events: Events,
    volatile: npt.NDArray[np.bool_],
    budget: int,
    prior: Plan,
    horizon: int,
    gaps: UpdateGaps,
) -> list[list[int]]:
    index = {n: i for i, n in enumerate(names)}
    # Prior layers with the components that still exist, in prior order.
    groups: list[list[int]] = []
    for layer in prior.layers:
        kept = [index[n] for n in layer.components if n in index]
        if kept:
            groups.append(sorted(kept))
    # Over budget (max layers lowered): merge the cheapest pairs of old layers.
    if len(groups) > budget:
        groups = _merge_groups(groups, sizes, events, budget, gaps)
    placed = {i for g in groups for i in g}
    new = [i for i in range(len(names)) if i not in placed]
    # New components, largest first: a fresh layer while the budget allows, else
    # the layer where E plus the one-time download of a changed layer is least
    # (per layer at once: size, log keep, whether it holds volatile content).
    partner, partner_log = events.partners()
    group_of = np.full(len(names), -1, dtype=np.intp)
    for g, members in enumerate(groups):
        group_of[members] = g
    gs = np.zeros(budget)
    gl = np.zeros(budget)
    gv = np.zeros(budget, dtype=bool)
    changed = np.zeros(budget, dtype=bool)
    # No two big components in one layer (``_big``, over the content that is not volatile).
    big = _big([i for i in range(len(names)) if not volatile[i]], sizes, budget, events)
    gb = np.zeros(budget, dtype=bool)
    if groups:
        gs[: len(groups)] = [sizes[g].sum() for g in groups]
        gl[: len(groups)] = events.log_keeps(groups)
        gv[: len(groups)] = [volatile[g].any() for g in groups]
        gb[: len(groups)] = [big[g].any() for g in groups]
    for i in sorted(new, key=lambda i: (-sizes[i], i)):
        # The shared event is added unless the other part is in the layer already.
        join = events.own[i] + partner_log[i]
        if len(groups) < budget:
            best = len(groups)
            groups.append([])
            keep_with = join
        else:
            n = len(groups)
            holds = group_of[partner[i]] if partner[i] >= 0 else -1
            lk = gl[:n] + join - partner_log[i] * (np.arange(n) == holds)
            added = (gs[:n] + sizes[i]) * gaps.change(lk) - gs[:n] * gaps.change(gl[:n])
            total = added + np.where(changed[:n], 0.0, gs[:n] / horizon)
            if n > 1:
                total[gv[:n] != volatile[i]] = np.inf
            if big[i] and (np.isfinite(total) & ~gb[:n]).any():
                total[gb[:n]] = np.inf  # unless every layer it may join holds one
            best = int(total.argmin()) if np.isfinite(total).any() else n - 1
            keep_with = float(lk[best])
        groups[best].append(i)
        group_of[i] = best
        gs[best] += sizes[i]
        gl[best] = keep_with
        gv[best] |= volatile[i]
        gb[best] |= big[i]
        changed[best] = True
    return [sorted(g) for g in groups]


def _merge_groups(
    groups: list[list[int]], sizes: FloatArray, events: Events, budget: int, gaps: UpdateGaps
) -> list[list[int]]:
    """Merge whole groups, cheapest first, down to ``budget``."""
    groups = [list(g) for g in groups]
    while len(groups) > budget:
        s = np.array([sizes[g].sum() for g in groups])
        lk = events.log_keeps(groups)
        cost = np.zeros((len(groups), len(groups)))
        for t, w in zip(gaps.weeks.tolist(), gaps.weights, strict=True):
            kept = s * np.exp(t * lk)
            cost += w * (np.add.outer(kept, kept) - np.add.outer(s, s) * np.exp(t * np.add.outer(lk, lk)))
        # Groups sharing an event: the union's keep counts it once.
        group_of = np.full(len(sizes), -1, dtype=np.intp)
        for k, g in enumerate(groups):
            group_of[g] = k
        held = group_of[events.pairs]
        split = (held >= 0).all(axis=1) & (held[:, 0] != held[:, 1])
        for a, b in {(int(min(x, y)), int(max(x, y))) for x, y in held[split].tolist()}:
            union = (s[a] + s[b]) * gaps.change_scalar(events.log_keep(groups[a] + groups[b]))
            change_a, change_b = gaps.change_scalar(float(lk[a])), gaps.change_scalar(float(lk[b]))
            cost[a, b] = cost[b, a] = union - s[a] * change_a - s[b] * change_b
        np.fill_diagonal(cost, np.inf)
        a_idx, b_idx = np.unravel_index(int(cost.argmin()), cost.shape)
        i, j = min(int(a_idx), int(b_idx)), max(int(a_idx), int(b_idx))
        groups[i] = sorted(groups[i] + groups[j])
        del groups[j]
    return groups
