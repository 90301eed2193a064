"""Where images go: ``oci:`` and ``oci-archive:`` written here, a registry
(``registry:``, ``docker://``) pushed to here over the distribution API
(``push.push_image``), every other transport through ``skopeo copy`` from a
temporary OCI layout.

An ``oci-archive:`` is a tar of an OCI layout; it is built next to the
destination and renamed into place, so an existing archive is replaced whole
or not at all.  The image is written into a temporary layout first, except
the layers it takes from an image on this machine (``--prior``, ``--cache``):
those are lent (``ReachableLayers.lending``), checked where they are and
copied once, from there into the archive, by the kernel
(``copy_file_range``).  A registry is sent only the blobs it lacks.
Temporary layouts are removed whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping

from ..errors import EncapsulateError
from .imgref import DEFAULT_REGISTRY, ImageRef, RegistryOptions
from .layout import LayoutState, LayoutTarget, atomic_write, install_layout, layout_state, restore_layout
from .model import Digest
from .push import RegistryPush, registry_reference
from .read import BlobExtent, BlobStore, blob_extent
from .reuse import Lender, check_local_blob
from .sigstore import SignatureStore, Signer, check_stored
from .skopeo import skopeo_copy

# The tag written when an oci:/oci-archive: destination names none.
DEFAULT_TAG = "latest"
_BLOCK = 1 << 20


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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_extent(extent: BlobExtent, out: int) -> None:
    """Append the bytes of ``extent`` to the file ``out``: in the kernel
    (``copy_file_range``), else by ``pread`` where a file system cannot."""
    with contextlib.ExitStack() as stack:
        fd = extent.fd if extent.fd is not None else stack.enter_context(open(extent.path, "rb")).fileno()
        offset, left = extent.offset, extent.size
        with contextlib.suppress(OSError):
            while left:
                n = os.copy_file_range(fd, out, left, offset)
                if n == 0:
                    break
                offset, left = offset + n, left - n
        while left:
            data = os.pread(fd, min(left, _BLOCK), offset)
            if not data:
                raise EncapsulateError(f"{extent.path}: ends before the blob does; the image is damaged")
            _write_all(out, data)
            offset, left = offset + len(data), left - len(data)


def _tar_header(name: str, size: int, directory: bool) -> bytes:
    """A member's header as ``tarfile`` writes it for ``gettarinfo`` with the
    archive's fixed metadata (mode 0755/0644, owner 0, mtime 0, no names)."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = size
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def archive_members(layout: str, lent: Mapping[str, BlobStore]) -> Iterator[tuple[str, BlobExtent | None]]:
    """The archive's members in order: the layout's directories and files,
    each directory's entries sorted (a directory as ``None``), with the lent
    blobs among the layout's own in ``blobs/sha256``."""
    lent_names = {Digest(d).hex: d for d in lent if Digest(d).algorithm == "sha256"}
    for dirpath, dirnames, filenames in os.walk(layout):
        dirnames.sort()
        files = {name: os.path.join(dirpath, name) for name in filenames}
        borrowed: dict[str, str] = {}
        if os.path.relpath(dirpath, layout) == os.path.join("blobs", "sha256"):
            borrowed = {n: d for n, d in lent_names.items() if n not in files}
        for name in dirnames:
            yield os.path.relpath(os.path.join(dirpath, name), layout), None
        for name in sorted([*files, *borrowed]):
            member = os.path.relpath(os.path.join(dirpath, name), layout)
            if name in borrowed:
                extent = blob_extent(lent[borrowed[name]], borrowed[name])
                if extent is None:
                    raise EncapsulateError(f"blob {borrowed[name]} is no longer where it was taken from")
                yield member, extent
            else:
                yield member, BlobExtent(files[name], 0, os.lstat(files[name]).st_size)


def write_archive(layout: str, lent: Mapping[str, BlobStore], destination: str) -> None:
    """Put the layout, with the ``lent`` blobs, at ``destination`` as an OCI
    archive: the tar ``tarfile`` would write of the layout holding them all
    (sorted members, fixed metadata), its contents copied by the kernel."""
    try:
        with atomic_write(destination, ".tmp-archive-") as raw:
            out = raw.fileno()
            written = 0
            for name, extent in archive_members(layout, lent):
                size = 0 if extent is None else extent.size
                header = _tar_header(name, size, extent is None)
                _write_all(out, header)
                written += len(header)
                if extent is not None:
                    _copy_extent(extent, out)
                    padding = -size % tarfile.BLOCKSIZE
                    _write_all(out, tarfile.NUL * padding)
                    written += size + padding
            # The end: two zero blocks, then zeros to a whole record (as tarfile closes).
            end = 2 * tarfile.BLOCKSIZE
            end += -(written + end) % tarfile.RECORDSIZE
            _write_all(out, tarfile.NUL * end)
    except OSError as e:
        raise EncapsulateError(f"{destination}: cannot write the archive ({e.strerror})") from None


def _new_layout(path: str) -> bool:
    """Whether an ``oci:`` destination has no layout yet: nothing there, or an empty directory."""
    if not os.path.lexists(path):
        return True
    try:
        return os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path)
    except OSError:
        return False


def _make_parents(path: str) -> list[str]:
    """Make the missing directories above ``path``; those made, outermost first."""
    missing = []
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    made: list[str] = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            continue
        except OSError as e:
            _remove_dirs(made)
            raise EncapsulateError(
                f"{directory}: cannot make it ({e.strerror}); choose a writable destination"
            ) from None
        made.append(directory)
    return made


