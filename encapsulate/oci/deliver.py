"""Where images go: ``oci:`` and ``oci-archive:`` written here, every other
transport through ``skopeo copy`` from a temporary OCI layout.

An ``oci-archive:`` is a tar of an OCI layout; it is built next to the
destination and renamed into place, so an existing archive is replaced whole
or not at all.  Temporary layouts are removed whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator

from ..errors import EncapsulateError
from .imgref import ImageRef
from .layout import atomic_write
from .skopeo import skopeo_copy

# The tag written when an oci:/oci-archive: destination names none.
DEFAULT_TAG = "latest"


@contextlib.contextmanager
def _temporary_dir(near: str) -> Iterator[str]:
    parent = os.path.dirname(os.path.abspath(near)) or "."
    try:
        path = tempfile.mkdtemp(prefix=".tmp-debchunk-", dir=parent)
    except OSError as e:
        raise EncapsulateError(
            f"{parent}: cannot write ({e.strerror}); choose a writable destination"
        ) from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _archive(layout: str, destination: str) -> None:
    """Tar the layout (sorted, fixed metadata) and put it at ``destination``."""
    try:
        with (
            atomic_write(destination, ".tmp-archive-") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for dirpath, dirnames, filenames in os.walk(layout):
                dirnames.sort()
                for name in sorted(dirnames) + sorted(filenames):
                    full = os.path.join(dirpath, name)
                    info = tar.gettarinfo(full, os.path.relpath(full, layout))
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    info.mode = 0o755 if info.isdir() else 0o644
                    if info.isfile():
                        with open(full, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
    except OSError as e:
        raise EncapsulateError(f"{destination}: cannot write the archive ({e.strerror})") from None


def deliver(
    ref: ImageRef,
    write: Callable[[str, str], object],
    *,
    authfile: str | None = None,
    tls_verify: bool | None = None,
) -> None:
    """Write the image with ``write(layout_dir, tag)`` and put it where ``ref``
    says (``oci:``/``oci-archive:`` without a tag: ``latest``)."""
    tag = ref.tag or DEFAULT_TAG
    if ref.transport == "oci":
        write(ref.location, tag)
        return
    with _temporary_dir(ref.location if ref.transport == "oci-archive" else tempfile.gettempdir()) as tmp:
        layout = os.path.join(tmp, "layout")
        write(layout, tag)
        if ref.transport == "oci-archive":
            _archive(layout, ref.location)
        else:
            skopeo_copy(ImageRef("oci", layout, tag), ref, dest_tls_verify=tls_verify, dest_authfile=authfile)
