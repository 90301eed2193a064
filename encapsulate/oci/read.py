"""Reading images back: any ``IMGREF`` as a manifest, a config and, when asked,
a local OCI layout holding its blobs.

``oci:DIR[:TAG]`` is read in place; ``oci-archive:FILE[:TAG]`` is unpacked into
a temporary directory; every other transport goes through skopeo: ``skopeo
inspect`` when only the manifest and config are needed, ``skopeo copy`` into a
temporary layout when the blobs are.  Temporary directories are removed when the
``open_image`` block ends, whatever happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..errors import EncapsulateError
from .layout import MEDIA_INDEX, Layout

SKOPEO_SOURCES = ("docker-archive", "docker", "registry", "containers-storage", "dir")
OCI_INDEX_TYPES = (MEDIA_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class SourceImage:
    """One image read back.  ``layout`` is None when the blobs were not fetched
    (a skopeo transport opened with ``blobs=False``)."""

    ref: str
    manifest: dict[str, Any]
    manifest_digest: str
    manifest_size: int
    config: dict[str, Any]
    layout: Layout | None

    @property
    def layers(self) -> list[dict[str, Any]]:
        """The manifest's layer descriptors."""
        layers = self.manifest.get("layers")
        return layers if isinstance(layers, list) else []

    def open_blob(self, digest: str) -> BinaryIO:
        """A blob of the image, opened for streaming."""
        if self.layout is None:
            raise EncapsulateError(f"{self.ref}: the image's blobs were not fetched")
        return self.layout.open_blob(digest)


class HashingReader(io.RawIOBase):
    """A blob read through once: its bytes go through a hash and a counter as they are read."""

    def __init__(self, source: BinaryIO, algorithm: str = "sha256") -> None:
        super().__init__()
        self._source = source
        self.hash = hashlib.new(algorithm)
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._source.read(len(view))
        view[: len(data)] = data
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def drain(self) -> None:
        """Read what is left (what a decompressor did not need)."""
        while data := self._source.read(_BLOCK):
            self.hash.update(data)
            self.size += len(data)


def chosen_manifest(index: dict[str, Any]) -> Any:
    """The entry of an image index that is read: linux/amd64, else the first
    (None when it lists none)."""
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    return next(
        (m for m in entries if (m.get("platform") or {}).get("architecture") == "amd64"),
        entries[0] if entries else None,
    )


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise EncapsulateError(f"{what}: not JSON; the image is damaged") from None
    if not isinstance(value, dict):
        raise EncapsulateError(f"{what}: not a JSON object; the image is damaged")
    return value


def _from_layout(ref: str, path: str, tag: str | None) -> SourceImage:
    layout = Layout(path, create=False)
    descriptor = layout.manifest_for(tag)
    raw = layout.read_blob(descriptor.digest)
    manifest = _json(raw, f"{ref}: manifest {descriptor.digest}")
    if manifest.get("mediaType") in OCI_INDEX_TYPES or descriptor.media_type in OCI_INDEX_TYPES:
        # A multi-platform index: the linux/amd64 image, else the first one.
        chosen = chosen_manifest(manifest)
        if chosen is None:
            raise EncapsulateError(f"{ref}: the image index lists no manifests")
        raw = layout.read_blob(str(chosen.get("digest")))
        manifest = _json(raw, f"{ref}: manifest {chosen.get('digest')}")
    config_digest = str((manifest.get("config") or {}).get("digest", ""))
    config = _json(layout.read_blob(config_digest), f"{ref}: config {config_digest}")
    return SourceImage(ref, manifest, "sha256:" + hashlib.sha256(raw).hexdigest(), len(raw), config, layout)


def _skopeo(args: list[str], ref: str) -> bytes:
    if shutil.which("skopeo") is None:
        raise EncapsulateError(
            f"{ref}: reading this transport needs skopeo; install it (apt-get install skopeo)"
        )
    proc = subprocess.run(["skopeo", *args], capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines() or ["failed"]
        raise EncapsulateError(f"{ref}: skopeo could not read it: {lines[-1].strip()}")
    return proc.stdout


def _unpack_archive(archive: str, into: str, ref: str) -> None:
    """Unpack an OCI archive, taking only plain directories and files that stay inside ``into``."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = os.path.normpath(member.name)
                if name.startswith(("/", "..")) or not (member.isfile() or member.isdir()):
                    continue
                target = os.path.join(into, name)
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    continue
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
    except FileNotFoundError:
        raise EncapsulateError(f"{ref}: no such archive; check the path") from None
    except (OSError, tarfile.TarError, EOFError) as e:
        raise EncapsulateError(f"{ref}: not a readable OCI archive ({e})") from None


def _split(ref: str) -> tuple[str, str]:
    transport, _, rest = ref.partition(":")
    if not rest:
        raise EncapsulateError(f"{ref}: give the image as TRANSPORT:LOCATION, e.g. oci:DIR[:TAG]")
    if transport not in ("oci", "oci-archive", *SKOPEO_SOURCES):
        raise EncapsulateError(
            f"{ref}: unknown transport {transport!r}; use oci:, oci-archive:, docker-archive:, registry:, "
            "docker:// or containers-storage:"
        )
    return transport, rest


@contextlib.contextmanager
def open_image(ref: str, blobs: bool = True, tls_verify: bool | None = None) -> Iterator[SourceImage]:
    """The image at ``ref``; with ``blobs``, its blobs readable through ``open_blob``.
    ``tls_verify=False`` lets skopeo read a registry over plain HTTP or with an
    unverified certificate."""
    transport, rest = _split(ref)
    insecure = tls_verify is False and transport in ("registry", "docker")
    if transport == "oci":
        path, _, tag = rest.partition(":")
        yield _from_layout(ref, path, tag or None)
        return
    skopeo_ref = "docker://" + rest if transport == "registry" else ref
    if transport != "oci-archive" and not blobs:
        tls = ["--tls-verify=false"] if insecure else []
        raw = _skopeo(["inspect", *tls, "--raw", skopeo_ref], ref)
        manifest = _json(raw, f"{ref}: manifest")
        if manifest.get("mediaType") in OCI_INDEX_TYPES:
            raw = _skopeo(["inspect", *tls, "--raw", "--override-arch", "amd64", skopeo_ref], ref)
        config = _json(_skopeo(["inspect", *tls, "--config", skopeo_ref], ref), f"{ref}: config")
        yield SourceImage(
            ref,
            _json(raw, f"{ref}: manifest"),
            "sha256:" + hashlib.sha256(raw).hexdigest(),
            len(raw),
            config,
            None,
        )
        return
    tmp = tempfile.mkdtemp(prefix="debchunk-image-")
    try:
        if transport == "oci-archive":
            path, _, tag = rest.partition(":")
            _unpack_archive(path, tmp, ref)
            yield _from_layout(ref, tmp, tag or None)
        else:
            tls = ["--src-tls-verify=false"] if insecure else []
            _skopeo(["copy", "--quiet", *tls, skopeo_ref, f"oci:{tmp}:image"], ref)
            yield _from_layout(ref, tmp, "image")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
