"""OCI image layouts on disk: content-addressed blobs and a tagged index.

In: blobs (streamed) and manifests.  Out: a directory following the OCI image
layout specification (``oci-layout``, ``index.json``, ``blobs/sha256/``).
Blobs are written to a temporary file in the layout and renamed into place
under their digest; ``index.json`` is replaced last, by rename, so an
interrupted run leaves the layout as it was (plus, at worst, unreferenced
blobs with correct content).  Other tags and their blobs are kept.

Several runs may write into one layout at once.  Two advisory locks
(``flock``, released by the kernel when a process dies) keep them apart:
- the layout directory, held exclusively while ``index.json`` is created or
  read, changed and replaced, so concurrent tags do not lose each other;
- ``blobs/sha256``, held shared by every writing ``Layout`` for its life.  A
  failed run removes the blobs it added only if it can take this lock
  exclusively, that is when no other run is writing: another run may have
  found one of those blobs already there (same digest) and be about to tag
  it.  Blobs any tag references are never removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
import weakref
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

from mapping.space import Meter, registered_account

from ..errors import EncapsulateError
from .labels import REF_NAME_ANNOTATION
from .model import LAYER_COMPRESSION as LAYER_COMPRESSION
from .model import MEDIA_CONFIG as MEDIA_CONFIG
from .model import MEDIA_INDEX as MEDIA_INDEX
from .model import MEDIA_LAYER_GZIP as MEDIA_LAYER_GZIP
from .model import MEDIA_LAYER_TAR as MEDIA_LAYER_TAR
from .model import MEDIA_LAYER_ZSTD as MEDIA_LAYER_ZSTD
from .model import MEDIA_MANIFEST as MEDIA_MANIFEST
from .model import Descriptor as Descriptor
from .model import Digest

# Past these sizes a document of an image is refused, not read:
# containers/image's limits (internal/iolimits: 4 MiB for a manifest or an
# index, 4 MiB for a config), so every image podman and skopeo read is read
# here.  A layout's index.json has an entry per tag, and more room.
MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 4 << 20
MAX_INDEX_JSON_BYTES = 64 << 20


def read_at_most(f: BinaryIO, limit: int, what: str) -> bytes:
    """All of ``f`` if it holds at most ``limit`` bytes (reading one more at
    most), else an error naming ``what``."""
    data = f.read(limit + 1)
    if len(data) > limit:
        raise EncapsulateError(
            f"{what}: larger than {limit >> 20} MiB, more than such a document holds; the image is damaged"
        )
    return data


LAYOUT_VERSION = "1.0.0"


def canonical_json(value: Any) -> bytes:
    """JSON bytes that depend only on the value: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def read_json_object(path: str, what: str, hint: str = "") -> dict[str, Any]:
    """A JSON object from a file; errors name the file, say what was expected
    and, with ``hint``, what to pass instead."""
    advice = f"; {hint}" if hint else ""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise EncapsulateError(f"{path}: cannot read the {what}: {e.strerror}") from None
    except ValueError as e:
        raise EncapsulateError(f"{path}: not JSON ({e}){advice}") from None
    if not isinstance(data, dict):
        raise EncapsulateError(f"{path}: not a {what}{advice}")
    return data


