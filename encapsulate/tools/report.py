"""An image as one self-contained HTML page (``debchunk report``).

In: an image reference (its manifest and config are enough, so every
transport works) and, optionally, the prior image a client already holds.
Out: an HTML page with no external resources (inline CSS and SVG): a chart of
the layers, each bar as long as the layer's compressed size and coloured by
its weekly change probability ``p_L = 1 - prod(1 - p_c)`` over its components,
the summary (total size, layer count, expected download bytes ``sum size * p_L``,
as ``tools.model`` defines them)
and, with a prior, which layers a client must download, at what cost, and
which components changed (from the ``org.debchunk.components`` labels).
Images without debchunk's labels get layers and sizes only.  The page depends
only on the images: the same input gives the same bytes.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import EncapsulateError
from ..oci.imgref import DEFAULT_REGISTRY, RegistryOptions
from ..oci.labels import COMPONENTS_LABEL, ComponentChange, ComponentInfo, component_changes
from ..oci.layout import atomic_write
from ..oci.model import Digest
from ..oci.read import SourceImage, open_image
from .model import ImageLayer, ImageModel, read_model
from .text import human_size

# How many components a bar's label names, and a tooltip lists.
LABEL_COMPONENTS = 3
TOOLTIP_COMPONENTS = 40


@dataclass(frozen=True)
class ReportLayer:
    """One layer of the image as the page shows it: the model's layer, whether
    a client holding the prior downloads it (None without a prior) and which
    of its components differ from the prior."""

    layer: ImageLayer
    download: bool | None
    changed: tuple[str, ...]

    @property
    def index(self) -> int:
        """1-based position in the manifest."""
        return self.layer.index

    @property
    def digest(self) -> Digest:
        """The layer's blob digest."""
        return self.layer.digest

    @property
    def size(self) -> int:
        """Compressed size."""
        return self.layer.size

    @property
    def components(self) -> tuple[str, ...]:
        """Component names, largest first."""
        return self.layer.components

    @property
    def change_probability(self) -> float | None:
        """Weekly change probability; None when unknown."""
        return self.layer.change_probability

    @property
    def expected_bytes(self) -> float:
        """Bytes this layer costs per week, on average (``tools.model``)."""
        return self.layer.expected_download_bytes or 0.0


@dataclass(frozen=True)
class Report:
    """What the page shows: the image's model, compared with a prior's."""

    image: ImageModel
    layers: tuple[ReportLayer, ...]
    prior_ref: str | None = None
    prior_digest: str | None = None
    # None when unknown: no prior, or an image without the components label.
    # Each added or changed component's ``layer`` is its layer in this image.
    changes: tuple[ComponentChange, ...] | None = None

    @property
    def ref(self) -> str:
        """The image reference as given."""
        return self.image.ref

    @property
    def manifest_digest(self) -> str:
        """The digest of the image's manifest."""
        return self.image.manifest_digest

    @property
    def created(self) -> str:
        """The config's ``created`` (empty when absent)."""
        return self.image.created

    @property
    def architecture(self) -> str:
        """The config's ``architecture`` (empty when absent)."""
        return self.image.architecture

    @property
    def components(self) -> dict[str, ComponentInfo]:
        """The image's components label, by name."""
        return self.image.components

    @property
    def has_components(self) -> bool:
        """Whether the image records which components each layer holds."""
        return self.image.has_components

    @property
    def total_bytes(self) -> int:
        """Compressed size of the layers, each distinct blob once."""
        return self.image.size

    @property
    def expected_download_bytes(self) -> float | None:
        """The model's expected download bytes per week (``tools.model``)."""
        return self.image.expected_download_bytes

    @property
    def download_bytes(self) -> int | None:
        """What a client holding the prior image downloads; None without a prior."""
        if self.prior_ref is None:
            return None
        return sum({layer.digest: layer.size for layer in self.layers if layer.download}.values())


