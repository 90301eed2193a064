"""Stage 2: components -> at most N layers that minimise what an update downloads.

In: ``mapping.Component`` values (size, weekly change probability, kind), the
layer budget and, optionally, the previous image's plan.  Out: a ``Plan``, an
ordered list of layers of component names, stable from build to build.
"""

from __future__ import annotations

from .cost import DEFAULT_GAPS, P_CAP, WEEKLY, UpdateGaps, changes_per_year, floor_bytes, make_plan, refit
from .pack import pack
from .plan import ChunkerError, Layer, Plan, layer_of_entries

__all__ = [
    "DEFAULT_GAPS",
    "P_CAP",
    "WEEKLY",
    "ChunkerError",
    "Layer",
    "Plan",
    "UpdateGaps",
    "changes_per_year",
    "floor_bytes",
    "layer_of_entries",
    "make_plan",
    "pack",
    "refit",
]
