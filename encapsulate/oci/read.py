"""Reading images back: any ``IMGREF`` as its typed manifest and config
(``oci.model``, each checked against its digest before it is read) and, when
asked, a local OCI layout holding its blobs: the one reader of images that
``inspect``, ``diff``, ``validate``, ``report`` and ``--prior`` share.

Of an image index (a multi-platform image), the linux/amd64 image is read,
or the ``Platform`` asked for; an index without it fails naming the
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

from mapping.space import Meter

from ..errors import EncapsulateError
from .imgref import DEFAULT_REGISTRY, ImageRef, RegistryOptions, parse_imgref
from .layout import (
    MAX_CONFIG_BYTES,
    MAX_INDEX_JSON_BYTES,
    MAX_MANIFEST_BYTES,
    Layout,
    read_at_most,
    tagged_manifest,
)
from .model import Descriptor, Digest, ImageConfig, ImageIndex, Manifest, manifest_or_index
from .platform import DEFAULT_PLATFORM, Platform
from .registry import RegistryBlobs
from .skopeo import skopeo_copy, skopeo_inspect

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

    def read_blob(self, digest: str, limit: int | None = None) -> bytes: ...


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

    def _blob_name(self, digest: str) -> str:
        try:
            d = Digest(digest)
        except ValueError:
            raise EncapsulateError(f"{self.where}: unsupported or malformed digest {digest!r}") from None
        return f"blobs/{d.algorithm}/{d.hex}"

    def extent(self, digest: str) -> BlobExtent | None:
        """Where the blob ``digest`` is in the archive file (None: not there)."""
        member = self._members.get(self._blob_name(digest))
        return None if member is None else BlobExtent(self.path, member.offset_data, member.size, self.fd)

    def read_blob(self, digest: str, limit: int | None = None) -> bytes:
        """The content of a (small) blob (refused past ``limit`` bytes)."""
        with self.open_blob(digest) as f:
            return f.read() if limit is None else read_at_most(f, limit, f"{self.where}: blob {digest}")

    def manifest_for(self, tag: str | None) -> Descriptor:
        """The manifest descriptor tagged ``tag`` (or the only one)."""
        with self._open("index.json") as f:
            data = read_at_most(f, MAX_INDEX_JSON_BYTES, f"{self.where}: index.json")
        try:
            index = json.loads(data)
        except ValueError:
            index = None
        if not isinstance(index, dict):
            raise EncapsulateError(f"{self.where}: index.json: not a JSON object; the image is damaged")
        return tagged_manifest(index, tag, self.where)


@dataclass(frozen=True)
class SourceImage:
    """One image read back: its manifest and config, parsed and checked.
    ``layout`` is None when the blobs were not fetched (a skopeo transport
    opened with ``blobs=False``); ``tag`` is the tag the image was looked up
    by in it.  ``store``, when there is one, reads single blobs without
    fetching the rest (the layout, an archive read in place, a registry)."""

    ref: str
    manifest: Manifest
    config: ImageConfig
    layout: Layout | None
    tag: str | None = None
    store: BlobStore | None = None

    @property
    def manifest_digest(self) -> Digest:
        """The digest of the manifest's bytes."""
        return self.manifest.digest

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        """The manifest's layer descriptors, bottom first."""
        return self.manifest.layers

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


def _from_layout(ref: str, layout: _LayoutLike, tag: str | None, platform: Platform) -> SourceImage:
    descriptor = layout.manifest_for(tag)
    found = manifest_or_index(layout.read_blob(descriptor.digest, MAX_MANIFEST_BYTES), descriptor, ref)
    if isinstance(found, ImageIndex):
        chosen = found.choose(platform, f"{ref}: image index {descriptor.digest}")
        found = manifest_or_index(layout.read_blob(chosen.digest, MAX_MANIFEST_BYTES), chosen, ref)
        if isinstance(found, ImageIndex):
            raise EncapsulateError(f"{ref}: an image index inside an image index is not read; name the image")
    config = ImageConfig.parse(layout.read_blob(found.config.digest, MAX_CONFIG_BYTES), found.config, ref)
    kept = layout if isinstance(layout, Layout) else None
    return SourceImage(ref, found, config, kept, tag, layout)