def build_report(image: SourceImage, prior: SourceImage | None = None) -> Report:
    """The report of ``image``, compared with ``prior`` when given.  Damaged
    debchunk labels are left out with a warning."""
    model = read_model(image, lenient=True)
    layer_of = {n: layer.index for layer in model.layers for n in layer.components}
    changes = None
    have: set[str] = set()
    if prior is not None:
        before = read_model(prior, lenient=True)
        have = {layer.digest for layer in before.layers}
        if before.components and model.components:
            changes = component_changes(before.components, model.components, layer_of)
    changed_names = {c.name for c in changes or () if c.status != "removed"}
    layers = tuple(
        ReportLayer(
            layer,
            None if prior is None else layer.digest not in have,
            tuple(n for n in layer.components if n in changed_names),
        )
        for layer in model.layers
    )
    return Report(
        model,
        layers,
        None if prior is None else prior.ref,
        None if prior is None else prior.manifest_digest,
        changes,
    )


def read_report(
    imgref: str, prior: str | None = None, registry: RegistryOptions = DEFAULT_REGISTRY
) -> Report:
    """Read ``imgref`` (and ``prior``) and build their report."""
    with open_image(imgref, registry, blobs=False) as image:
        if prior is None:
            return build_report(image)
        with open_image(prior, registry, blobs=False) as before:
            return build_report(image, before)


# --- rendering ---------------------------------------------------------------


def _clean(text: str) -> str:
    """Text from the image, printable: control characters and lone surrogates
    become U+FFFD (newlines are kept for tooltips)."""
    return "".join(ch if ch.isprintable() or ch in " \n" else "\ufffd" for ch in text)


def _e(text: object) -> str:
    return html.escape(_clean(str(text)), quote=True)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Colour ramp for the weekly change probability, on a log scale from P_MIN to
# 1 so that the usual range of packages (0.01 to 0.3) is told apart.
_RAMP = (
    (0.0, (43, 108, 176)),
    (0.35, (56, 161, 105)),
    (0.6, (214, 158, 46)),
    (0.8, (221, 107, 32)),
    (1.0, (197, 48, 48)),
)
P_MIN = 0.002
UNKNOWN_COLOUR = "#b8b8b8"
LEGEND_TICKS = (0.002, 0.01, 0.05, 0.2, 1.0)


def _scale(p: float) -> float:
    """Where ``p`` sits on the colour scale, 0 to 1."""
    if p <= P_MIN:
        return 0.0
    return min(1.0, math.log(p / P_MIN) / math.log(1 / P_MIN))


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{round(v):02x}" for v in rgb)


def probability_colour(p: float | None) -> str:
    """The fill of a bar whose layer changes with probability ``p`` per week."""
    if p is None:
        return UNKNOWN_COLOUR
    t = _scale(p)
    for (t0, c0), (t1, c1) in itertools.pairwise(_RAMP):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            return _hex([a + (z - a) * f for a, z in zip(c0, c1, strict=True)])
    return _hex(_RAMP[-1][1])


def _p_text(p: float | None) -> str:
    return "–" if p is None else f"{p:.3f}"


def _component_line(c: str, report: Report, changed: Iterable[str]) -> str:
    info = report.components.get(c)
    mark = " [changed]" if c in changed else ""
    if info is None:
        return f"{c}{mark}"
    version = f" {info.version}" if info.version else ""
    return f"{c}{version}: {human_size(info.size)}, p={info.change_probability:.3f}{mark}"


def _tooltip(layer: ReportLayer, report: Report) -> str:
    lines = [f"Layer {layer.index}: {human_size(layer.size)} compressed ({layer.size:,} bytes)"]
    if layer.change_probability is not None:
        lines.append(
            f"changes with p={layer.change_probability:.3f} per week; "
            f"expected {human_size(layer.expected_bytes)} per update"
        )
    if layer.download is not None:
        lines.append("downloaded by a client holding the prior" if layer.download else "already held")
    lines.append(layer.digest)
    if layer.components:
        lines.append(f"{len(layer.components)} components (uncompressed size):")
        lines.extend(
            "  " + _component_line(c, report, layer.changed) for c in layer.components[:TOOLTIP_COMPONENTS]
        )
        if len(layer.components) > TOOLTIP_COMPONENTS:
            lines.append(f"  … and {len(layer.components) - TOOLTIP_COMPONENTS} more")
    elif report.components:
        lines.append("no components: directories, or the commit and its metadata")
    return "\n".join(lines)


def _label_names(layer: ReportLayer) -> list[str]:
    """The components a bar names: changed ones first, then the largest."""
    first = list(layer.changed[:LABEL_COMPONENTS])
    rest = [c for c in layer.components if c not in first]
    return first + rest[: max(0, LABEL_COMPONENTS - len(first))]