def _remove_dirs(made: list[str]) -> None:
    for directory in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(directory)


class Destination:
    """Where the image goes (``ref``), as a context: inside it the image is
    written into the OCI layout ``target``, taking the blobs the ``lender``
    lets stay where they are; ``deliver`` then puts it at ``ref``.  A failed
    or interrupted run leaves the destination as it found it:
    - ``oci:`` with a layout there: the image is written into it (its blobs
      first, the tag last; ``Layout``); a failure after the tag moved puts
      the tag and index.json back and takes the added blobs away
      (``restore_layout``);
    - ``oci:`` with nothing there: written into a new layout beside it and
      renamed into place by ``deliver`` (directories made above it are
      removed again on failure);
    - ``oci-archive:``: built beside and renamed over (``write_archive``);
    - a registry: written into a temporary layout under ``tmpdir``, then
      pushed, the manifest last (``push``); with a ``signer``, its
      signature is attached before the manifest is put (``sigstore``);
    - ``docker-archive:``: written under ``tmpdir``, then ``skopeo copy``
      into a file beside, renamed over;
    - other transports: written under ``tmpdir``, then ``skopeo copy``.
    Temporary layouts are removed on leaving, whatever happens."""

    def __init__(
        self,
        ref: ImageRef,
        registry: RegistryOptions,
        tmpdir: str | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.ref = ref
        self.registry = registry
        self.tmpdir = tmpdir
        self.signer = signer
        # The manifest digest pushed to a registry.
        self.digest: str | None = None
        self.target = LayoutTarget(ref.location, ref.tag or DEFAULT_TAG)
        # Which taken blobs may stay where they are until delivery.
        self.lender: Lender | None = None
        self._push: RegistryPush | None = None
        self._stack = contextlib.ExitStack()
        # ``oci:``: the layout's state before the run, or the new layout's parents made.
        self._before: LayoutState | None = None
        self._new = False
        self._made: list[str] = []
        self._delivered = False

    def __enter__(self) -> Destination:
        transport, location = self.ref.transport, self.ref.location
        if transport == "oci" and not _new_layout(location):
            self._before = layout_state(location, self.target.tag)
            return self
        if transport == "oci":
            self._new = True
            self._made = _make_parents(location)
        near = location if transport in ("oci", "oci-archive") else self._scratch()
        try:
            tmp = self._stack.enter_context(_temporary_dir(near))
        except BaseException:
            _remove_dirs(self._made)
            raise
        self.target = LayoutTarget(os.path.join(tmp, "layout"), self.target.tag)
        if transport == "oci-archive":
            self.lender = check_local_blob
        elif self.ref.registry:
            self._push = RegistryPush(self.ref, self.registry)
            self.lender = self._push.keeps_in_place
        return self

    def _scratch(self) -> str:
        """A path in the directory temporary layouts are made in."""
        return os.path.join(self.tmpdir or tempfile.gettempdir(), "image")

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is not None and self._before is not None:
                # The error on its way out is the one to report.
                with contextlib.suppress(EncapsulateError, OSError):
                    restore_layout(self.ref.location, self.target.tag, self._before)
        finally:
            self._stack.close()
            if not self._delivered:
                _remove_dirs(self._made)

    @property
    def copies(self) -> bool:
        """Whether delivery copies the written layout somewhere (every transport but ``oci:``)."""
        return self.ref.transport != "oci"

    def deliver(self, lent: Mapping[str, BlobStore]) -> None:
        """Put the image written into ``target`` at ``ref``, with the ``lent``
        blobs read from where they were taken."""
        layout, tag = self.target
        if self.ref.transport == "oci":
            if self._new:
                install_layout(layout, self.ref.location, tag)
        elif self.ref.transport == "oci-archive":
            write_archive(layout, lent, self.ref.location)
        elif self._push is not None:
            self._push_signed(layout, tag, lent)
        elif self.ref.transport == "docker-archive":
            self._docker_archive(layout, tag)
        else:
            skopeo_copy(ImageRef("oci", layout, tag), self.ref, src=DEFAULT_REGISTRY, dest=self.registry)
        self._delivered = True

    def _push_signed(self, layout: str, tag: str, lent: Mapping[str, BlobStore]) -> None:
        """Push to the registry; with a signer, the signature attached before
        the manifest is put, and the manifest stored checked to be the one signed."""
        assert self._push is not None
        if self.signer is None:
            self.digest = self._push.push_image(layout, tag, lent)
            return
        store = SignatureStore(self.ref, self.registry, push=True)
        self.digest = self._push.push_image(layout, tag, lent, self.signer.before_manifest(store))
        check_stored(store, registry_reference(self.ref.location), self.digest)

    def _docker_archive(self, layout: str, tag: str) -> None:
        """skopeo writes the archive into a new file beside ``FILE``, renamed
        over it once complete: an existing archive is replaced whole or not at all."""
        path, colon, name = self.ref.location.partition(":")
        with _temporary_dir(path) as tmp:
            built = os.path.join(tmp, "archive.tar")
            into = ImageRef("docker-archive", built + colon + name, None)
            skopeo_copy(ImageRef("oci", layout, tag), into, src=DEFAULT_REGISTRY, dest=self.registry)
            try:
                os.replace(built, path)
            except OSError as e:
                raise EncapsulateError(f"{path}: cannot write the archive ({e.strerror})") from None
