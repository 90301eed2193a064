"""libostree's Python bindings, or one clear error when this Python lacks them.

Reading and writing OSTree commits (``--repo REPO REF``, ``--format ostree``,
``--from IMGREF --format ostree``) goes through libostree by GObject
introspection: ``gi`` from Debian's python3-gi and the ``OSTree-1.0`` typelib
from gir1.2-ostree-1.0.  Neither is on PyPI, so a ``pip install`` into a venv
made without ``--system-site-packages`` has neither; there the root-tree and
image paths (``--rootfs``, ``--from``, ``inspect``, ``diff``, ``validate``,
``report``) work and the commit paths stop at import with
``MissingLibostreeError``, one line saying what to install.

The modules that need libostree import ``Gio``, ``GLib`` and ``OSTree`` from
here, and are themselves imported only on the commit paths.
"""

from __future__ import annotations

from typing import Any

from .errors import MissingLibostreeError

# What to do about it, for either missing part.
HINT = (
    "install python3-gi and gir1.2-ostree-1.0 with apt, and run debchunk with Debian's python3 "
    "or from a venv made with --system-site-packages (--rootfs, and --from with plain layers, need neither)"
)


def _bindings() -> tuple[Any, Any, Any]:
    try:
        import gi
    except ImportError as e:
        raise MissingLibostreeError(
            "OSTree commits need libostree's Python bindings, and this Python has no 'gi' module",
            where="python3-gi",
            hint=HINT,
        ) from e
    try:
        gi.require_version("OSTree", "1.0")
        from gi.repository import Gio, GLib, OSTree
    except (ImportError, ValueError) as e:
        # ValueError: "Namespace OSTree not available" (no typelib).
        raise MissingLibostreeError(
            "OSTree commits need libostree's introspection data (OSTree-1.0 typelib), "
            f"which gi cannot load: {e}",
            where="gir1.2-ostree-1.0",
            hint=HINT,
        ) from e
    return Gio, GLib, OSTree


Gio, GLib, OSTree = _bindings()
