"""How the read-back tools write numbers and tables for people.  Every
string they print that may come from an image (names, labels, refs) goes
through ``printable``, so a table or a line stays what it looks like."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mapping.errors import show

from ..oci.imgref import parse_imgref
from ..oci.model import Digest


def printable(text: str) -> str:
    """``text`` as it is printed for people: ``mapping.errors.show``'s
    escaping (no control character, escape sequence, line break or lone
    surrogate reaches the terminal), an empty string kept empty."""
    return show(text) if text else ""


def human_size(n: float) -> str:
    """Bytes as a short size in binary units, one decimal (``512 B``,
    ``1.5 KiB``, ``137.7 MiB``): what every tool and the CLI print."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def table(rows: Sequence[Sequence[str]], left: Iterable[int], widest: int | None = None) -> list[str]:
    """Rows as aligned columns; columns in ``left`` are left-aligned, the others
    right; with ``widest``, longer cells are cut to that width with an ellipsis.
    Each cell is ``printable`` first."""
    left = set(left)
    rows = [[printable(c) for c in r] for r in rows]
    if widest is not None:
        rows = [[c if len(c) <= widest else c[: widest - 1] + "…" for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def short_digest(digest: str) -> str:
    """``sha256:`` and the first 12 hex digits (anything else ``printable``)."""
    try:
        return Digest(digest).short
    except ValueError:
        return printable(digest)


def component_names(names: Sequence[str], shown: int = 3) -> str:
    """The first ``shown`` names (``printable``), ``+N`` for the rest, ``-`` for none."""
    text = ", ".join(printable(n) for n in names[:shown])
    more = len(names) - shown
    return (text + (f" +{more}" if more > 0 else "")) or "-"


def how_to_read_layers(imgref: str) -> str:
    """What to pass so that an image's layers are read: local ones are read
    unless ``--no-layers``, the others only with ``--fetch``."""
    return "drop --no-layers" if parse_imgref(imgref).direct else "pass --fetch"
