"""Baseline packing strategies debchunk's chunker is compared against.

Every baseline has the chunker's signature ``(components, max_layers, prior=None)
-> chunker.Plan`` and is rebuilt here, in our own code, from the published
algorithms of the tools we want to beat (the facts of each algorithm were read
from the source files named in each docstring; nothing is copied):

- ``single_layer``, ``one_per_layer``: the trivial ends of the range;
- ``ostree_ext_basic_packing``: rpm-ostree ``compose container-encapsulate``
  (ostree-ext ``chunking.rs``), with and without a prior build;
- ``chunkah_packing``: coreos/chunkah ``packing.rs``;
- ``rechunk_greedy``: hhd-dev/rechunk ``alg.py``.

Layer budget.  A plan's image has ``len(plan.layers) + plan.reserved_layers``
layers (the reserved one is the ostree commit/metadata layer).  debchunk keeps
that within ``max_layers``; ostree-ext and rechunk do not (``--max-layers N``
gives N content layers plus the commit layer), and we reproduce them faithfully:
``LAYER_OVERSHOOT`` says by how many layers each baseline may exceed the budget
and ``overshoot(plan)`` measures one plan, so a comparison harness can flag or
cap them.  ostree-ext plans may contain empty layers (its reserved "new
packages" layer is a real, empty, image layer): they cost nothing but count.

Inputs are sorted by name before anything else, so no result depends on the
input order, dict/set order or the hash seed.

Inputs.  Each baseline takes, besides our components, the change estimate its
tool computes (keyword ``change_frequency``, ``stability``, ``weeks``), made by
the functions under "the peers' inputs" from a Debian tree's records
(``BinaryPackage``), and ``benches.update_cost`` plans each on the units its
tool forms (``ostree_ext_view``, ``chunkah_view``, ``rechunk_view``).  Without
them a baseline falls back on our probabilities (as these tests' random
components do).  Adaptations to dpkg, none of the three reading a dpkg
database today:

- ownership: the dpkg file lists, plus (by default, ``benches.update_cost``'s
  ``PEER_OWNERSHIP = "mapped"``) the byte code and files maintainer scripts
  write, which RPM packages ship and list but dpkg lists do not: each such
  file goes to a binary package of the source package the mapping gives it
  to, the one listing files in its nearest directory.  Left unowned, as a
  literal port of the peers' dpkg support would (``--peer-ownership dpkg``),
  they fall into the peers' catch-all (rpm-ostree's unpackaged source,
  chunkah's ``chunkah/unclaimed`` or ``bigfiles/*``, rechunk's
  ``unpackaged``), which then changes on every update.  Measured both ways on
  the frozen trees (docs/update-cost.md), "mapped" gives the peers smaller
  downloads on nearly every pair, so it is the default: a fair comparison
  gives the peers the benefit of the doubt;
- rpm-ostree's build time is a package's newest changelog entry (dpkg keeps
  no build time), so its 365-day window ends at the tree's newest entry; the
  mapping's volatile components stay ``u32::MAX`` sources as rpm-ostree's
  initramfs is; units are named by binary package (``name:arch`` only when a
  name is installed twice);
- chunkah's repo is named ``dpkg`` and groups binary packages by ``Source``
  (as its rpm repo groups by SRPM), the smallest stability winning; its "now"
  is the tree's reference date; a package without a changelog counts as
  unchanged (no build time to fall back on); bigfiles are not grouped by
  inode;
- rechunk's "now" is the tree's reference date, not the wall clock, and an
  entry in ISO week 53 takes column 0 where rechunk would fail;
- dates are whole days (days since the epoch).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from chunker import ChunkerError, Layer, Plan, make_plan
from chunker.cost import changes_per_year as yearly_changes
from chunker.cost import log_keep_probability
from mapping import Component

#: Layers every image has besides the plan's layers (the ostree commit layer).
RESERVED_LAYERS = 1


class Baseline(Protocol):
    """What every baseline (and ``chunker.pack``) looks like."""

    def __call__(
        self, components: Sequence[Component], max_layers: int, prior: Plan | None = None
    ) -> Plan: ...


def overshoot(plan: Plan) -> int:
    """How many layers the image of ``plan`` has beyond ``plan.max_layers``
    (0 when it fits), the reserved commit layer counted."""
    return max(0, len(plan.layers) + plan.reserved_layers - plan.max_layers)


# --------------------------------------------------------------------------- helpers


def _sorted_components(components: Sequence[Component], max_layers: int) -> list[Component]:
    """The components sorted by name, after checking names are unique and the
    budget leaves room for at least one content layer."""
    if max_layers < RESERVED_LAYERS + 1:
        raise ChunkerError(
            f"max_layers {max_layers} leaves no layer for content: it must be at least {RESERVED_LAYERS + 1}"
        )
    result = sorted(components, key=lambda c: c.name)
    for a, b in itertools.pairwise(result):
        if a.name == b.name:
            raise ChunkerError(f"component {a.name!r} is given twice")
    return result


def _plan(components: Sequence[Component], groups: Iterable[Iterable[str]], max_layers: int) -> Plan:
    """``make_plan`` that keeps empty groups as empty layers, in place (the
    original tools write them as real, empty, image layers)."""
    materialised = [list(g) for g in groups]
    placed = sorted(name for g in materialised for name in g)
    if placed != [c.name for c in components]:
        raise AssertionError("a baseline lost or duplicated a component")
    plan = make_plan(components, materialised, max_layers, RESERVED_LAYERS)
    filled = iter(plan.layers)
    layers = tuple(next(filled) if g else Layer((), 0, 0.0) for g in materialised)
    return replace(plan, layers=layers)


def _prior_groups(prior: Plan | None) -> list[list[str]] | None:
    """The component names of each layer of ``prior``; empty names (what an empty
    layer's ``ostree.components`` annotation reads back as) are dropped."""
    if prior is None:
        return None
    return [[name for name in layer.components if name] for layer in prior.layers]


@dataclass(frozen=True)
class _Unit:
    """What one of the original tools packs as one item: usually one of our
    components, sometimes several (e.g. all unowned content is one item for
    rpm-ostree and rechunk).

    ``frequency`` is ostree-ext's change count, ``special`` its "exclusive
    component" flag or rechunk's "dedicated layer" flag."""

    name: str
    members: tuple[str, ...]
    size: int
    p: float
    frequency: int = 0
    special: bool = False
    # rechunk: the weeks with an update, a bit mask (bit w: ISO week w).
    weeks: int | None = None


def _merged_unit(name: str, comps: Sequence[Component], frequency: int, special: bool) -> _Unit:
    keep = 0.0
    for c in comps:
        keep += log_keep_probability(c.change_probability)
    return _Unit(
        name,
        tuple(sorted(c.name for c in comps)),
        sum(c.size for c in comps),
        -math.expm1(keep),
        frequency,
        special,
    )


def _unchunked(components: Sequence[Component], max_layers: int) -> Plan:
    """Everything in one layer."""
    return _plan(components, [[c.name for c in components]] if components else [], max_layers)


# --------------------------------------------------------------------------- the peers' inputs
#
# Each peer computes its change estimate from package metadata in its own way;
# these functions do it from a Debian tree's records (``BinaryPackage``: what
# ``benches.update_pairs`` stores per binary package), so every baseline is fed
# what its tool would have computed, not our probabilities.  Dates are days
# since 1970-01-01 (UTC): Debian changelog entries carry a time, but the peers
# either bin by day (chunkah, rechunk) or compare whole days (rpm-ostree).

#: The window every peer looks back over, in days.
PEER_WINDOW_DAYS = 365


@dataclass(frozen=True)
class BinaryPackage:
    """What the peers read about one installed binary package: its name (dpkg's
    ``binary:Package``), source package, changelog entry dates (days since the
    epoch, any order, one per entry: several entries may share a day) and how
    many entries its whole changelog has."""

    name: str
    source: str
    changelog_days: tuple[int, ...] = ()
    changelog_entries: int = 0


def ostree_ext_change_frequency(packages: Sequence[BinaryPackage]) -> dict[str, int]:
    """rpm-ostree's ``ObjectSourceMeta.change_frequency`` of each binary package:
    the number of its changelog ENTRIES (not days) at most 365 days older than
    the newest build of the whole tree (coreos/rpm-ostree
    ``rust/src/container.rs``, ``container_encapsulate``: ``pruned_changelogs``,
    ``highest_change_time`` = the largest ``buildtime`` of any package).  A dpkg
    database has no build time; a package's newest changelog entry stands in
    for it, so the tree's newest entry is the reference.  No changelog: 0."""
    newest = max((max(p.changelog_days) for p in packages if p.changelog_days), default=0)
    return {p.name: sum(1 for d in p.changelog_days if newest - d <= PEER_WINDOW_DAYS) for p in packages}


#: chunkah ``STABILITY_PERIOD_DAYS``: stability is P(no change in 7 days).
CHUNKAH_PERIOD_DAYS = 7.0
#: chunkah: a package with no change in the window.
CHUNKAH_STABLE = 0.99
#: chunkah ``UNCLAIMED_COMPONENT``, stability 0.
CHUNKAH_UNCLAIMED = "chunkah/unclaimed"
#: chunkah ``bigfiles``: an unclaimed regular file at least this large is its
#: own component, ``bigfiles/<file name>``, stability 0.
CHUNKAH_BIGFILE_MIN_SIZE = 1024 * 1024
#: chunkah's repo name for a dpkg database (coreos/chunkah issue 155, "Add
#: support for dpkg": announced, not yet published), as ``rpm`` is for rpmdb.
CHUNKAH_DPKG_REPO = "dpkg"


def chunkah_stability(change_days: Sequence[int], now_day: int) -> float:
    """chunkah ``utils::calculate_stability`` (coreos/chunkah ``src/utils.rs``):
    the DISTINCT change days within 365 days before ``now`` (the image's
    creation date, ``SOURCE_DATE_EPOCH``), divided by the span from the oldest
    of them to now (not by 365), as a Poisson rate; stability =
    exp(-7 * rate).  No change in the window: 0.99; a span under a day: 0.
    (chunkah falls back on the build time when a package has no changelog;
    dpkg records none, so such a package counts as unchanged.)"""
    start = now_day - PEER_WINDOW_DAYS
    window = {d for d in change_days if d >= start}
    if not window:
        return CHUNKAH_STABLE
    span = now_day - min(window)
    if span < 1:
        return 0.0
    return math.exp(-len(window) / span * CHUNKAH_PERIOD_DAYS)


def chunkah_dpkg_stability(packages: Sequence[BinaryPackage], now_day: int) -> dict[str, float]:
    """Stability of each ``dpkg/<source>`` component: chunkah's rpm and alpm
    repos make one component per source package (SRPM, ``%BASE%``) and keep
    the smallest stability of its binary packages
    (``src/components/rpm.rs``, ``alpm.rs``); the dpkg analogue groups binary
    packages by ``Source``."""
    result: dict[str, float] = {}
    for p in packages:
        name = f"{CHUNKAH_DPKG_REPO}/{p.source}"
        stability = chunkah_stability(p.changelog_days, now_day)
        result[name] = min(result.get(name, 1.0), stability)
    return result


#: rechunk: weekly update columns (``get_update_matrix`` without ``biweekly``).
RECHUNK_WEEKS = 53
#: rechunk: a package updated in every week.
RECHUNK_ALL_WEEKS = (1 << RECHUNK_WEEKS) - 1
#: rechunk: a package with at most this many changelog entries is taken as
#: having no changelog and updated every week.
RECHUNK_NO_CHANGELOG = 2


def rechunk_update_weeks(change_days: Sequence[int], entries: int, now_day: int) -> int:
    """hhd-dev/rechunk ``utils.get_update_matrix`` (weekly): the ISO week
    numbers of the changelog entries at most 365 days old, as a bit mask (bit
    w for week w); at most ``RECHUNK_NO_CHANGELOG`` entries in the whole
    changelog: every week.  rechunk counts back from the wall clock; we count
    from ``now_day``, the tree's reference date.  An entry in ISO week 53 would
    index past rechunk's 53 columns (0-52) and fail there; here it takes the
    otherwise unused column 0."""
    if entries <= RECHUNK_NO_CHANGELOG:
        return RECHUNK_ALL_WEEKS
    mask = 0
    for d in change_days:
        if now_day - d > PEER_WINDOW_DAYS:
            continue
        week = (_EPOCH_DATE + dt.timedelta(days=d)).isocalendar().week
        mask |= 1 << (week % RECHUNK_WEEKS)
    return mask


def rechunk_weeks(packages: Sequence[BinaryPackage], now_day: int) -> dict[str, int]:
    """The update weeks of each rechunk package: rechunk groups the installed
    packages of one name (its variants, e.g. architectures) into one
    ``MetaPackage`` with all their changelog entries (``alg.process_meta``);
    keyed by package name without ``:arch``."""
    days: dict[str, list[int]] = {}
    entries: dict[str, int] = {}
    for p in packages:
        name = p.name.partition(":")[0]
        days.setdefault(name, []).extend(p.changelog_days)
        entries[name] = entries.get(name, 0) + p.changelog_entries
    return {name: rechunk_update_weeks(days[name], entries[name], now_day) for name in days}


_EPOCH_DATE = dt.date(1970, 1, 1)


# --------------------------------------------------------------------------- trivial baselines


def single_layer(components: Sequence[Component], max_layers: int, prior: Plan | None = None) -> Plan:
    """Every component in one layer (what a plain ``ostree container encapsulate``
    or a squashed image does).  One content layer, two image layers with the
    commit layer.  ``prior`` is ignored."""
    return _unchunked(_sorted_components(components, max_layers), max_layers)


def one_per_layer(components: Sequence[Component], max_layers: int, prior: Plan | None = None) -> Plan:
    """Size only: the largest components (by size, ties by name) each alone in a
    layer, as many as the budget allows, and all the others in one last
    catch-all layer.  With ``max_layers - 1`` content layers available: if every
    component fits, one layer each; otherwise ``max_layers - 2`` singletons plus
    the catch-all.  Never exceeds the budget.  ``prior`` is ignored (the
    grouping depends only on sizes)."""
    comps = _sorted_components(components, max_layers)
    budget = max_layers - RESERVED_LAYERS
    by_size = sorted(comps, key=lambda c: (-c.size, c.name))
    if len(by_size) <= budget:
        groups = [[c.name] for c in by_size]
    else:
        groups = [[c.name] for c in by_size[: budget - 1]]
        groups.append([c.name for c in by_size[budget - 1 :]])
    return _plan(comps, groups, max_layers)


# --------------------------------------------------------------------------- ostree-ext

#: ostree-ext's ``u32::MAX`` change frequency: "changes all the time".
U32_MAX = 2**32 - 1
#: ostree-ext refuses to chunk into fewer content layers than this.
OSTREE_EXT_MIN_LAYERS = 4
#: The most change days a year can hold (rpm-ostree counts changelog entries of
#: the last 365 days; our probabilities count distinct change days).
MAX_CHANGES_PER_YEAR = 366


def changes_per_year(p: float) -> int:
    """The yearly change count ostree-ext would have seen for a package that
    changes in a week with probability ``p``.

    Our mapping sets ``p = 1 - exp(-7 * r / 365)`` with ``r`` the number of
    distinct change days in the last 365 days plus a prior of 0.5
    (``mapping.changelog``); inverting gives ``r = -365/7 * ln(1 - p)``
    (``chunker.cost.changes_per_year``) and the floor takes the prior off
    again, which is the count rpm-ostree takes from the RPM changelog
    (``change_frequency``: entries within 365 days of the newest build).  p = 1
    maps to ``MAX_CHANGES_PER_YEAR``, never to ``U32_MAX``, which rpm-ostree
    keeps for non-package content."""
    if p >= 1.0:
        return MAX_CHANGES_PER_YEAR
    if p <= 0.0:
        return 0
    return min(MAX_CHANGES_PER_YEAR, math.floor(yearly_changes(p) + 1e-9))


def _ostree_ext_units(
    comps: Sequence[Component], change_frequency: Mapping[str, int] | None = None
) -> list[_Unit]:
    """Our components as rpm-ostree's content sources (rpm-ostree
    ``rust/src/container.rs``, ``build_mapping``):

    - package: a content source with its change count;
    - component (``user.component`` xattr): an "exclusive" component, which
      ostree-ext puts in a layer of its own before any packing;
    - volatile: like rpm-ostree's initramfs source, ``change_frequency =
      u32::MAX``;
    - unpackaged and every bigfile: rpm-ostree has no bigfile notion, so all
      unowned content is its single ``rpmostree-unpackaged-content`` source,
      also with ``u32::MAX``.  Here it is one unit named like our unpackaged
      component, holding all of them."""
    units: list[_Unit] = []
    unowned: list[Component] = []
    for c in comps:
        if c.kind == "package":
            known = None if change_frequency is None else change_frequency.get(c.name)
            frequency = changes_per_year(c.change_probability) if known is None else known
            units.append(_Unit(c.name, (c.name,), c.size, c.change_probability, frequency))
        elif c.kind == "component":
            units.append(_Unit(c.name, (c.name,), c.size, c.change_probability, U32_MAX, special=True))
        elif c.kind == "volatile":
            units.append(_Unit(c.name, (c.name,), c.size, c.change_probability, U32_MAX))
        else:
            unowned.append(c)
    if unowned:
        first = next((c for c in unowned if c.kind == "unpackaged"), unowned[0])
        units.append(_merged_unit(first.name, unowned, U32_MAX, special=False))
    return units


def _ox_median_mad(sizes: Sequence[int]) -> tuple[float, float]:
    """ostree-ext ``statistics::median_absolute_deviation``: the data is taken as
    already sorted (it is, by descending size)."""
    n = len(sizes)
    median = float(sizes[n // 2]) if n % 2 == 1 else 0.5 * float(sizes[n // 2 - 1] + sizes[n // 2])
    deviations = sorted(abs(float(s) - median) for s in sizes)
    m = len(deviations)
    mad = deviations[m // 2] if m % 2 == 1 else 0.5 * (deviations[m // 2 - 1] + deviations[m // 2])
    return median, mad


def _ox_mean_std(data: Sequence[int]) -> tuple[float, float]:
    """ostree-ext ``statistics::mean`` and ``std_deviation`` (population) of
    integers: exact integer sum, sequential float sum of squares."""
    mean = float(sum(data)) / len(data)
    acc = 0.0
    for v in data:
        d = mean - float(v)
        acc += d * d
    return mean, math.sqrt(acc / len(data))


_HIGH_PARTITION = "1hs"
_LOW_PARTITION = "2ls"


def _ox_partitions(units: Sequence[_Unit], limit_hs_bins: int, threshold: float) -> dict[str, list[_Unit]]:
    """ostree-ext ``get_partitions_with_threshold`` (units sorted by size,
    descending)."""
    partitions: dict[str, list[_Unit]] = {}
    median, mad = _ox_median_mad([u.size for u in units])
    size_low = 0.5 * abs(median - threshold * mad)
    size_high = median + threshold * mad
    high: list[_Unit] = []
    medium: list[_Unit] = []
    for u in units:
        if u.size >= size_high:
            high.append(u)
        elif u.size <= size_low:
            partitions.setdefault(_LOW_PARTITION, []).append(u)
        else:
            medium.append(u)
    remaining = high[limit_hs_bins:] + medium
    partitions[_HIGH_PARTITION] = high[:limit_hs_bins]
    # Stable: within one frequency the descending size order stays.
    remaining.sort(key=lambda u: u.frequency)
    if not remaining:
        # ostree-ext panics here (the mean of nothing); there is simply nothing
        # left to bucket.
        return partitions
    mean_f, std_f = _ox_mean_std([u.frequency for u in remaining])
    mean_s, std_s = _ox_mean_std([u.size for u in remaining])
    freq_low = 0.5 * abs(mean_f - threshold * std_f)
    freq_high = mean_f + threshold * std_f
    med_size_low = 0.5 * abs(mean_s - threshold * std_s)
    med_size_high = mean_s + threshold * std_s
    for u in remaining:
        size_name = "hs" if u.size >= med_size_high else "ls" if u.size <= med_size_low else "ms"
        freq_name = "3hf" if u.frequency >= freq_high else "5lf" if u.frequency <= freq_low else "4mf"
        partitions.setdefault(f"{freq_name}_{size_name}", []).append(u)
    return partitions


class _Unsupported(Exception):
    """The original tool fails for this input (the message says how)."""


def _ox_with_prior(
    units: Sequence[_Unit], bin_size: int, prior: list[list[str]], unit_of: dict[str, str]
) -> list[list[_Unit]] | None:
    """ostree-ext ``basic_packing_with_prior_build``: the prior's layers, minus
    removed units, the added ones (sorted by name) in the prior's last layer,
    empty layers dropped except the last; None when the prior does not fit in
    ``bin_size`` layers (ostree-ext then packs afresh)."""
    if not prior:
        return None
    # Prior layers as unit names; a unit already seen in an earlier layer is
    # skipped (ostree-ext would place it twice and abort).
    seen: set[str] = set()
    build: list[list[str]] = []
    for layer in prior:
        names: list[str] = []
        for member in layer:
            name = unit_of.get(member, member)
            if name not in seen:
                seen.add(name)
                names.append(name)
        build.append(names)
    current = {u.name: u for u in units}
    added = sorted(set(current) - seen)
    build[-1].extend(added)
    build = [[n for n in layer if n in current] for layer in build]
    last = len(build) - 1
    build = [layer for i, layer in enumerate(build) if layer or i == last]
    if bin_size < len(build):
        return None
    return [[current[n] for n in layer] for layer in build]


def _ox_basic_packing(
    units: Sequence[_Unit], bin_size: int, prior: list[list[_Unit]] | None
) -> list[list[_Unit]]:
    """ostree-ext ``basic_packing`` on units sorted by (size descending, name);
    ``prior`` is the result of ``_ox_with_prior``, if any."""
    if bin_size < OSTREE_EXT_MIN_LAYERS:
        raise _Unsupported(f"ostree-ext needs at least {OSTREE_EXT_MIN_LAYERS} layers, {bin_size} left")
    if prior is not None:
        return prior
    if len(units) < bin_size:
        result: list[list[_Unit]] = [[u] for u in units]
        if units:
            result.append([])
        return result
    regular = [u for u in units if u.frequency != U32_MAX]
    max_frequency = [u for u in units if u.frequency == U32_MAX]
    r: list[list[_Unit]] = []
    if regular:
        limit_ls_bins = 1
        limit_new_bins = 1
        limit_max_frequency_bins = min(len(max_frequency), 1)
        others = limit_ls_bins + limit_new_bins + limit_max_frequency_bins
        # 60% of what is left for high-size singletons, computed in f32 as upstream.
        limit_hs_bins = math.floor(float(np.float32(0.6) * np.float32(bin_size - others)))
        limit_ms_bins = bin_size - (limit_hs_bins + others)
        partitions = _ox_partitions(regular, limit_hs_bins, 2.0)
        low_count = len(partitions.get(_LOW_PARTITION, []))
        if limit_ms_bins <= 0:
            raise _Unsupported("no layer left for medium-size packages")
        # usize arithmetic: a negative count wraps around (release build), which
        # makes the per-bin limit huge, i.e. one bin per partition.
        per_bin = ((len(regular) - limit_hs_bins - low_count) % 2**64) // limit_ms_bins
        for key in sorted(partitions):
            members = partitions[key]
            if key == _HIGH_PARTITION:
                r.extend([u] for u in members)
            elif key == _LOW_PARTITION:
                r.append(list(members))
            else:
                current: list[_Unit] = []
                for i, u in enumerate(members):
                    if len(current) < per_bin:
                        current.append(u)
                    else:
                        # With per_bin == 0 this pushes an empty bin first, as upstream.
                        r.append(current)
                        current = [u]
                    if i == len(members) - 1 and current:
                        r.append(current)
                        current = []
        # Too many bins: merge neighbours pairwise from the end, skipping the
        # high-size and low-size bins; the merged bin lands after its right
        # neighbour, exactly as upstream's remove/remove/insert does.
        target = bin_size - limit_new_bins - limit_max_frequency_bins
        while len(r) > target:
            positions = range(limit_ls_bins + limit_hs_bins, len(r) - 1, 2)
            if not positions:
                raise _Unsupported("bin merging would not terminate")
            for i in reversed(positions):
                if len(r) <= target:
                    break
                merged = r[i - 1] + r[i]
                del r[i]
                del r[i - 1]
                r.insert(i, merged)
    if max_frequency:
        r.append(max_frequency)
    r.append([])  # reserved for new packages
    return r


def ostree_ext_basic_packing(
    components: Sequence[Component],
    max_layers: int,
    prior: Plan | None = None,
    *,
    change_frequency: Mapping[str, int] | None = None,
) -> Plan:
    """rpm-ostree ``compose container-encapsulate --max-layers N`` as done by
    ostree-ext's ``Chunking::process_mapping`` and ``basic_packing``.

    Sources: bootc-dev/bootc ``crates/ostree-ext/src/chunking.rs`` (HEAD of
    2026-08, including "reuse prior packing with exclusive components"),
    ``crates/ostree-ext/src/statistics.rs``,
    ``crates/ostree-ext/src/container/encapsulate.rs`` (older copy:
    ostreedev/ostree-rs-ext ``lib/src/chunking.rs``), and coreos/rpm-ostree
    ``rust/src/container.rs`` for how the inputs are made.

    Inputs (see ``_ostree_ext_units``): packages with a yearly change count
    (``change_frequency``, rpm-ostree's count of changelog entries, see
    ``ostree_ext_change_frequency``; without it ``changes_per_year`` of our
    probability), ``user.component`` components as exclusive ones,
    volatile content and all unowned content (unpackaged and bigfiles merged,
    as rpm-ostree has only one unpackaged source) with ``u32::MAX``.

    Algorithm, with ``max_layers`` passed straight through as ostree-ext's
    ``max`` (so the image gets up to ``max_layers`` content layers *plus* the
    commit layer: ``LAYER_OVERSHOOT`` = 1):

    1. Each exclusive component gets its own layer, in name order.  The rest,
       sorted by size descending (ties by name), is packed into the
       ``bin_size = max_layers - exclusives`` layers left; ostree-ext refuses
       ``bin_size < 4``.
    2. With a prior build, its layers are read as component names per layer
       (``ostree.components``), the layers are kept, removed components are
       dropped, new ones (sorted) go to the prior's last layer (the reserved
       one), now-empty layers other than the last are dropped; if that no longer
       fits in ``bin_size`` layers the prior is discarded.
    3. Fewer units than ``bin_size``: one layer each plus an empty reserved
       layer.
    4. Otherwise the ``u32::MAX`` units are set aside for one shared layer;
       up to ``floor(0.6 * (bin_size - 3))`` layers (``- 2`` instead of
       ``- 3`` when nothing has ``u32::MAX``) are for high-size outliers, size
       >= median + 2*MAD, largest first, one per layer; size <= |median -
       2*MAD| / 2 goes to one low-size layer; the rest (and the outliers
       beyond the limit) are sorted by change count and split into 3 x 3
       buckets, high/medium/low change count x high/medium/low size, by mean
       +- 2 standard deviations (low limits again halved absolute values), in
       bucket order hf, mf, lf; each bucket is cut into
       layers of ``(n - hs_limit - n_low) // ms_limit`` units.  While there are
       too many layers, neighbouring medium layers are merged pairwise from the
       end.  Then the ``u32::MAX`` layer and an empty layer reserved for new
       packages are appended.

    Not reproduced: where ostree-ext fails (fewer than 4 layers left, more
    exclusive components than layers, its panic when no unit is medium-sized)
    we return everything in one layer (what ostree-ext writes when given no
    chunking) or skip the empty step; components owning no file object stay in
    the plan (ostree-ext never sees them); unit order inside a layer is not
    kept (plans sort names).
    """
    comps = _sorted_components(components, max_layers)
    if not comps:
        return _plan(comps, [], max_layers)
    units = _ostree_ext_units(comps, change_frequency)
    exclusive = sorted((u for u in units if u.special), key=lambda u: u.name)
    regular = sorted((u for u in units if not u.special), key=lambda u: (-u.size, u.name))
    unit_of = {m: u.name for u in units for m in u.members}
    chunks: list[list[_Unit]] = [[u] for u in exclusive]
    remaining = max_layers - len(chunks)
    try:
        if remaining > 0:
            prior_groups = _prior_groups(prior)
            reused = None
            if prior_groups is not None and remaining >= OSTREE_EXT_MIN_LAYERS:
                reused = _ox_with_prior(regular, remaining, prior_groups, unit_of)
            chunks.extend(_ox_basic_packing(regular, remaining, reused))
        elif regular:
            raise _Unsupported("no layer left after the exclusive components")
    except _Unsupported:
        return _unchunked(comps, max_layers)
    return _plan(comps, [[m for u in chunk for m in u.members] for chunk in chunks], max_layers)


# --------------------------------------------------------------------------- chunkah

#: chunkah: components at least median + 1.5 * MAD in size get their own layer.
CHUNKAH_SIZE_OUTLIER_THRESHOLD = 1.5
#: chunkah: singletons take at most this fraction of the budget.
CHUNKAH_HIGH_SIZE_CAP = 0.8

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_U64 = 2**64 - 1


def fnv1a_64(data: bytes) -> int:
    """64-bit FNV-1a (what the Rust ``fnv`` crate's ``FnvHasher`` computes)."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _U64
    return h


def chunkah_hash_name(name: str) -> int:
    """chunkah's ``hash_name``: ``str::hash`` into an ``FnvHasher``, which feeds
    the UTF-8 bytes and then a 0xff terminator (Rust ``Hasher::write_str``)."""
    return fnv1a_64(name.encode("utf-8", "surrogateescape") + b"\xff")


@dataclass
class _Group:
    indices: list[int]
    size: int
    stability: float


def _ck_group(items: Sequence[tuple[str, int, float]], indices: list[int]) -> _Group:
    stability = 1.0
    for i in indices:
        stability *= items[i][2]
    return _Group(indices, sum(items[i][1] for i in indices), stability)


def _ck_median(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    mid = len(s) // 2
    return (s[mid - 1] + s[mid]) / 2.0 if len(s) % 2 == 0 else s[mid]


def _ck_mean(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    acc = 0.0
    for v in values:
        acc += v
    return acc / len(values)


def _ck_stddev(values: Sequence[float], mean: float) -> float:
    if len(values) < 2:
        return 0.0
    acc = 0.0
    for v in values:
        acc += (v - mean) * (v - mean)
    return math.sqrt(acc / len(values))


def _rust_round(x: float) -> float:
    """``f64::round`` for x >= 0: halves away from zero (Python rounds to even)."""
    whole = math.floor(x)
    return whole + 1.0 if x - whole >= 0.5 else float(whole)


def _ck_isolate_size_outliers(
    items: Sequence[tuple[str, int, float]], budget: int
) -> tuple[list[_Group], list[int]]:
    sizes = [float(size) for _, size, _ in items]
    median = _ck_median(sizes)
    raw_mad = _ck_median([abs(s - median) for s in sizes])
    mad = median if raw_mad < median * 0.01 else raw_mad
    limit = median + CHUNKAH_SIZE_OUTLIER_THRESHOLD * mad
    high = [i for i, s in enumerate(sizes) if s >= limit]
    remaining = [i for i, s in enumerate(sizes) if s < limit]
    reserved = 1 if remaining else 0
    hs_limit = math.floor(max(budget - reserved, 0) * CHUNKAH_HIGH_SIZE_CAP)
    if len(high) > hs_limit:
        high.sort(key=lambda i: -items[i][1])  # stable: ties keep name order
        remaining.extend(high[hs_limit:])
        del high[hs_limit:]
    return [_ck_group(items, [i]) for i in high], remaining


def _ck_hash_into_bins(
    items: Sequence[tuple[str, int, float]], indices: Sequence[int], num_bins: int
) -> list[_Group]:
    if not indices or num_bins == 0:
        return []
    bins: list[list[int]] = [[] for _ in range(num_bins)]
    for i in indices:
        bins[chunkah_hash_name(items[i][0]) % num_bins].append(i)
    empty = [b for b, members in enumerate(bins) if not members]
    while empty:
        target = empty.pop()
        # The largest item of any bin holding more than one; the last one found
        # on ties (Rust ``max_by_key``).
        found: tuple[int, int] | None = None
        best = -1
        for b, members in enumerate(bins):
            if len(members) > 1:
                for k, i in enumerate(members):
                    if items[i][1] >= best:
                        best = items[i][1]
                        found = (b, k)
        if found is None:
            break
        b, k = found
        members = bins[b]
        moved = members[k]
        members[k] = members[-1]  # Vec::swap_remove
        members.pop()
        bins[target].append(moved)
    return [_ck_group(items, members) for members in bins if members]


def _ck_allocate_tier_bins(counts: Sequence[int], max_bins: int) -> list[int]:
    non_empty = sum(1 for c in counts if c > 0)
    total = sum(counts)
    result = [0] * len(counts)
    allocated = 0
    seen = 0
    for i, count in enumerate(counts):
        if count == 0:
            continue
        seen += 1
        if seen == non_empty:
            result[i] = max(max_bins - allocated, 0)
        else:
            proportional = int(max(_rust_round(count / total * max_bins), 1.0))
            allowed = max(max_bins - (allocated + non_empty - seen), 0)
            result[i] = min(proportional, allowed)
            allocated += result[i]
    return result


def _ck_bin_by_stability_tiers(
    items: Sequence[tuple[str, int, float]], indices: Sequence[int], max_bins: int
) -> list[_Group]:
    if not indices or max_bins == 0:
        return []
    if len(indices) <= max_bins:
        return [_ck_group(items, [i]) for i in indices]
    stabilities = [items[i][2] for i in indices]
    mean = _ck_mean(stabilities)
    std = _ck_stddev(stabilities, mean)
    high_limit, low_limit = mean + std, mean - std
    tiers: tuple[list[int], list[int], list[int]] = ([], [], [])
    for i in indices:
        s = items[i][2]
        tiers[0 if s >= high_limit else 2 if s <= low_limit else 1].append(i)
    counts = [len(t) for t in tiers]
    if max_bins < sum(1 for c in counts if c > 0):
        return _ck_hash_into_bins(items, indices, max_bins)
    result: list[_Group] = []
    for tier, num_bins in zip(tiers, _ck_allocate_tier_bins(counts, max_bins), strict=True):
        result.extend(_ck_hash_into_bins(items, tier, num_bins))
    return result


def _ck_calculate_packing(items: Sequence[tuple[str, int, float]], max_groups: int) -> list[_Group]:
    """chunkah ``calculate_packing`` over (name, size, stability) items."""
    if not items or max_groups == 0:
        return []
    if len(items) <= max_groups:
        groups = [_ck_group(items, [i]) for i in range(len(items))]
    else:
        groups, remaining = _ck_isolate_size_outliers(items, max_groups)
        if remaining:
            groups.extend(_ck_bin_by_stability_tiers(items, remaining, max_groups - len(groups)))
    groups.sort(key=lambda g: -g.stability)  # stable, most stable first
    return groups


def chunkah_packing(
    components: Sequence[Component],
    max_layers: int,
    prior: Plan | None = None,
    *,
    stability: Mapping[str, float] | None = None,
) -> Plan:
    """coreos/chunkah's packing (``src/packing.rs`` ``calculate_packing``, the
    statistical partitioning that replaced its greedy merge, and
    ``src/cmd_build.rs`` ``pack_components`` for the input order; chunkah HEAD of
    2026-08).

    Items are our components sorted by name, with stability = 1 - weekly change
    probability (chunkah's "probability of no change over 7 days").  With N =
    ``max_layers - 1`` groups (chunkah images have no commit layer, ours do, so
    it gets our content budget and never exceeds ``max_layers``):

    1. At most N items: one layer each.
    2. Size outliers, size >= median + 1.5*MAD (MAD replaced by the median when
       it is under 1% of it), each get a layer, at most floor(0.8 * (N - 1))
       of them (floor(0.8 * N) when nothing else is left), the largest kept.
    3. The rest is split into stability tiers by mean +- one standard
       deviation (high, mid, low); each non-empty tier gets a share of the
       remaining layers proportional to its count (at least 1, the last tier
       the remainder); with fewer layers than tiers everything is hashed
       together.  Within a tier an item goes to bin FNV-1a-64(name) mod k;
       empty bins are refilled with the largest item taken from a bin holding
       more than one.
    4. Layers are ordered by product of stabilities, most stable first.

    There is no prior build in chunkah: ``prior`` is ignored, stability across
    builds comes from the name hash alone.  ``stability`` gives chunkah's own
    (``chunkah_dpkg_stability``; 0 for its unclaimed and bigfile components,
    whose names, like ``dpkg/glibc``, are what is hashed); without it, 1 - our
    probability.
    """
    comps = _sorted_components(components, max_layers)
    given = stability or {}
    items = [(c.name, c.size, given.get(c.name, 1.0 - c.change_probability)) for c in comps]
    groups = _ck_calculate_packing(items, max_layers - RESERVED_LAYERS)
    return _plan(comps, [[comps[i].name for i in g.indices] for g in groups], max_layers)


# --------------------------------------------------------------------------- rechunk

#: rechunk: packages under these sizes (bytes) get one layer per limit.
RECHUNK_SIZE_LIMITS = (5e5, 1e6)
#: rechunk: a layer is filled greedily up to this fraction of the mean layer size...
RECHUNK_PREFILL_RATIO = 0.4
#: ...and takes leftovers while under this fraction.
RECHUNK_MAX_LAYER_RATIO = 1.3
#: rechunk: a meta package smaller than this loses its dedicated layer.
RECHUNK_DEDICATED_MIN_SIZE = 10e6
#: rechunk's name for all unowned content (always a dedicated layer).
RECHUNK_UNPACKAGED = "unpackaged"


def _rechunk_units(comps: Sequence[Component], weeks: Mapping[str, int] | None = None) -> list[_Unit]:
    """Our components as rechunk's ``MetaPackage`` list, in rechunk's order:
    meta packages first (our ``user.component`` components, standing in for
    ``meta.yml`` entries: dedicated unless under 10 MB), then packages, then
    ``unpackaged`` (volatile, unpackaged and bigfile content: everything no
    package owns), which is always dedicated."""
    meta = [
        _Unit(c.name, (c.name,), c.size, c.change_probability, special=c.size >= RECHUNK_DEDICATED_MIN_SIZE)
        for c in comps
        if c.kind == "component"
    ]
    packages = [
        _Unit(
            c.name,
            (c.name,),
            c.size,
            c.change_probability,
            weeks=None if weeks is None else weeks.get(c.name),
        )
        for c in comps
        if c.kind == "package"
    ]
    unowned = [c for c in comps if c.kind in ("volatile", "unpackaged", "bigfile")]
    units = meta + packages
    if unowned:
        units.append(_merged_unit(RECHUNK_UNPACKAGED, unowned, 0, special=True))
    if len({u.name for u in units}) != len(units):
        raise ChunkerError(
            f"a component is called {RECHUNK_UNPACKAGED!r}, rechunk's name for unowned content"
        )
    return units


class _Todo:
    """The units still to place, in rechunk's order, with numpy views.

    ``state`` is what a layer's cost is computed from: with ``weeks`` each
    unit's update-week bit mask (``rechunk_update_weeks``), combined by OR; else
    log(1 - p), combined by addition."""

    def __init__(self, units: Sequence[_Unit], weeks: bool) -> None:
        self.units = list(units)
        self.weeks = weeks
        self.size = np.array([u.size for u in units], dtype=np.float64)
        self.state = np.array(
            [_unit_state(u, weeks) for u in units], dtype=np.uint64 if weeks else np.float64
        )
        self.alive = np.ones(len(units), dtype=bool)

    def __bool__(self) -> bool:
        return bool(self.alive.any())

    def take(self, i: int) -> _Unit:
        self.alive[i] = False
        return self.units[i]

    def empty(self) -> Any:
        """The state of an empty layer."""
        return np.uint64(0) if self.weeks else 0.0

    def combine(self, a: Any, b: Any) -> Any:
        """The state of two sets of units together."""
        return np.bitwise_or(a, b) if self.weeks else a + b

    def cost(self, size: Any, state: Any) -> np.ndarray:
        """rechunk's layer cost: weeks with an update x size; without weeks,
        expected bytes per week, ``size * (1 - prod(1 - p))``."""
        if self.weeks:
            return np.asarray(np.bitwise_count(state).astype(np.float64) * size)
        return np.asarray(-np.expm1(state) * size)


def _unit_state(u: _Unit, weeks: bool) -> Any:
    if weeks:
        return np.uint64(u.weeks if u.weeks is not None else RECHUNK_ALL_WEEKS)
    return log_keep_probability(u.p)


def _rechunk_prefill(
    units: Sequence[_Unit], max_layers: int, fill_size: int, weeks: bool
) -> tuple[_Todo, list[list[_Unit]], list[list[_Unit]]]:
    """rechunk ``prefill_layers``."""
    todo = _Todo(units, weeks)
    dedicated = []
    for i, u in enumerate(units):
        if u.special:
            dedicated.append([todo.take(i)])
    max_layers -= len(dedicated)
    if max_layers <= len(RECHUNK_SIZE_LIMITS):
        raise _Unsupported("rechunk: no layers left after dedicated and small-package layers")
    layers: list[list[_Unit]] = []
    for limit in RECHUNK_SIZE_LIMITS:
        fines = [todo.take(i) for i, u in enumerate(units) if u.size < limit and todo.alive[i]]
        if fines:
            layers.append(fines)
    current: list[_Unit] = []
    l_state = todo.empty()
    l_size = 0
    while True:
        if l_size > fill_size or not todo:
            if current:
                layers.append(current)
            if len(layers) >= max_layers or not todo:
                break
            current, l_state, l_size = [], todo.empty(), 0
        elif not current:
            # The largest left, first in order on ties.
            i = int(np.argmax(np.where(todo.alive, todo.size, -1.0)))
            current.append(todo.take(i))
            l_state = todo.combine(l_state, todo.state[i])
            l_size += todo.units[i].size
        else:
            # The unit that makes this layer's cost smallest, first on ties.
            bw = np.where(
                todo.alive, todo.cost(l_size + todo.size, todo.combine(l_state, todo.state)), np.inf
            )
            i = int(np.argmin(bw))
            current.append(todo.take(i))
            l_state = todo.combine(l_state, todo.state[i])
            l_size += todo.units[i].size
    return todo, dedicated, layers


def _rechunk_load_prior(
    units: Sequence[_Unit], prior: list[list[str]], max_layers: int, weeks: bool
) -> tuple[_Todo, list[list[_Unit]], list[list[_Unit]]]:
    """rechunk ``load_previous_manifest``: the prior's layers in order, units no
    longer there dropped, dedicated units pulled out to their own layers, then
    empty layers up to ``max_layers + 1`` layers in all (upstream's range is one
    longer than the budget)."""
    if not prior:
        raise _Unsupported("no layers in the previous plan")
    todo = _Todo(units, weeks)
    position = {u.name: i for i, u in enumerate(units)}
    unit_of = {m: u.name for u in units for m in u.members}
    dedicated: list[list[_Unit]] = []
    prefill: list[list[_Unit]] = []
    for raw in prior:
        layer: list[_Unit] = []
        for member in raw:
            i = position.get(unit_of.get(member, ""), -1)
            if i < 0 or not todo.alive[i]:
                continue  # removed, or already placed
            u = todo.take(i)
            if u.special:
                dedicated.append([u])
            else:
                layer.append(u)
        if layer:
            prefill.append(layer)
    prefill.extend([] for _ in range(len(dedicated) + len(prefill) - 1, max_layers))
    return todo, dedicated, prefill


def _rechunk_fill(todo: _Todo, layers: list[list[_Unit]], max_layer_size: int) -> list[list[_Unit]]:
    """rechunk ``fill_layers``: each leftover unit, one at a time, goes where it
    raises a layer's cost least, among layers not over ``max_layer_size``."""
    layers = [list(layer) for layer in layers]
    if not todo or not layers:
        return layers
    size = np.array([sum(u.size for u in layer) for layer in layers], dtype=np.float64)
    state = np.array([todo.empty() for _ in layers], dtype=todo.state.dtype)
    for k, layer in enumerate(layers):
        for u in layer:
            state[k] = todo.combine(state[k], _unit_state(u, todo.weeks))
    while todo:
        open_ = np.flatnonzero(size <= max_layer_size)
        if open_.size == 0:
            # rechunk asserts here; we let every layer take it.
            open_ = np.arange(len(layers))
        increase = todo.cost(
            size[open_, None] + todo.size[None, :], todo.combine(state[open_, None], todo.state[None, :])
        )
        increase -= todo.cost(size[open_], state[open_])[:, None]
        increase[:, ~todo.alive] = np.inf
        row, col = divmod(int(np.argmin(increase)), len(todo.units))
        target = int(open_[row])
        layers[target].append(todo.take(col))
        size[target] += todo.size[col]
        state[target] = todo.combine(state[target], todo.state[col])
    return layers


def _rechunk_layer_name(index: int | None, layer: Sequence[_Unit]) -> str:
    """rechunk ``calculate_ostree_layers`` layer names, which order the image:
    ``index`` None for a dedicated layer (always a meta package here)."""
    if len(layer) == 1 and layer[0].name == RECHUNK_UNPACKAGED:
        return RECHUNK_UNPACKAGED
    if index is None:
        return f"dedi:meta:{layer[0].name}"
    return f"rechunk_layer{index:03d}"


def rechunk_greedy(
    components: Sequence[Component],
    max_layers: int,
    prior: Plan | None = None,
    *,
    weeks: Mapping[str, int] | None = None,
) -> Plan:
    """hhd-dev/rechunk's planner (``src/rechunk/alg.py``: ``prefill_layers``,
    ``fill_layers``, ``load_previous_manifest``, ``main``;
    ``src/rechunk/ostree.py`` ``calculate_ostree_layers``;
    ``src/rechunk/utils.py`` ``get_update_matrix``; rechunk HEAD of 2025-07).

    rechunk scores a layer by the number of weeks of the last year in which any
    of its packages was updated (from changelog dates) times its size: with
    ``weeks`` (``rechunk_weeks``: each package's update weeks as a bit mask)
    that is what is computed; without, the weeks become the expected fraction
    of weeks, ``1 - prod(1 - p)``, our own cost model.

    Algorithm (``max_layers`` is rechunk's ``--max-layers``: content layers, so
    the image gets one more, the commit layer):

    1. Units: meta packages (our ``user.component`` components; dedicated if
       >= 10 MB), packages, and ``unpackaged`` = all content no package owns
       (volatile, unpackaged, bigfiles), dedicated.  Each dedicated unit gets
       its own layer; the budget shrinks by as many (at least 3 must remain, or
       rechunk refuses).
    2. Without a prior: one layer for units under 500 kB, one for those under
       1 MB; then layers are seeded with the largest unit left and grown by the
       unit that keeps the layer's cost smallest until the layer exceeds 0.4 x
       the mean layer size (total / max_layers), until the budget is used.
    3. With a prior (read from the plan, as rechunk reads its label or
       ``ostree.components``): its layers are kept in order, removed units
       dropped, dedicated ones pulled out, and empty layers added so that there
       are ``max_layers + 1`` in all (upstream's off-by-one: with a prior the
       image can have ``max_layers + 2`` layers, ``LAYER_OVERSHOOT`` = 2).
    4. Every unit left (new ones, with a prior) goes, one at a time, where it
       raises a layer's cost least, among layers not above 1.3 x the mean size.
    5. Layers are named (``dedi:...``, ``rechunk_layerNNN``, ``unpackaged``),
       ordered by name and empty ones dropped.

    Not reproduced here but in the inputs (``rechunk_update_weeks``,
    ``benches.update_cost.rechunk_view``): packages with at most two changelog
    entries change every week; ``/etc`` files go to unpackaged.  Where rechunk
    fails (budget too small after dedicated layers, no layer under the size
    limit) we return one layer or relax the limit.
    """
    comps = _sorted_components(components, max_layers)
    if not comps:
        return _plan(comps, [], max_layers)
    units = _rechunk_units(comps, weeks)
    by_weeks = weeks is not None
    total = sum(u.size for u in units)
    layer_size = total / max_layers
    fill_size = int(layer_size * RECHUNK_PREFILL_RATIO)
    max_layer_size = int(layer_size * RECHUNK_MAX_LAYER_RATIO)
    prior_groups = _prior_groups(prior)
    loaded = None
    if prior_groups is not None:
        try:
            loaded = _rechunk_load_prior(units, prior_groups, max_layers, by_weeks)
        except _Unsupported:
            loaded = None  # rechunk logs the error and plans afresh
    try:
        todo, dedicated, prefill = (
            loaded if loaded is not None else _rechunk_prefill(units, max_layers, fill_size, by_weeks)
        )
    except _Unsupported:
        return _unchunked(comps, max_layers)
    layers = _rechunk_fill(todo, prefill, max_layer_size)
    named = [(_rechunk_layer_name(None, d), d) for d in dedicated]
    named += [(_rechunk_layer_name(i, layer), layer) for i, layer in enumerate(layers)]
    named.sort(key=lambda item: item[0])
    groups = [[m for u in layer for m in u.members] for _, layer in named if layer]
    return _plan(comps, groups, max_layers)


# --------------------------------------------------------------------------- registry

#: Every baseline by name.
BASELINES: dict[str, Baseline] = {
    "single_layer": single_layer,
    "one_per_layer": one_per_layer,
    "ostree_ext_basic_packing": ostree_ext_basic_packing,
    "chunkah_packing": chunkah_packing,
    "rechunk_greedy": rechunk_greedy,
}

#: How many image layers beyond ``max_layers`` each baseline may produce, as the
#: original tool does (``overshoot(plan)`` gives the actual number): ostree-ext
#: writes up to ``--max-layers`` content layers plus its commit layer (more only
#: with more ``user.component`` components than layers); rechunk the same, and
#: one more with a prior build (more again if that prior itself had more layers
#: than the budget: rechunk keeps them all).  The others always fit.
LAYER_OVERSHOOT: dict[str, int] = {
    "single_layer": 0,
    "one_per_layer": 0,
    "ostree_ext_basic_packing": 1,
    "chunkah_packing": 0,
    "rechunk_greedy": 2,
}
