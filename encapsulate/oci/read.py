"""Reading images back: any ``IMGREF`` as a manifest, a config and, when asked,
a local OCI layout holding its blobs: the one reader of images that
``inspect``, ``diff``, ``validate``, ``report`` and ``--prior`` share.

Of an image index (a multi-platform image), the linux/amd64 image is read,
or the architecture asked for; an index without it fails naming the
platforms it has.  ``oci:DIR[:TAG]`` is read in place; ``oci-archive:FILE[:TAG]``
is read in place when only single blobs may be needed, and unpacked into a
temporary directory when its layers are read whole; every other transport goes
through skopeo: ``skopeo inspect`` when only the manifest and config are
needed (a registry's single blobs then fetched by ``RegistryBlobs``), ``skopeo
copy`` into a temporary layout when the blobs are.  Temporary directories are removed when the
``open_image`` block ends, whatever happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, NamedTuple, Protocol

from ..errors import EncapsulateError
from .imgref import ImageRef, parse_imgref
from .layout import MEDIA_INDEX, Descriptor, Layout, tagged_manifest
from .registry import RegistryBlobs
from .skopeo import skopeo_copy, skopeo_inspect

# The platform read from an image index unless another is asked for.
DEFAULT_ARCH = "amd64"
OCI_INDEX_TYPES = (MEDIA_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")
_BLOCK = 1 << 20


class BlobStore(Protocol):
    """Where single blobs of an image are read from (a ``Layout``, an
    ``ArchiveBlobs``, a ``RegistryBlobs``)."""

    def open_blob(self, digest: str) -> BinaryIO: ...


class BlobExtent(NamedTuple):
    """Where a blob's bytes are in a file on this machine: its path, or the
    file itself when its store holds it open (``fd``)."""

    path: str
    offset: int
    size: int
    fd: int | None = None


def blob_extent(store: BlobStore, digest: str) -> BlobExtent | None:
    """Where ``store`` keeps the blob ``digest`` on this machine (a layout's
    blob file, an archive's member), so it can be copied without reading it
    through Python; None for a store that has no such place (a registry) or
    a blob it lacks."""
    try:
        if isinstance(store, Layout):
            path = store.blob_path(digest)
            return BlobExtent(path, 0, os.stat(path).st_size)
        if isinstance(store, ArchiveBlobs):
            return store.extent(digest)
    except (OSError, EncapsulateError):
        return None
    return None


class _LayoutLike(BlobStore, Protocol):
    def manifest_for(self, tag: str | None) -> Descriptor: ...

    def read_blob(self, digest: str) -> bytes: ...


class _Slice(io.RawIOBase):
    """``size`` bytes of an open file from ``offset``, read by ``pread``
    (several slices of one file read at once in threads)."""

    def __init__(self, owner: object, fd: int, offset: int, size: int) -> None:
        super().__init__()
        # What closes ``fd`` when it goes: kept while the slice is read.
        self._owner = owner
        self._fd = fd
        self._offset = offset
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: self._left]
        n = os.preadv(self._fd, [view], self._offset)
        self._offset += n
        self._left -= n
        return n


class ArchiveBlobs:
    """The blobs of an uncompressed OCI archive read in place: its headers are
    read once, a blob is then read from its offset (several at once), and
    nothing is unpacked.  The archive stays open while this object lives, so
    an archive renamed over it meanwhile (another build's) is not read."""

    def __init__(self, path: str, where: str) -> None:
        self.path = path
        self.where = where
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise EncapsulateError(f"{where}: no such archive; check the path") from None
        except OSError as e:
            raise EncapsulateError(f"{where}: not a readable OCI archive ({e.strerror})") from None
        weakref.finalize(self, os.close, self.fd)
        try:
            with os.fdopen(os.dup(self.fd), "rb") as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
                for member in tar:
                    if member.isfile() and not member.sparse:
                        self._members[os.path.normpath(member.name)] = member
        except (OSError, tarfile.TarError, EOFError) as e:
            raise EncapsulateError(f"{where}: not a readable OCI archive ({e})") from None
        if "oci-layout" not in self._members:
            raise EncapsulateError(f"{where}: not an OCI archive (no oci-layout file)")

    def _open(self, name: str) -> BinaryIO:
        member = self._members.get(name)
        if member is None:
            raise EncapsulateError(f"{self.where}: no {name} in the archive; the image is damaged")
        return io.BufferedReader(_Slice(self, self.fd, member.offset_data, member.size), _BLOCK)

    def open_blob(self, digest: str) -> BinaryIO:
        """A blob, opened for streaming."""
        return self._open(self._blob_name(digest))

    @staticmethod
    def _blob_name(digest: str) -> str:
        algorithm, _, hexdigest = digest.partition(":")
        return f"blobs/{algorithm}/{os.path.basename(hexdigest)}"

    def extent(self, digest: str) -> BlobExtent | None:
        """Where the blob ``digest`` is in the archive file (None: not there)."""
        member = self._members.get(self._blob_name(digest))
        return None if member is None else BlobExtent(self.path, member.offset_data, member.size, self.fd)

    def read_blob(self, digest: str) -> bytes:
        """The content of a (small) blob."""
        with self.open_blob(digest) as f:
            return f.read()

    def manifest_for(self, tag: str | None) -> Descriptor:
        """The manifest descriptor tagged ``tag`` (or the only one)."""
        with self._open("index.json") as f:
            index = _json(f.read(), f"{self.where}: index.json")
        return tagged_manifest(index, tag, self.where)


@dataclass(frozen=True)
class SourceImage:
    """One image read back.  ``layout`` is None when the blobs were not fetched
    (a skopeo transport opened with ``blobs=False``); ``tag`` is the tag the
    image was looked up by in it.  ``store``, when there is one, reads single
    blobs without fetching the rest (the layout, an archive read in place, a
    registry)."""

    ref: str
    manifest: dict[str, Any]
    manifest_digest: str
    manifest_size: int
    config: dict[str, Any]
    layout: Layout | None
    tag: str | None = None
    store: BlobStore | None = None

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


class _Platform(NamedTuple):
    os: str | None
    architecture: str | None


def _platform(entry: dict[str, Any]) -> _Platform:
    platform = entry.get("platform")
    platform = platform if isinstance(platform, dict) else {}
    os_name, arch = platform.get("os"), platform.get("architecture")
    return _Platform(os_name if isinstance(os_name, str) else None, arch if isinstance(arch, str) else None)


def choose_manifest(index: dict[str, Any], arch: str, where: str) -> dict[str, Any]:
    """The entry of an image index for linux/``arch`` (an entry that names no
    os counts as linux).  Fails listing the index's platforms when none fits."""
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    for entry in entries:
        platform = _platform(entry)
        if platform.architecture == arch and platform.os in (None, "linux"):
            return entry
    if not entries:
        raise EncapsulateError(f"{where}: the image index lists no manifests; the image is damaged")
    found = ", ".join(sorted({f"{p.os or '?'}/{p.architecture or '?'}" for p in map(_platform, entries)}))
    raise EncapsulateError(
        f"{where}: the image index has no linux/{arch} image (it has {found}); choose one of those"
    )


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise EncapsulateError(f"{what}: not JSON; the image is damaged") from None
    if not isinstance(value, dict):
        raise EncapsulateError(f"{what}: not a JSON object; the image is damaged")
    return value


def _is_index(media_type: object, document: dict[str, Any]) -> bool:
    return media_type in OCI_INDEX_TYPES or document.get("mediaType") in OCI_INDEX_TYPES


def _config_digest(manifest: dict[str, Any], where: str) -> str:
    config = manifest.get("config")
    digest = config.get("digest") if isinstance(config, dict) else None
    if not isinstance(digest, str):
        raise EncapsulateError(f"{where}: the manifest names no config; the image is damaged")
    return digest


def _from_layout(ref: str, layout: _LayoutLike, tag: str | None, arch: str) -> SourceImage:
    descriptor = layout.manifest_for(tag)
    raw = layout.read_blob(descriptor.digest)
    manifest = _json(raw, f"{ref}: manifest {descriptor.digest}")
    if _is_index(descriptor.media_type, manifest):
        chosen = choose_manifest(manifest, arch, f"{ref}: image index {descriptor.digest}")
        digest = str(chosen.get("digest"))
        raw = layout.read_blob(digest)
        manifest = _json(raw, f"{ref}: manifest {digest}")
        if _is_index(chosen.get("mediaType"), manifest):
            raise EncapsulateError(f"{ref}: an image index inside an image index is not read; name the image")
    config_digest = _config_digest(manifest, f"{ref}: manifest")
    config = _json(layout.read_blob(config_digest), f"{ref}: config {config_digest}")
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    kept = layout if isinstance(layout, Layout) else None
    return SourceImage(ref, manifest, digest, len(raw), config, kept, tag, layout)


def _from_skopeo(ref: ImageRef, tls_verify: bool | None, arch: str, authfile: str | None) -> SourceImage:
    """Manifest and config of a skopeo transport, without its blobs (of a
    registry, readable one at a time)."""
    raw = skopeo_inspect(ref, tls_verify=tls_verify, authfile=authfile)
    manifest = _json(raw, f"{ref}: manifest")
    image = ref
    if _is_index(None, manifest):
        chosen = choose_manifest(manifest, arch, f"{ref}: image index")
        if not ref.registry:
            raise EncapsulateError(
                f"{ref}: an image index; copy the linux/{arch} image to oci:DIR and read that"
            )
        image = ref.by_digest(str(chosen.get("digest")))
        raw = skopeo_inspect(image, tls_verify=tls_verify, authfile=authfile)
        manifest = _json(raw, f"{ref}: manifest")
    config = _json(
        skopeo_inspect(image, config=True, tls_verify=tls_verify, authfile=authfile), f"{ref}: config"
    )
    store = RegistryBlobs(ref, tls_verify, authfile) if ref.registry else None
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return SourceImage(str(ref), manifest, digest, len(raw), config, None, None, store)


def _check_layout(ref: ImageRef) -> None:
    """For ``oci:DIR``, an error that says what to give when DIR is not a layout."""
    if not os.path.exists(ref.location):
        raise EncapsulateError(
            f"{ref}: not an OCI image layout: no such directory; give one as oci:DIR[:TAG]"
        )
    if not os.path.isfile(os.path.join(ref.location, "oci-layout")):
        raise EncapsulateError(
            f"{ref}: not an OCI image layout (no oci-layout file); give a directory written by "
            "container-encapsulate, skopeo or umoci"
        )


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


def _plain_tar(path: str) -> bool:
    """Whether ``path`` is an uncompressed tar (its blobs can be read in place)."""
    try:
        with tarfile.open(path, "r:"):
            return True
    except (OSError, tarfile.TarError, EOFError):
        return False


@contextlib.contextmanager
def open_image(
    imgref: ImageRef | str,
    blobs: bool = True,
    tls_verify: bool | None = None,
    arch: str = DEFAULT_ARCH,
    authfile: str | None = None,
) -> Iterator[SourceImage]:
    """The image at ``imgref``; with ``blobs``, its blobs readable through
    ``open_blob`` (skopeo transports are then copied to a temporary layout).
    Without ``blobs``, single blobs of a layout, an uncompressed archive or a
    registry stay readable through ``store``.  ``tls_verify=False`` reads a
    registry over plain HTTP or with an unverified certificate; ``authfile``
    holds its credentials.  Of an image index, the linux/``arch`` image is read."""
    ref = parse_imgref(imgref) if isinstance(imgref, str) else imgref
    if ref.transport == "oci":
        _check_layout(ref)
        yield _from_layout(str(ref), Layout(ref.location, create=False), ref.tag, arch)
        return
    if not ref.direct and not blobs:
        yield _from_skopeo(ref, tls_verify, arch, authfile)
        return
    if ref.transport == "oci-archive" and not blobs and _plain_tar(ref.location):
        yield _from_layout(str(ref), ArchiveBlobs(ref.location, str(ref)), ref.tag, arch)
        return
    tmp = tempfile.mkdtemp(prefix="debchunk-image-")
    try:
        if ref.transport == "oci-archive":
            _unpack_archive(ref.location, tmp, str(ref))
            yield _from_layout(str(ref), Layout(tmp, create=False), ref.tag, arch)
        else:
            copy = ImageRef("oci", tmp, "image")
            skopeo_copy(ref, copy, src_tls_verify=tls_verify, arch=arch)
            yield _from_layout(str(ref), Layout(tmp, create=False), copy.tag, arch)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
