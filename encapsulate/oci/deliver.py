"""Where images go: ``oci:`` and ``oci-archive:`` written here, every other
transport through ``skopeo copy`` from a temporary OCI layout.

An ``oci-archive:`` is a tar of an OCI layout; it is built next to the
destination and renamed into place, so an existing archive is replaced whole
or not at all.  Temporary layouts are removed whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import EncapsulateError
from .layout import atomic_write

SKOPEO_DESTINATIONS = ("docker-archive", "docker", "registry", "containers-storage", "dir")


@dataclass(frozen=True)
class ImageRef:
    """A parsed ``IMGREF``."""

    transport: str
    location: str
    tag: str

    @property
    def skopeo(self) -> str:
        """The reference as skopeo spells it."""
        if self.transport == "registry":
            return f"docker://{self.location}"
        if self.transport == "docker":
            return f"docker:{self.location}"
        return f"{self.transport}:{self.location}"


def parse_imgref(imgref: str) -> ImageRef:
    """Split ``transport:location[:tag]``; the tag of ``oci:``/``oci-archive:``
    defaults to ``latest``, other transports keep theirs in the location."""
    transport, _, rest = imgref.partition(":")
    if not rest:
        raise EncapsulateError(f"{imgref}: give the destination as TRANSPORT:LOCATION, e.g. oci:DIR[:TAG]")
    if transport in ("oci", "oci-archive"):
        path, _, tag = rest.partition(":")
        if not path:
            raise EncapsulateError(f"{imgref}: no path; give {transport}:PATH[:TAG]")
        return ImageRef(transport, path, tag or "latest")
    if transport in SKOPEO_DESTINATIONS:
        return ImageRef(transport, rest, "latest")
    raise EncapsulateError(
        f"{imgref}: unknown transport {transport!r}; use oci:, oci-archive:, docker-archive:, registry:, "
        "docker:// or containers-storage:"
    )


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


def _skopeo_copy(source: str, destination: ImageRef, authfile: str | None, tls_verify: bool | None) -> None:
    if shutil.which("skopeo") is None:
        raise EncapsulateError(
            f"{destination.transport}: writing there needs skopeo; install it (apt-get install skopeo) "
            "or write oci:DIR"
        )
    args = ["skopeo", "copy", "--quiet"]
    if authfile is not None:
        args.append(f"--dest-authfile={authfile}")
    if tls_verify is not None and destination.transport in ("registry", "docker"):
        args.append(f"--dest-tls-verify={'true' if tls_verify else 'false'}")
    args += [source, destination.skopeo]
    proc = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        # skopeo logs as: time="..." level=fatal msg="what happened"
        match = re.search(r'msg="(.*)"$', reason)
        if match:
            reason = match.group(1).replace('\\"', '"')
        raise EncapsulateError(f"{destination.skopeo}: skopeo copy failed: {reason}")


def deliver(
    ref: ImageRef,
    write: Callable[[str, str], object],
    *,
    authfile: str | None = None,
    tls_verify: bool | None = None,
) -> None:
    """Write the image with ``write(layout_dir, tag)`` and put it where ``ref`` says."""
    if ref.transport == "oci":
        write(ref.location, ref.tag)
        return
    with _temporary_dir(ref.location if ref.transport == "oci-archive" else tempfile.gettempdir()) as tmp:
        layout = os.path.join(tmp, "layout")
        write(layout, ref.tag)
        if ref.transport == "oci-archive":
            _archive(layout, ref.location)
        else:
            _skopeo_copy(f"oci:{layout}:{ref.tag}", ref, authfile, tls_verify)
