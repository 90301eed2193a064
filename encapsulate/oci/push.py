"""Pushing an image to a registry over the distribution API.

In: an image in an OCI layout, the blobs it lent (left where the build found
them: ``ReachableLayers.lending``) and a registry ``ImageRef``.  Out: the
image in the registry, its manifest stored byte for byte as written, so it
keeps its digest.  ``skopeo copy`` reads and sends every blob; here each
blob is first asked for (``HEAD /v2/<name>/blobs/<digest>``) and sent only
when missing: mounted from the repository of an image on the same registry
that holds it (``POST .../blobs/uploads/?mount=<digest>&from=<repo>``, ``201``
when done), else uploaded in one piece (``POST`` then ``PUT ?digest=``).  The
manifest goes last (``PUT /v2/<name>/manifests/<tag>``), so a failed push
tags nothing (OCI distribution-spec v1.1, "Pushing blobs", "Mounting a blob
from another repository", "Pushing manifests").  A layer taken from a
previous image in the same registry is never downloaded: the registry has it.
Requests that meet a transient fault are tried again (``RegistrySession.send``);
an upload so cut is made again from a new session, and every blob is
confirmed present, of its size, before the manifest is sent (docs/push.md).
"""

from __future__ import annotations

import contextlib
import http.client
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import EncapsulateError
from .layout import MAX_MANIFEST_BYTES, Layout
from .model import Descriptor, Manifest
from .read import BlobStore
from .registry import RegistryBlobs, RegistrySession, registry_name
from .retry import drain, refusal_hint, registry_errors, transient
from .reuse import check_local_blob

_BLOCK = 1 << 20
# Blobs asked for or sent at once: requests to a registry wait mostly on the network.
_PARALLEL = 4


def registry_reference(location: str) -> str:
    """The tag (or ``sha256:...`` digest) a registry location names; ``latest`` without one."""
    name, at, digest = location.lstrip("/").partition("@")
    if at:
        return digest
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[colon + 1 :] if colon > slash else "latest"


def _chunks(open_blob: Callable[[], BinaryIO]) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        with open_blob() as f:
            while data := f.read(_BLOCK):
                yield data

    return chunks