@contextlib.contextmanager
def atomic_write(path: str, prefix: str, suffix: str = "", fsync: bool = False) -> Iterator[BinaryIO]:
    """A file to write ``path`` through: a temporary file beside it (named
    ``prefix``...``suffix``), made mode 0644 and renamed over ``path`` when the
    block ends (with ``fsync``, on disk first).  On any failure it is removed
    and an existing ``path`` is left as it was."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class LayoutTarget(NamedTuple):
    """Where an image is written: the OCI layout at ``path``, tagged ``tag``."""

    path: str
    tag: str


class BlobWriter:
    """A blob being written: bytes go to a temporary file and into sha256.
    In a layout that is temporary data of a run (under its work directory),
    the space they take is metered (``mapping.space``)."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        account = registered_account(layout.blobs)
        self._meter = None if account is None else Meter(layout.blobs, "writing the image", account)
        fd, self.path = tempfile.mkstemp(prefix=".tmp-blob-", dir=layout.blobs)
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``."""
        if self._meter is not None:
            self._meter.wrote(len(data))
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def commit(self, media_type: str, annotations: dict[str, str] | None = None) -> Descriptor:
        """Move the blob into place under its digest."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        descriptor = Descriptor(media_type, Digest.of_hash(self._hash), self.size, annotations or {})
        final = self._layout.blob_path(descriptor.digest)
        existed = os.path.lexists(final)
        if existed and self._layout.has_blob(descriptor):
            # The same bytes are there already: leave that blob untouched (a
            # damaged one, of any size, is replaced below).
            os.unlink(self.path)
        else:
            os.chmod(self.path, 0o644)
            os.replace(self.path, final)
            self._layout.verified(descriptor)
            if not existed:
                self._layout.created.append(final)
        return descriptor

    def discard(self) -> None:
        """Forget the blob (also after a failed write: closing a file whose
        buffer cannot be flushed fails, the temporary file still goes)."""
        if not self._file.closed:
            with contextlib.suppress(OSError):
                self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class Layout:
    """An OCI image layout directory."""

    def __init__(self, path: str, create: bool = True) -> None:
        """Open the layout at ``path``; with ``create``, make it if needed and
        register as a writer (see the module docstring) until ``close``."""
        self.path = path
        self.blobs = os.path.join(path, "blobs", "sha256")
        # Blobs this process added, so a failed run can take them away again.
        self.created: list[str] = []
        # Blobs whose bytes were hashed (or written) by this object: digest -> size.
        self._verified: dict[str, int] = {}
        self._writer_lock: int | None = None
        marker = os.path.join(path, "oci-layout")
        try:
            if os.path.exists(path) and not os.path.isdir(path):
                raise EncapsulateError(f"{path}: exists and is not a directory; give an OCI layout directory")
            if not create:
                if not os.path.exists(marker):
                    raise EncapsulateError(f"{path}: not an OCI image layout (no oci-layout file)")
                return
            os.makedirs(path, exist_ok=True)
            with self._index_lock():
                if not os.path.exists(marker):
                    if os.listdir(path):
                        raise EncapsulateError(
                            f"{path}: a non-empty directory that is not an OCI layout; "
                            "choose a new or empty directory"
                        )
                    os.makedirs(self.blobs, exist_ok=True)
                    self._replace("oci-layout", canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))
                    if not os.path.exists(os.path.join(path, "index.json")):
                        self._replace("index.json", canonical_json(self._empty_index()))
                os.makedirs(self.blobs, exist_ok=True)
            fd = os.open(self.blobs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._closer = weakref.finalize(self, os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._writer_lock = fd
        except OSError as e:
            raise _os_error(path, e) from None

    def close(self) -> None:
        """Stop being a writer of the layout (also done when the object goes)."""
        if self._writer_lock is not None:
            self._writer_lock = None
            self._closer()

    def __enter__(self) -> Layout:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is not None:
                # Whatever failed (a layer, the config, Ctrl-C), before the tag moved.
                self.forget_created()
        finally:
            self.close()

    @contextlib.contextmanager
    def _index_lock(self) -> Iterator[None]:
        """The layout directory, locked exclusively: one process at a time
        creates the layout or changes ``index.json``."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _empty_index() -> dict[str, Any]:
        return {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": []}

    def _replace(self, name: str, data: bytes) -> None:
        with atomic_write(os.path.join(self.path, name), f".tmp-{name}-", fsync=True) as f:
            f.write(data)

    @contextlib.contextmanager
    def blob(self) -> Iterator[BlobWriter]:
        """A new blob; discarded unless committed inside the block."""
        try:
            writer = BlobWriter(self)
        except OSError as e:
            raise _os_error(self.path, e) from None
        try:
            yield writer
        finally:
            writer.discard()

    def add_bytes(
        self, data: bytes, media_type: str, annotations: dict[str, str] | None = None
    ) -> Descriptor:
        """Store a small blob (a manifest or config)."""
        with self.blob() as w:
            w.write(data)
            return w.commit(media_type, annotations)

    def read_blob(self, digest: str, limit: int | None = None) -> bytes:
        """The content of a blob (refused past ``limit`` bytes)."""
        try:
            with open(self.blob_path(digest), "rb") as f:
                return f.read() if limit is None else read_at_most(f, limit, f"{self.path}: blob {digest}")
        except OSError as e:
            raise EncapsulateError(f"{self.path}: blob {digest}: {e.strerror}") from None

    def open_blob(self, digest: str) -> BinaryIO:
        """A blob opened for streaming."""
        try:
            return open(self.blob_path(digest), "rb")
        except OSError as e:
            raise EncapsulateError(f"{self.path}: blob {digest}: {e.strerror}") from None

    def blob_path(self, digest: str) -> str:
        """Where a blob lives (``blobs/ALGORITHM/HEX``, image-spec image-layout.md)."""
        try:
            d = Digest(digest)
        except ValueError:
            raise EncapsulateError(f"{self.path}: unsupported or malformed digest {digest!r}") from None
        return os.path.join(self.path, "blobs", d.algorithm, d.hex)

    def index(self) -> dict[str, Any]:
        """The parsed index.json."""
        try:
            with open(os.path.join(self.path, "index.json"), "rb") as f:
                data = json.loads(read_at_most(f, MAX_INDEX_JSON_BYTES, f"{self.path}/index.json"))
        except FileNotFoundError:
            return self._empty_index()
        except (OSError, ValueError) as e:
            raise EncapsulateError(
                f"{self.path}/index.json: unreadable ({e}); repair or remove the layout"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("manifests"), list):
            raise EncapsulateError(f"{self.path}/index.json: not an OCI index")
        return data

    def manifest_for(self, tag: str | None) -> Descriptor:
        """The manifest descriptor tagged ``tag`` (or the only one, without a tag)."""
        return tagged_manifest(self.index(), tag, self.path)

    def forget_created(self) -> None:
        """Remove the blobs this process added (after a failure, before any tag
        points at them), unless another run is writing into the layout or a tag
        references them: an unreferenced blob with correct content is harmless,
        a missing one breaks another run's image."""
        created, self.created = self.created, []
        fd = self._writer_lock
        if not created or fd is None:
            return
        try:
            # Converting the shared lock may drop it before failing (flock(2)):
            # it is taken again below either way.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(fd, fcntl.LOCK_SH)
            return
        try:
            referenced = self._referenced()
            if referenced is None:
                return
            for path in created:
                digest = Digest(f"sha256:{os.path.basename(path)}")
                if digest not in referenced:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    self._verified.pop(digest, None)
        finally:
            fcntl.flock(fd, fcntl.LOCK_SH)

    def _referenced(self) -> set[str] | None:
        """Every digest the tags reach (indexes, manifests, configs, layers),
        or None if one of them cannot be read (then nothing is safe to remove)."""
        try:
            roots = [Descriptor.from_json(m) for m in self.index()["manifests"]]
            return {d.digest for d in self.reachable(roots)}
        except (EncapsulateError, ValueError, TypeError, AttributeError):
            return None

    def reachable(self, roots: list[Descriptor]) -> list[Descriptor]:
        """The descriptors ``roots`` reach, themselves included (indexes,
        manifests, configs, layers), each once, children before parents."""
        seen: set[str] = set()
        order: list[Descriptor] = []
        pending = list(roots)
        while pending:
            d = pending.pop()
            if d.digest in seen:
                continue
            seen.add(d.digest)
            order.append(d)
            if d.media_type not in (MEDIA_INDEX, MEDIA_MANIFEST):
                continue
            body = json.loads(self.read_blob(d.digest, MAX_MANIFEST_BYTES))
            children = [*(body.get("manifests") or []), *(body.get("layers") or [])]
            if "config" in body:
                children.append(body["config"])
            pending += [Descriptor.from_json(c) for c in children]
        return order[::-1]

    def adopt(self, other: Layout, tag: str) -> None:
        """Copy the image tagged ``tag`` in ``other`` into this layout (blobs
        it lacks, then the tag, with its platform), as a run writing here would."""
        entry = tag_entry(other.index(), tag)
        if entry is None:
            raise EncapsulateError(f"{other.path}: no image tagged {tag!r}")
        manifest = Descriptor.from_json(entry)
        try:
            blobs = other.reachable([manifest])
        except (ValueError, TypeError, AttributeError) as e:
            raise EncapsulateError(f"{other.path}: an unreadable manifest ({e})") from None
        for d in blobs:
            with other.open_blob(d.digest) as f:
                self.import_blob(f, d)
        self.tag(manifest, tag, entry.get("platform"))

    def restore_tag(self, tag: str, state: LayoutState) -> None:
        """Put ``tag`` back as ``state`` found it, keeping what other runs did
        meanwhile: when the index differs from then only in ``tag``, its very
        bytes are written back; else only the tag's entry is put back (atomic,
        as ``tag``)."""
        try:
            with self._index_lock():
                index = self.index()
                if tag_entry(index, tag) == state.entry:
                    return
                kept = [m for m in index["manifests"] if _tag_of(m) != tag]
                before = json.loads(state.index_json)
                if kept == [m for m in before.get("manifests") or [] if _tag_of(m) != tag]:
                    self._replace("index.json", state.index_json)
                    path = os.path.join(self.path, "index.json")
                    os.utime(path, ns=(state.mtime_ns, state.mtime_ns))
                    return
                index["manifests"] = kept if state.entry is None else [*kept, state.entry]
                self._replace("index.json", canonical_json(index))
        except (OSError, ValueError) as e:
            raise EncapsulateError(f"{self.path}/index.json: cannot put tag {tag!r} back ({e})") from None

    def has_blob(self, descriptor: Descriptor) -> bool:
        """Whether the blob ``descriptor`` names is in the layout with its size
        and digest.  Its bytes are hashed the first time this object is asked
        (a blob damaged in place keeps its size); later answers are remembered."""
        if self._verified.get(descriptor.digest) == descriptor.size:
            return True
        try:
            with open(self.blob_path(descriptor.digest), "rb") as f:
                if os.fstat(f.fileno()).st_size != descriptor.size:
                    return False
                digest = Digest.of_hash(hashlib.file_digest(f, descriptor.digest.algorithm))
        except (OSError, EncapsulateError):
            return False
        if digest != descriptor.digest:
            return False
        self.verified(descriptor)
        return True

    def import_blob(self, source: BinaryIO, descriptor: Descriptor) -> None:
        """Copy the blob ``descriptor`` from ``source`` into the layout, unless
        it is there already (checked by digest); the copy is checked too."""
        if self.has_blob(descriptor):
            return
        with self.blob() as writer:
            while data := source.read(1 << 20):
                writer.write(data)
            copied = writer.commit(descriptor.media_type)
        if copied.digest != descriptor.digest or copied.size != descriptor.size:
            raise EncapsulateError(
                f"blob {descriptor.digest} read back as {copied.digest} ({copied.size} bytes)",
                where=self.path,
                hint="the source image is damaged; pull it again",
            )

    def verified(self, descriptor: Descriptor) -> None:
        """Remember that the blob ``descriptor`` names is in place and correct
        (it was just hashed or written)."""
        self._verified[descriptor.digest] = descriptor.size

    def tag(self, manifest: Descriptor, tag: str, platform: dict[str, str] | None = None) -> None:
        """Point ``tag`` at ``manifest`` (its index entry naming ``platform``,
        as image-index.md describes), keeping every other entry, also those
        other processes add meanwhile (atomic)."""
        try:
            with self._index_lock():
                index = self.index()
                kept = [
                    m
                    for m in index["manifests"]
                    if (m.get("annotations") or {}).get(REF_NAME_ANNOTATION) != tag
                ]
                entry = Descriptor(
                    manifest.media_type, manifest.digest, manifest.size, {REF_NAME_ANNOTATION: tag}
                )
                index["manifests"] = [
                    *kept,
                    {**entry.to_json(), **({"platform": platform} if platform else {})},
                ]
                index.setdefault("schemaVersion", 2)
                self._replace("index.json", canonical_json(index))
        except OSError as e:
            raise _os_error(self.path, e) from None


def _tag_of(entry: Any) -> str | None:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    return annotations.get(REF_NAME_ANNOTATION) if isinstance(annotations, dict) else None


def tag_entry(index: dict[str, Any], tag: str) -> dict[str, Any] | None:
    """The entry of ``index`` (a layout's index.json) tagged ``tag``, as it is written, or None."""
    for entry in index.get("manifests") or []:
        if _tag_of(entry) == tag:
            return dict(entry)
    return None


class LayoutState(NamedTuple):
    """What a run may change in an existing layout: its tag's entry and the blobs there."""

    entry: dict[str, Any] | None
    blobs: frozenset[str]
    index_json: bytes
    mtime_ns: int


def layout_state(path: str, tag: str) -> LayoutState | None:
    """The state of the layout at ``path`` for ``tag``; None when there is no layout."""
    if not os.path.isfile(os.path.join(path, "oci-layout")):
        return None
    try:
        with open(os.path.join(path, "index.json"), "rb") as f:
            raw = read_at_most(f, MAX_INDEX_JSON_BYTES, f"{path}/index.json")
            mtime_ns = os.fstat(f.fileno()).st_mtime_ns
        index = json.loads(raw)
        blobs = frozenset(os.listdir(os.path.join(path, "blobs", "sha256")))
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict):
        return None
    return LayoutState(tag_entry(index, tag), blobs, raw, mtime_ns)


def restore_layout(path: str, tag: str, state: LayoutState) -> None:
    """After a failed run, the layout at ``path`` as ``state`` found it: ``tag``
    put back, the blobs added since removed (those no tag references, and
    only when no other run is writing there, as ``Layout.forget_created``)."""
    with Layout(path) as layout:
        layout.restore_tag(tag, state)
        try:
            added = set(os.listdir(layout.blobs)) - state.blobs
        except OSError:
            return
        layout.created = [os.path.join(layout.blobs, n) for n in sorted(added) if not n.startswith(".")]
        layout.forget_created()


def install_layout(built: str, path: str, tag: str) -> None:
    """Put ``built``, a new layout holding the image tagged ``tag`` written
    beside ``path``, at ``path``: renamed into place when nothing (or an
    empty directory) is there, so the layout appears whole or not at all;
    else (another run made a layout there meanwhile) its image copied in
    and tagged, as a run writing there would."""
    try:
        os.rename(built, path)
        return
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EXDEV, errno.EBUSY):
            raise _os_error(path, e) from None
    with Layout(path) as layout:
        layout.adopt(Layout(built, create=False), tag)


def tagged_manifest(index: dict[str, Any], tag: str | None, where: str) -> Descriptor:
    """The manifest descriptor of a layout's ``index`` tagged ``tag`` (or
    the only one, without a tag); errors name ``where``."""
    manifests = [Descriptor.from_json(m) for m in index.get("manifests") or []]
    if tag is None:
        if len(manifests) == 1:
            return manifests[0]
        raise EncapsulateError(f"{where}: {len(manifests)} images in the layout; name one with :TAG")
    for m in manifests:
        if m.annotations.get(REF_NAME_ANNOTATION) == tag:
            return m
    raise EncapsulateError(f"{where}: no image tagged {tag!r}")


def _os_error(path: str, e: OSError) -> EncapsulateError:
    if e.errno == errno.ENOSPC:
        return EncapsulateError(f"{path}: no space left on device; free some space and run again")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return EncapsulateError(f"{path}: cannot write ({e.strerror}); choose a writable destination")
    return EncapsulateError(f"{path}: {e.strerror}")