def _from_skopeo(ref: ImageRef, registry: RegistryOptions, platform: Platform) -> SourceImage:
    """Manifest and config of a skopeo transport, without its blobs (of a
    registry, readable one at a time).  A registry's config is asked for by
    the manifest's digest, so it is the one of the manifest read."""
    found = manifest_or_index(skopeo_inspect(ref, registry), None, str(ref))
    if isinstance(found, ImageIndex):
        chosen = found.choose(platform, f"{ref}: image index")
        if not ref.registry:
            raise EncapsulateError(
                f"{ref}: an image index; copy the {platform} image to oci:DIR and read that"
            )
        found = Manifest.parse(skopeo_inspect(ref.by_digest(chosen.digest), registry), chosen, str(ref))
    image = ref.by_digest(found.digest) if ref.registry else ref
    config = ImageConfig.parse(skopeo_inspect(image, registry, config=True), found.config, str(ref))
    store = RegistryBlobs(ref, registry) if ref.registry else None
    return SourceImage(str(ref), found, config, None, None, store)


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
    """Unpack an OCI archive, taking only plain directories and files that
    stay inside ``into``; the space it takes is metered (``mapping.space``)."""
    meter = Meter(into, f"unpacking {ref}")
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
                    while data := source.read(_BLOCK):
                        meter.wrote(len(data))
                        out.write(data)
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
def local_layout(
    imgref: ImageRef | str,
    registry: RegistryOptions = DEFAULT_REGISTRY,
    platform: Platform = DEFAULT_PLATFORM,
    tmpdir: str | None = None,
) -> Iterator[tuple[Layout, str | None]]:
    """The blobs of the image at ``imgref`` in an OCI layout on this machine,
    and the image's tag there: an ``oci:`` layout in place, an archive
    unpacked, any other transport copied by skopeo (of an index, the
    ``platform`` image); temporary copies go under ``tmpdir`` (default
    TMPDIR), after a look at its free space (``mapping.space``), and are
    removed when the block ends.  Nothing is parsed: ``debchunk validate``
    reads the documents itself."""
    ref = parse_imgref(imgref) if isinstance(imgref, str) else imgref
    if ref.transport == "oci":
        _check_layout(ref)
        yield Layout(ref.location, create=False), ref.tag
        return
    try:
        tmp = tempfile.mkdtemp(prefix="debchunk-image-", dir=tmpdir)
    except OSError as e:
        where = tmpdir or tempfile.gettempdir()
        raise EncapsulateError(
            f"{ref}: cannot make a directory to copy it to: {e.strerror}", where=where
        ) from None
    try:
        if ref.transport == "oci-archive":
            _unpack_archive(ref.location, tmp, str(ref))
            yield Layout(tmp, create=False), ref.tag
        else:
            # skopeo writes the copy itself: its space is looked at before only.
            Meter(tmp, f"copying {ref}")
            copy = ImageRef("oci", tmp, "image")
            skopeo_copy(ref, copy, src=registry, dest=DEFAULT_REGISTRY, platform=platform)
            yield Layout(tmp, create=False), copy.tag
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def open_image(
    imgref: ImageRef | str,
    registry: RegistryOptions,
    *,
    blobs: bool = True,
    platform: Platform = DEFAULT_PLATFORM,
    tmpdir: str | None = None,
) -> Iterator[SourceImage]:
    """The image at ``imgref`` (parsed, or an IMGREF to parse); with ``blobs``,
    its blobs readable through ``open_blob`` (``local_layout``, copied under
    ``tmpdir`` when they are not on this machine).  Without ``blobs``,
    single blobs of a layout, an uncompressed archive or a registry stay
    readable through ``store``.  ``registry`` says how a registry is reached
    (TLS, credentials).  Of an image index, the ``platform`` image is read."""
    ref = parse_imgref(imgref) if isinstance(imgref, str) else imgref
    if not ref.direct and not blobs:
        yield _from_skopeo(ref, registry, platform)
        return
    if ref.transport == "oci-archive" and not blobs and _plain_tar(ref.location):
        yield _from_layout(str(ref), ArchiveBlobs(ref.location, str(ref)), ref.tag, platform)
        return
    with local_layout(ref, registry, platform, tmpdir) as (layout, tag):
        yield _from_layout(str(ref), layout, tag, platform)
