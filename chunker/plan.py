"""The chunker's value types: ``Layer`` and ``Plan``, with their JSON form."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mapping import DebchunkError


class ChunkerError(DebchunkError):
    """A plan cannot be made or read; the message says what is at fault."""


@dataclass(frozen=True, slots=True)
class Layer:
    """One image layer: the components it holds (sorted), their total size in
    bytes and the probability that at least one of them changes in a week."""

    components: tuple[str, ...]
    size: int
    change_probability: float

    def to_json(self) -> dict[str, Any]:
        """The layer as in ``debchunk plan --json``."""
        return {
            "components": list(self.components),
            "size": self.size,
            "change_probability": self.change_probability,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Layer:
        """Read one layer of ``debchunk plan --json``."""
        try:
            return cls(
                tuple(str(c) for c in data["components"]),
                int(data.get("size", 0)),
                float(data.get("change_probability", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ChunkerError(f"layer {dict(data)!r:.80}: {e}") from None


@dataclass(frozen=True)
class Plan:
    """Components grouped into layers, in image order.

    ``layers`` are the component layers; ``reserved_layers`` more (the
    commit/metadata layer) are in the image too, so ``len(layers) +
    reserved_layers <= max_layers``.  ``expected_update_bytes`` is the cost model
    ``sum size(L) * (1 - prod(1 - p_c))`` and ``floor_bytes`` its lower bound
    ``sum size(c) * p_c``, both for a weekly update.  ``update_gaps`` is the
    distribution of update gaps the plan was made for
    (``chunker.UpdateGaps.describe``; None: not known, as for a plan read
    from an image's annotations).
    """

    max_layers: int
    layers: tuple[Layer, ...]
    expected_update_bytes: float
    floor_bytes: float = 0.0
    reserved_layers: int = 1
    update_gaps: str | None = None

    def layer_index(self) -> dict[str, int]:
        """Component name -> index of its layer."""
        return {name: i for i, layer in enumerate(self.layers) for name in layer.components}

    def groups(self) -> list[tuple[str, ...]]:
        """The component names of each layer."""
        return [layer.components for layer in self.layers]

    def to_json(self) -> dict[str, Any]:
        """The shape of ``debchunk plan --json`` (DESIGN.md)."""
        return {
            "max_layers": self.max_layers,
            "reserved_layers": self.reserved_layers,
            "layers": [layer.to_json() for layer in self.layers],
            "expected_update_bytes": self.expected_update_bytes,
            "floor_bytes": self.floor_bytes,
            **({} if self.update_gaps is None else {"update_gaps": self.update_gaps}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """Read ``debchunk plan --json`` output (or the plan label of an image)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("layers"), list):
            raise ChunkerError("not a debchunk plan: it needs a 'layers' list")
        layers = tuple(Layer.from_json(layer) for layer in data["layers"])
        seen: set[str] = set()
        for layer in layers:
            twice = seen.intersection(layer.components)
            if twice:
                raise ChunkerError(f"component {sorted(twice)[0]!r} is in two layers of the plan")
            seen.update(layer.components)
        try:
            return cls(
                int(data.get("max_layers", len(layers) + 1)),
                layers,
                float(data.get("expected_update_bytes", 0.0)),
                float(data.get("floor_bytes", 0.0)),
                int(data.get("reserved_layers", 1)),
                None if data.get("update_gaps") is None else str(data["update_gaps"]),
            )
        except (TypeError, ValueError) as e:
            raise ChunkerError(f"plan: {e}") from None

    @classmethod
    def from_groups(cls, groups: Iterable[Iterable[str]], max_layers: int = 0) -> Plan:
        """A plan holding only the grouping (sizes and probabilities unknown), as
        read back from ``ostree.components`` annotations."""
        layers = tuple(Layer(tuple(sorted(g)), 0, 0.0) for g in groups)
        return cls(max_layers or len(layers) + 1, layers, 0.0)


def layer_of_entries(
    plan: Plan, component_names: Sequence[str], owners: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """For each entry, the index of its layer in ``plan`` (-1: no component,
    as for directories).  ``owners[i]`` indexes ``component_names`` (as
    ``Mapping.owners`` indexes ``Mapping.components``); vectorised, so a
    million-file tree takes milliseconds."""
    where = plan.layer_index()
    try:
        table = np.array([where[n] for n in component_names] + [-1], dtype=np.int64)
    except KeyError as e:
        raise ChunkerError(
            f"component {e.args[0]!r} is in no layer of the plan; plan this tree again"
        ) from None
    index = np.asarray(owners, dtype=np.int64)
    # -1 owners pick the trailing -1 of the table.
    return table[np.where(index < 0, len(component_names), index)]