# Chart geometry (SVG user units, 1 unit = 1 CSS px at full width).
WIDTH = 1120
ROW = 22
BAR_HEIGHT = 15
TOP = 26
X_INDEX = 34
X_MARK = 48
X_BAR = 62
BAR_MAX = 470
X_SIZE = X_BAR + BAR_MAX + 78
X_P = X_SIZE + 14
X_NAMES = X_P + 56


def render_chart(report: Report) -> str:
    """The layers chart as inline SVG: one ``rect.layer-bar`` per layer."""
    largest = max((layer.size for layer in report.layers), default=0) or 1
    height = TOP + ROW * len(report.layers) + 8
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}"'
        f' aria-label="layers of {_e(report.ref)}">',
        f'<text class="head" x="{X_INDEX}" y="16" text-anchor="end">#</text>',
        f'<text class="head" x="{X_BAR}" y="16">compressed size</text>',
        f'<text class="head" x="{X_SIZE}" y="16" text-anchor="end">size</text>',
    ]
    if report.components:
        out.append(f'<text class="head" x="{X_P}" y="16">p/week</text>')
    if report.has_components:
        out.append(f'<text class="head" x="{X_NAMES}" y="16">components (largest first)</text>')
    for row, layer in enumerate(report.layers):
        y = TOP + row * ROW
        mid = y + BAR_HEIGHT / 2 + 4
        length = max(2.0, layer.size / largest * BAR_MAX)
        download = "" if layer.download is None else f' data-download="{int(layer.download)}"'
        classes = "layer" + (" download" if layer.download else "")
        out.append(f'<g class="{classes}" data-layer="{layer.index}"{download}>')
        out.append(f"<title>{_e(_tooltip(layer, report))}</title>")
        if row % 2:
            out.append(f'<rect class="stripe" x="0" y="{y - 3}" width="{WIDTH}" height="{ROW}"/>')
        out.append(f'<text x="{X_INDEX}" y="{mid:.1f}" text-anchor="end">{layer.index}</text>')
        if layer.download:
            out.append(f'<text class="mark" x="{X_MARK}" y="{mid:.1f}" text-anchor="middle">↓</text>')
        p = "" if layer.change_probability is None else f' data-p="{layer.change_probability:.6f}"'
        out.append(
            f'<rect class="layer-bar" data-layer="{layer.index}" data-size="{layer.size}"{p}{download}'
            f' x="{X_BAR}" y="{y}" width="{length:.1f}" height="{BAR_HEIGHT}" rx="2"'
            f' fill="{probability_colour(layer.change_probability)}"/>'
        )
        out.append(f'<text x="{X_SIZE}" y="{mid:.1f}" text-anchor="end">{_e(human_size(layer.size))}</text>')
        if report.components:
            out.append(f'<text x="{X_P}" y="{mid:.1f}">{_p_text(layer.change_probability)}</text>')
        shown = _label_names(layer)
        parts = []
        for name in shown:
            text = _e(_short(name, 30))
            if name in layer.changed:
                parts.append(f'<tspan class="changed" data-component="{_e(name)}">Δ {text}</tspan>')
            else:
                parts.append(f'<tspan data-component="{_e(name)}">{text}</tspan>')
        names = ", ".join(parts)
        if len(layer.components) > len(shown):
            names += f'<tspan class="more"> +{len(layer.components) - len(shown)} more</tspan>'
        if not layer.components and report.components:
            names = '<tspan class="more">no components</tspan>'
        out.append(f'<text class="names" x="{X_NAMES}" y="{mid:.1f}">{names}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def render_legend(report: Report) -> str:
    """The colour scale (and the download mark, with a prior) as inline SVG."""
    width, x0, bar = 760, 24, 300
    stops = "".join(f'<stop offset="{t:.2f}" stop-color="{_hex(c)}"/>' for t, c in _RAMP)
    ticks = []
    for p in LEGEND_TICKS:
        x = x0 + _scale(p) * bar
        label = f"≤{p:g}" if p == P_MIN else f"{p:g}"
        ticks.append(
            f'<line x1="{x:.1f}" y1="22" x2="{x:.1f}" y2="27"/>'
            f'<text x="{x:.1f}" y="39" text-anchor="middle">{label}</text>'
        )
    extra = (
        f'<rect x="{x0 + bar + 30}" y="8" width="14" height="14" fill="{UNKNOWN_COLOUR}"/>'
        f'<text x="{x0 + bar + 50}" y="19">unknown</text>'
    )
    if report.prior_ref is not None:
        extra += (
            f'<text class="mark" x="{x0 + bar + 130}" y="20" text-anchor="middle">↓</text>'
            f'<text x="{x0 + bar + 142}" y="19">download; <tspan class="changed">Δ</tspan> changed</text>'
        )
    return (
        f'<svg class="legend" viewBox="0 0 {width} 44" width="{width}" height="44" role="img"'
        ' aria-label="colour scale: change probability per week">'
        f'<defs><linearGradient id="ramp">{stops}</linearGradient></defs>'
        f'<rect x="{x0}" y="8" width="{bar}" height="14" fill="url(#ramp)"/>{"".join(ticks)}{extra}</svg>'
    )


CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b;
       background: #fff; margin: 16px 24px; max-width: 1140px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 22px 0 6px; }
.ref { font-family: ui-monospace, monospace; font-size: 13px; color: #444; word-break: break-all; }
.summary { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; padding: 0; }
.summary div { border: 1px solid #ddd; border-radius: 6px; padding: 6px 12px; min-width: 130px; }
.summary dt { font-size: 12px; color: #555; } .summary dd { margin: 0; font-size: 18px; font-weight: 600; }
svg text { font: 12px system-ui, sans-serif; fill: #1b1b1b; }
svg text.head { font-weight: 600; fill: #555; }
svg .stripe { fill: #f4f5f7; }
svg.legend line { stroke: #555; }
svg .mark { font-weight: 700; font-size: 15px; fill: #c0392b; }
svg .layer.download .layer-bar { stroke: #1b1b1b; stroke-width: 1.5; }
svg .layer:hover .layer-bar { stroke: #000; stroke-width: 2; }
svg .more { fill: #777; }
.changed { font-weight: 700; fill: #c0392b; color: #c0392b; }
table { border-collapse: collapse; font-size: 13px; margin-top: 4px; }
th, td { border-bottom: 1px solid #e2e2e2; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f5f7; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
code { font-size: 12px; } .note { color: #555; font-size: 13px; }
"""


def _summary(report: Report) -> str:
    items = [
        ("total size (compressed)", human_size(report.total_bytes), f"{report.total_bytes:,} bytes"),
        ("layers", str(len(report.layers)), ""),
    ]
    e = report.expected_download_bytes
    if e is not None:
        share = f"{100 * e / report.total_bytes:.1f}% of the image" if report.total_bytes else ""
        items.append(("expected update, per week", human_size(e), share))
    if report.components:
        items.append(("components", str(len(report.components)), ""))
    if report.download_bytes is not None:
        count = sum(1 for layer in report.layers if layer.download)
        share = f"{100 * report.download_bytes / report.total_bytes:.1f}%" if report.total_bytes else "0%"
        items.append(
            (
                "download from the prior",
                human_size(report.download_bytes),
                f"{count} of {len(report.layers)} layers, {share}",
            )
        )
    if report.changes is not None:
        counts = {s: sum(1 for c in report.changes if c.status == s) for s in ("changed", "added", "removed")}
        items.append(
            (
                "components changed",
                str(counts["changed"]),
                f"{counts['added']} added, {counts['removed']} removed",
            )
        )
    cells = "".join(
        f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd>{f'<small>{_e(note)}</small>' if note else ''}</div>"
        for k, v, note in items
    )
    return f'<dl class="summary">{cells}</dl>'


def _changes_table(report: Report) -> str:
    if report.prior_ref is None:
        return ""
    if report.changes is None:
        return (
            '<h2>Changed components</h2><p class="note">Unknown: the image or the prior has no '
            f"<code>{_e(COMPONENTS_LABEL)}</code> label: one of them was not written by debchunk.</p>"
        )
    if not report.changes:
        return '<h2>Changed components</h2><p class="note">None: every component is as in the prior.</p>'
    rows = []
    for c in report.changes:
        old_v = (c.old.version if c.old else None) or ""
        new_v = (c.new.version if c.new else None) or ""
        versions = f"{_e(old_v)} → {_e(new_v)}" if old_v or new_v else "–"
        old_s = human_size(c.old.size) if c.old else "–"
        new_s = human_size(c.new.size) if c.new else "–"
        rows.append(
            f'<tr class="change {c.status}" data-component="{_e(c.name)}">'
            f'<td class="changed">{_e(c.name)}</td>'
            f"<td>{c.status}</td><td>{versions}</td>"
            f'<td class="num">{old_s} → {new_s}</td><td class="num">{c.layer or "–"}</td></tr>'
        )
    return (
        "<h2>Changed components</h2><table><thead><tr><th>component</th><th>change</th><th>version</th>"
        f"<th>size (uncompressed)</th><th>layer</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _layers_table(report: Report) -> str:
    prior = report.prior_ref is not None
    head = ["#", "size"]
    head += ["p/week", "expected/week"] if report.components else []
    head += ["download"] if prior else []
    head += ["digest"]
    head += ["components"] if report.has_components else []
    rows = []
    for layer in report.layers:
        cells = [f'<td class="num">{layer.index}</td><td class="num">{human_size(layer.size)}</td>']
        if report.components:
            expected = human_size(layer.expected_bytes) if layer.change_probability is not None else "–"
            cells.append(
                f'<td class="num">{_p_text(layer.change_probability)}</td><td class="num">{expected}</td>'
            )
        if prior:
            cells.append(f"<td>{'yes' if layer.download else 'no'}</td>")
        cells.append(f'<td><code title="{_e(layer.digest)}">{_e(layer.digest.hex[:12])}</code></td>')
        if report.has_components:
            names = [
                f'<span class="changed">{_e(n)}</span>' if n in layer.changed else _e(n)
                for n in layer.components
            ]
            listed = ", ".join(names) or "–"
            if len(names) > 8:
                listed = f"<details><summary>{len(names)} components</summary>{listed}</details>"
            cells.append(f"<td>{listed}</td>")
        rows.append(f'<tr data-layer="{layer.index}">{"".join(cells)}</tr>')
    heads = "".join(f"<th>{h}</th>" for h in head)
    return f"<table><thead><tr>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(report: Report) -> str:
    """The whole page."""
    facts = [f"manifest <code>{_e(report.manifest_digest)}</code>"]
    if report.created:
        facts.append(f"created {_e(report.created)}")
    if report.architecture:
        facts.append(_e(report.architecture))
    prior = ""
    if report.prior_ref is not None:
        prior = (
            f'<p class="ref">compared with {_e(report.prior_ref)} '
            f"(<code>{_e(report.prior_digest or '')}</code>)</p>"
        )
    if report.components:
        explain = (
            "Bar length: compressed size. Colour: the layer's chance to change in a week, "
            "1 − ∏(1 − p) over its components. Hover over a layer for all its components."
        )
    elif report.has_components:
        explain = (
            "Bar length: compressed size. The image names each layer's components but not how often "
            f"they change (no {COMPONENTS_LABEL} label)."
        )
    else:
        explain = (
            "This image has no debchunk labels: layers and sizes only. Hover over a layer for its digest."
        )
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n',
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'\">\n",
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
            f"<title>debchunk report: {_e(report.ref)}</title>\n<style>{CSS}</style></head>\n<body>\n",
            f'<h1>Image layers</h1><p class="ref">{_e(report.ref)}</p>\n',
            f'<p class="note">{" · ".join(facts)}</p>\n{prior}\n',
            _summary(report),
            f'\n<h2>Layers</h2><p class="note">{_e(explain)}</p>\n',
            render_legend(report) if report.components else "",
            "\n",
            render_chart(report),
            "\n",
            _changes_table(report),
            "\n<h2>Layer details</h2>\n",
            _layers_table(report),
            "\n</body></html>\n",
        ]
    )


def write_text_atomic(path: str, text: str) -> None:
    """Write ``path`` through a temporary file beside it and a rename: on any
    failure an existing file is left as it was."""
    try:
        with atomic_write(path, ".tmp-report-", ".html") as f:
            f.write(text.encode("utf-8"))
    except OSError as e:
        raise EncapsulateError(f"{path}: cannot write the report: {e.strerror}; choose another -o") from None


def write_report(
    imgref: str, output: str, prior: str | None = None, registry: RegistryOptions = DEFAULT_REGISTRY
) -> Report:
    """Read the images and write the page to ``output``."""
    report = read_report(imgref, prior, registry)
    write_text_atomic(output, render_html(report))
    return report
