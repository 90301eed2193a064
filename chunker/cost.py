"""The cost model: expected bytes a client downloads per update.

A layer is downloaded again when any component in it changes, so with weekly
change probabilities ``p_c`` (independent), layer ``L`` costs
``size(L) * (1 - prod_{c in L} (1 - p_c))`` and the whole image
``E = sum_L size(L) * (1 - prod(1 - p_c))``.  Its floor, reached with one
component per layer, is ``sum_c size(c) * p_c``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from mapping import Component

from .plan import Layer, Plan

FloatArray = npt.NDArray[np.float64]


def layer_cost(sizes: FloatArray, probabilities: FloatArray) -> float:
    """Expected update bytes of one layer holding components of these sizes and
    change probabilities."""
    keep = float(np.prod(1.0 - probabilities))
    return float(sizes.sum()) * (1.0 - keep)


def expected_bytes(groups: Iterable[Sequence[int]], sizes: FloatArray, probabilities: FloatArray) -> float:
    """``E`` for a grouping given as index lists into ``sizes``/``probabilities``."""
    # log(1 - p) sums are the stable way to multiply many (1 - p) terms.
    log_keep = np.log1p(-np.minimum(probabilities, 1.0 - 1e-15))
    total = 0.0
    for g in groups:
        idx = np.fromiter(g, dtype=np.intp)
        if idx.size:
            total += float(sizes[idx].sum()) * -float(np.expm1(log_keep[idx].sum()))
    return total


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
    the cost model filled in from ``components``.  Empty groups are dropped."""
    index = {c.name: i for i, c in enumerate(components)}
    sizes = np.array([c.size for c in components], dtype=np.float64)
    probabilities = np.array([c.change_probability for c in components], dtype=np.float64)
    layers = []
    index_groups = []
    for g in groups:
        names = tuple(sorted(g))
        if not names:
            continue
        idx = [index[n] for n in names]
        index_groups.append(idx)
        p = 1.0 - float(np.prod(1.0 - probabilities[idx]))
        layers.append(Layer(names, int(sizes[idx].sum()), p))
    return Plan(
        max_layers,
        tuple(layers),
        expected_bytes(index_groups, sizes, probabilities),
        floor_bytes(sizes, probabilities),
        reserved_layers,
    )