@dataclass
class RegistryPush(RegistrySession):
    """One image pushed to ``ref`` (``RegistryPush(ref, registry)``)."""

    def __post_init__(self) -> None:
        self.tls_option = "--dest-tls-verify"
        # Blobs are mounted from the repositories in ``pull_from``.
        self.actions = "pull,push"

    def keeps_in_place(self, store: BlobStore, descriptor: Descriptor) -> bool:
        """The push's ``Lender``: a blob of this registry stays there (no
        download: it is present or mounted), a blob on this machine stays
        where it is (checked there), a blob of another registry is copied."""
        if isinstance(store, RegistryBlobs):
            host, name = registry_name(store.ref)
            if host != self.host:
                return False
            if name != self.name:
                self.pull_from.add(name)
            return True
        return check_local_blob(store, descriptor)

    # The option that gives the credentials, for messages.
    creds_option = "--dest-creds"

    def _refused(self, what: str, e: urllib.error.HTTPError) -> EncapsulateError:
        """The registry's permanent refusal of ``what``, its error codes and messages quoted."""
        try:
            codes = registry_errors(drain(e))
        except (OSError, http.client.HTTPException):
            codes = ""
        quoted = f": {codes}" if codes else ""
        return EncapsulateError(
            f"the registry {self.host} refused {what} (HTTP {e.code} {e.reason}{quoted})",
            str(self.ref),
            hint=refusal_hint(e.code, codes, self.name, self.creds_option),
        )

    def _request(
        self,
        what: str,
        method: str,
        path: str,
        body: bytes | Callable[[], Iterator[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        missing: tuple[int, ...] = (),
    ) -> tuple[int, str | None]:
        """The status and ``Location`` of a request (tried again on a transient
        fault: ``send``); a status in ``missing`` is answered, other errors
        become one ``EncapsulateError``."""
        try:
            with self.send(method, path, body, headers) as response:
                drain(response)
                return response.status, response.headers.get("Location")  # type: ignore[attr-defined]
        except urllib.error.HTTPError as e:
            with e:
                if e.code in missing:
                    return e.code, None
                raise self._refused(what, e) from None
        except OSError as e:
            raise EncapsulateError(
                f"{self.ref}: lost the registry {self.host} during {what} ({e}); run again"
            ) from None

    def check_push(self) -> None:
        """That the registry answers, that the TLS setting fits it and that the
        credentials may push to the repository, before any long step: an
        upload is started (``POST /v2/<name>/blobs/uploads/``, distribution-spec
        "Pushing blobs") and cancelled (``DELETE`` of its location, where the
        registry allows it).  A failure is one ``EncapsulateError``."""
        uploads = f"/v2/{self.name}/blobs/uploads/"
        _, location = self._request("a test upload", "POST", uploads, b"", {"Content-Length": "0"})
        if location is not None:
            # A registry that cannot cancel uploads lets them expire.
            with contextlib.suppress(EncapsulateError):
                self._request("the test upload's cancel", "DELETE", location, missing=(404, 405, 501))

    def present(self, d: Descriptor) -> bool:
        """Whether the repository holds the blob ``d`` names, of ``d``'s size
        (``HEAD /v2/<name>/blobs/<digest>``, its ``Content-Length``)."""
        blob = f"/v2/{self.name}/blobs/{d.digest}"
        try:
            with self.send("HEAD", blob) as response:
                drain(response)
                length = response.headers.get("Content-Length")  # type: ignore[attr-defined]
        except urllib.error.HTTPError as e:
            with e:
                if e.code == 404:
                    return False
                raise self._refused(f"HEAD {blob}", e) from None
        except OSError as e:
            raise EncapsulateError(
                f"{self.ref}: lost the registry {self.host} during HEAD {blob} ({e}); run again"
            ) from None
        return length is not None and length.strip() == str(d.size)

    def _upload(
        self, d: Descriptor, layout: Layout, lent: Mapping[str, BlobStore]
    ) -> tuple[BaseException | None, str] | None:
        """One try at putting the blob ``d`` names into the repository: mounted
        from where it was lent, else a new upload session (``POST``) given the
        whole blob (``PUT``).  None when the registry took it; the error and
        what happened when the ``PUT`` met a transient fault (the session is
        then left to expire: the next try starts a new one)."""
        uploads = f"/v2/{self.name}/blobs/uploads/"
        store = lent.get(d.digest)
        start = uploads
        if isinstance(store, RegistryBlobs):
            source = registry_name(store.ref)[1]
            start += "?" + urllib.parse.urlencode({"mount": d.digest, "from": source})
        status, location = self._request(f"POST {uploads}", "POST", start, b"", {"Content-Length": "0"})
        if status == 201 and start != uploads:
            return None
        if location is None:
            raise EncapsulateError(f"{self.ref}: the registry {self.host} gave no upload location; run again")
        content = lent.get(d.digest) or layout
        put = location + ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": d.digest})
        what = f"the upload of {d.digest}"
        try:
            with self.send(
                "PUT",
                put,
                _chunks(lambda: content.open_blob(d.digest)),
                {"Content-Type": "application/octet-stream", "Content-Length": str(d.size)},
                retry=False,
            ) as response:
                drain(response)
        except urllib.error.HTTPError as e:
            with e:
                fault = transient(e)
                if fault is None:
                    raise self._refused(what, e) from None
                drain(e)
                return e, fault
        except (OSError, http.client.HTTPException) as e:
            fault = transient(e)
            if fault is None:
                raise EncapsulateError(
                    f"{self.ref}: lost the registry {self.host} during {what} ({e}); run again"
                ) from None
            return e, fault
        return None

    def push_blob(self, d: Descriptor, layout: Layout, lent: Mapping[str, BlobStore]) -> None:
        """Put the blob ``d`` names into the repository unless it is there,
        and return once the registry says it holds it, of the right size
        (``present``).  An upload that meets a transient fault is made again
        from a new session, as ``registry.retry`` says."""
        if self.present(d):
            return
        started, tries = time.monotonic(), 0
        while True:
            failed = self._upload(d, layout, lent)
            if self.present(d):
                # Taken, even when the answer was lost on the way back.
                return
            if failed is None:
                failed = (None, f"the blob was not there with its {d.size} bytes after the upload")
            tries += 1
            self.pause(tries, failed[0], failed[1], f"the upload of {d.digest}", started)

    def push_image(
        self,
        layout_path: str,
        tag: str,
        lent: Mapping[str, BlobStore],
        before_manifest: Callable[[str], None] | None = None,
    ) -> str:
        """Push the image tagged ``tag`` in the layout (its ``lent`` blobs
        read from their stores, or mounted); the manifest's digest.  The
        manifest is sent once every blob is confirmed present (``push_blob``);
        a push that fails before leaves the tag where it was.
        ``before_manifest`` is called with that digest once the blobs are in,
        before the manifest is put (a signature is attached there)."""
        layout = Layout(layout_path, create=False)
        manifest_descriptor = layout.manifest_for(tag)
        raw = layout.read_blob(manifest_descriptor.digest, MAX_MANIFEST_BYTES)
        manifest = Manifest.parse(raw, manifest_descriptor, layout_path)
        blobs = [*manifest.layers, manifest.config]
        host = self.host
        self._url(host)  # found once, before the requests run in parallel
        with ThreadPoolExecutor(max_workers=_PARALLEL) as pool:
            list(pool.map(lambda d: self.push_blob(d, layout, lent), blobs))  # raises the first error
        if before_manifest is not None:
            before_manifest(manifest_descriptor.digest)
        reference = registry_reference(self.ref.location)
        path = f"/v2/{self.name}/manifests/{reference}"
        self._request(
            f"the manifest ({path})",
            "PUT",
            path,
            raw,
            {"Content-Type": manifest_descriptor.media_type, "Content-Length": str(len(raw))},
        )
        return manifest_descriptor.digest
