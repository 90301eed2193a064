"""What the commands print: the mapping, the plan and a build's result as
tables and lines for people, or as JSON (``--json``).  Names in tables and
lines are escaped (``tools.text.printable``); JSON escapes them itself
(``json.dumps`` writes ASCII, every control character and surrogate as
``\\uXXXX``), so both stay what they look like."""

from __future__ import annotations

import json
from typing import Any

from chunker import Plan
from mapping import Mapping

from ..build import BuildResult
from ..tools.text import component_names, human_size, printable, table


def format_mapping(mapping: Mapping) -> str:
    """The mapping as a table, components by size, largest first."""
    rows = [("COMPONENT", "KIND", "PACKAGES", "SIZE", "FILES", "P(WEEK)")]
    for c in mapping.components:
        rows.append(
            (
                c.name,
                c.kind,
                component_names(c.packages, 3) or "-",
                human_size(c.size),
                str(c.files),
                f"{c.change_probability:.3f}",
            )
        )
    lines = table(rows, left=(0, 1, 2), widest=48)
    total = sum(c.size for c in mapping.components)
    by_kind: dict[str, int] = {}
    for c in mapping.components:
        by_kind[c.kind] = by_kind.get(c.kind, 0) + c.size
    summary = ", ".join(
        f"{k} {100 * v / (total or 1):.1f}%" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])
    )
    lines.append("")
    lines.append(
        f"{len(mapping.components)} components, {human_size(total)} of unique content "
        f"({summary}); dpkg database: {printable(mapping.admindir or 'none')}"
    )
    if mapping.reference_date:
        lines.append(f"change probabilities relative to {mapping.reference_date.date().isoformat()}")
    return "\n".join(lines)


def format_plan(plan: Plan) -> str:
    """The plan as a table, one row per layer, and its expected update bytes."""
    rows = [("LAYER", "COMPONENTS", "SIZE", "P(WEEK)", "E(BYTES)")]
    for i, layer in enumerate(plan.layers, 1):
        rows.append(
            (
                str(i),
                component_names(layer.components, 4),
                human_size(layer.size),
                f"{layer.change_probability:.3f}",
                human_size(layer.size * layer.change_probability),
            )
        )
    lines = table(rows, left=(1,), widest=60)
    total = len(plan.layers) + plan.reserved_layers
    ratio = plan.expected_update_bytes / plan.floor_bytes if plan.floor_bytes else 1.0
    lines.append("")
    lines.append(
        f"{len(plan.layers)} content layers + {plan.reserved_layers} metadata = {total} of at most "
        f"{plan.max_layers}; expected update {human_size(plan.expected_update_bytes)} per week "
        f"(floor {human_size(plan.floor_bytes)}, {ratio:.2f}x)"
        + ("" if plan.update_gaps is None else f"; planned for update gaps {plan.update_gaps}")
    )
    return "\n".join(lines)


def format_result(result: BuildResult) -> str:
    """One line for the image written (and one for the comparison, when asked)."""
    lines = []
    if result.image is not None:
        layers = result.image.layers
        total = sum(b.descriptor.size for b in layers)
        reused = sum(b.reused for b in layers)
        where = printable(str(result.config.destination))
        extra = f" ({reused} already in the layout)" if reused else ""
        size = human_size(total)
        lines.append(f"{where}: {result.image.manifest.digest}, {len(layers)} layers, {size}{extra}")
    if result.prior_source is not None:
        lines.append(
            f"previous build: the image {printable(result.prior_source)} held "
            "(its layers kept where that pays; --no-prior plans from scratch)"
        )
    if result.sbom_artifact is not None:
        lines.append(
            f"SBOM {printable(result.config.sbom or '')}: attached to the image as {result.sbom_artifact}"
        )
    c = result.comparison
    if c is not None:
        lines.append(
            f"compared with {printable(str(c.imgref))}: {c.reused_layers} of {c.layers} layers reused, "
            f"download {human_size(c.download_bytes)} of {human_size(c.total_bytes)}"
        )
    return "\n".join(lines)


def json_text(value: Any) -> str:
    """``value`` as the indented JSON the commands print."""
    return json.dumps(value, indent=1)


def mapping_output(mapping: Mapping, as_json: bool) -> str:
    """What ``debchunk map`` prints."""
    return json_text(mapping.to_json()) if as_json else format_mapping(mapping)


def plan_output(plan: Plan, as_json: bool) -> str:
    """What ``debchunk plan`` (and a dry run) prints."""
    return json_text(plan.to_json()) if as_json else format_plan(plan)


def build_output(result: BuildResult, *, as_json: bool, quiet: bool) -> str:
    """What ``container-encapsulate`` prints: the plan of a dry run, the
    image's digests and layers as JSON, or its line (and the comparison's;
    ``quiet``: only the comparison's)."""
    if result.config.dry_run:
        return plan_output(result.plan, as_json)
    if as_json:
        return json_text(result.to_json())
    text = format_result(result)
    if quiet:
        text = "\n".join(line for line in text.splitlines() if line.startswith("compared with "))
    return text
