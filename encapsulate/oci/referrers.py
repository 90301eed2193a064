"""Artifacts attached to an image in a registry: pushed with the image as
their ``subject``, and found again.

In: a registry ``ImageRef``, the descriptor of an image's manifest there
(the subject) and the artifact's bytes (an SBOM).  Out: the artifact in the
registry, as OCI image-spec v1.1 says an artifact is stored ("Guidelines for
Artifact Usage"): an image manifest whose ``artifactType`` is the artifact's
media type, whose config is the empty descriptor (the two bytes ``{}``,
``application/vnd.oci.empty.v1+json``), whose one layer is the artifact and
whose ``subject`` is the image; and the artifact read back (``attached``).

Registries that implement the referrers API (OCI distribution-spec v1.1,
"Listing Referrers") index the artifact themselves: they answer the manifest
``PUT`` with an ``OCI-Subject`` header, and ``GET /v2/<name>/referrers/<digest>``
with an image index of the manifests whose subject is that digest.  The
others (Debian 12's docker-registry 2.8 among them: it stores the manifest
with its ``subject`` and ``artifactType`` unchanged, sends no ``OCI-Subject``
and answers the referrers path with a plain-text 404) get the tag fallback of
the same spec ("Referrers Tag Schema", "Pushing Manifests with Subject"): an
image index at the tag ``<algorithm>-<hex>`` of the subject's digest, listing
the referrers, which the client pulls, extends and pushes back.  Readers ask
the referrers API first and take the tag when it answers 404.

``attach`` returns the artifact manifest's digest: what a signer signs to
sign the artifact.
"""

from __future__ import annotations

import json
import re
import tempfile
import urllib.error
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mapping.errors import show

from ..errors import EncapsulateError
from .imgref import ImageRef, RegistryOptions
from .layout import Layout, canonical_json
from .model import MEDIA_INDEX, MEDIA_MANIFEST, Descriptor, Digest
from .push import RegistryPush
from .registry import RegistrySession
from .retry import drain

# The empty descriptor's media type and content (image-spec v1.1, manifest.md
# "Guidance for an Empty Descriptor").
MEDIA_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
# The annotation saying when an artifact was made (image-spec annotations.md).
CREATED_ANNOTATION = "org.opencontainers.image.created"
# The header a registry with the referrers API answers a manifest with a subject with.
SUBJECT_HEADER = "OCI-Subject"
# The most a manifest or index read back may hold (the distribution spec
# asks registries to take manifests of at least 4 MB), and an artifact.
_DOCUMENT_LIMIT = 4 << 20
ARTIFACT_LIMIT = 256 << 20
# Pages of a referrers list followed, at most.
_PAGES = 64
# What the fallback tag is asked for: an index, or what else it holds, to be
# told apart (docker-registry answers 404 for a manifest the Accept header leaves out).
_TAG_ACCEPT = f"{MEDIA_INDEX}, {MEDIA_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


def referrers_tag(digest: str) -> str:
    """The tag holding the referrers of ``digest`` where a registry has no
    referrers API (distribution-spec v1.1, "Referrers Tag Schema"): the
    algorithm cut to 32 characters, ``-``, the hex cut to 64, characters a tag
    cannot hold replaced by ``-``."""
    algorithm, _, encoded = digest.partition(":")
    return _TAG_UNSAFE.sub("-", f"{algorithm[:32]}-{encoded[:64]}")


def artifact_manifest(
    artifact: Descriptor, subject: Descriptor, config: Descriptor, annotations: dict[str, str]
) -> bytes:
    """The image manifest carrying one artifact (image-spec v1.1,
    "Guidelines for Artifact Usage"), as canonical JSON: the same artifact
    and subject give the same bytes, so the same digest."""
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "artifactType": artifact.media_type,
        "config": config.to_json(),
        "layers": [artifact.to_json()],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
    }
    if annotations:
        document["annotations"] = dict(sorted(annotations.items()))
    return canonical_json(document)


@dataclass(frozen=True)
class Attached:
    """An artifact pushed (``attach``): its manifest's descriptor, and how
    the registry lists it (``"the referrers API"`` or ``"the tag <name>"``, the fallback tag)."""

    manifest: Descriptor
    listed_by: str


class _Session(RegistrySession):
    """Manifest and blob requests to one repository, errors as ``EncapsulateError``."""

    def get(self, path: str, accept: str, what: str, limit: int) -> tuple[bytes, dict[str, str]] | None:
        """The body (up to ``limit`` bytes) and headers of ``GET path``; None for a 404."""
        try:
            with self.send("GET", path, headers={"Accept": accept}) as response:
                data = response.read(limit + 1)
                headers = {k.lower(): v for k, v in response.headers.items()}  # type: ignore[attr-defined]
        except urllib.error.HTTPError as e:
            with e:
                if e.code == 404:
                    return None
                raise EncapsulateError(
                    f"{self.ref}: the registry answered HTTP {e.code} {e.reason} to GET {what}",
                    hint="check the image reference and the credentials (--authfile)",
                ) from None
        except OSError as e:
            raise EncapsulateError(f"{self.ref}: GET {what}: {e}; check that the registry runs") from None
        if len(data) > limit:
            raise EncapsulateError(f"{self.ref}: {what} is larger than {limit} bytes; it is not read")
        return data, headers


def _index_entries(data: bytes, what: str, where: str) -> list[dict[str, Any]]:
    """The ``manifests`` of an image index's bytes; an error when they are not one."""
    try:
        document = json.loads(data)
    except ValueError as e:
        raise EncapsulateError(f"{where}: {what} is not JSON ({e})") from None
    if (
        not isinstance(document, dict)
        or document.get("mediaType", MEDIA_INDEX) != MEDIA_INDEX
        or not isinstance(document.get("manifests"), list)
        or not all(isinstance(m, dict) for m in document["manifests"])
    ):
        raise EncapsulateError(
            f"{where}: {what} is not an image index of referrers",
            hint="remove or fix that tag; it is where registries without the referrers API list them",
        )
    return list(document["manifests"])


def index_bytes(entries: list[dict[str, Any]]) -> bytes:
    """An image index listing ``entries``, as canonical JSON."""
    return canonical_json({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries})


class _ArtifactPush(RegistryPush):
    """The pushes of one artifact, with the manifest ``PUT``'s headers kept."""

    def put_manifest(self, reference: str, raw: bytes, media_type: str) -> dict[str, str]:
        """``PUT /v2/<name>/manifests/<reference>``; the response's headers."""
        path = f"/v2/{self.name}/manifests/{reference}"
        try:
            with self.send(
                "PUT", path, raw, {"Content-Type": media_type, "Content-Length": str(len(raw))}
            ) as response:
                drain(response)
                return {k.lower(): v for k, v in response.headers.items()}  # type: ignore[attr-defined]
        except urllib.error.HTTPError as e:
            with e:
                raise self._refused(f"the manifest ({path})", e) from None
        except OSError as e:
            raise EncapsulateError(
                f"{self.ref}: lost the registry {self.host} during the manifest PUT ({e}); run again"
            ) from None


def attach(
    ref: ImageRef,
    registry: RegistryOptions,
    subject: Descriptor,
    data: bytes,
    media_type: str,
    annotations: dict[str, str] | None = None,
) -> Attached:
    """Push ``data`` (of ``media_type``) to the repository of ``ref`` as an
    artifact whose subject is the image ``subject``, and list it among the
    subject's referrers: by the registry (referrers API) or in the fallback
    tag's index.  The artifact's manifest is pushed by digest; pushed twice,
    the same bytes are the same manifest, listed once."""
    push = _ArtifactPush(ref, registry)
    with tempfile.TemporaryDirectory(prefix="debchunk-artifact-") as tmp, Layout(tmp) as layout:
        config = layout.add_bytes(EMPTY_CONFIG, MEDIA_EMPTY)
        artifact = layout.add_bytes(data, media_type)
        for d in (config, artifact):
            push.push_blob(d, layout, {})
    raw = artifact_manifest(artifact, subject, config, annotations or {})
    manifest = Descriptor(MEDIA_MANIFEST, Digest.of(raw), len(raw))
    headers = push.put_manifest(manifest.digest, raw, MEDIA_MANIFEST)
    if headers.get(SUBJECT_HEADER.lower()):
        return Attached(manifest, "the referrers API")
    tag = referrers_tag(subject.digest)
    session = _Session(ref, registry)
    found = session.get(
        f"/v2/{session.name}/manifests/{tag}", _TAG_ACCEPT, f"the referrers tag {tag}", _DOCUMENT_LIMIT
    )
    entries = [] if found is None else _index_entries(found[0], f"the tag {tag}", str(ref))
    if not any(e.get("digest") == manifest.digest for e in entries):
        entry: dict[str, Any] = {
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest.digest,
            "size": manifest.size,
            "artifactType": media_type,
        }
        if annotations:
            entry["annotations"] = dict(sorted(annotations.items()))
        entries.append(entry)
        push.put_manifest(tag, index_bytes(entries), MEDIA_INDEX)
    return Attached(manifest, f"the tag {tag}")


def _referrer_pages(session: _Session, subject: str, artifact_type: str) -> Iterator[bytes] | None:
    """The pages of the referrers API's answer for ``subject``; None when the
    registry has no referrers API (it answers 404)."""
    query = urllib.parse.urlencode({"artifactType": artifact_type})
    first = session.get(
        f"/v2/{session.name}/referrers/{subject}?{query}",
        MEDIA_INDEX,
        f"the referrers of {subject}",
        _DOCUMENT_LIMIT,
    )
    if first is None:
        return None

    def pages(page: tuple[bytes, dict[str, str]]) -> Iterator[bytes]:
        for _ in range(_PAGES):
            yield page[0]
            link = _NEXT.search(page[1].get("link", ""))
            if link is None:
                return
            following = session.get(
                link.group(1), MEDIA_INDEX, f"the referrers of {subject}", _DOCUMENT_LIMIT
            )
            if following is None:
                return
            page = following

    return pages(first)


def referrers(
    ref: ImageRef, registry: RegistryOptions, subject: str, artifact_type: str
) -> tuple[list[Descriptor], str]:
    """The manifests of artifacts of ``artifact_type`` whose subject is the
    manifest ``subject`` in the repository of ``ref``, in the order listed,
    and where the list came from (``"the referrers API"`` or ``"the tag <name>"``)."""
    session = _Session(ref, registry)
    pages = _referrer_pages(session, subject, artifact_type)
    entries: list[dict[str, Any]] = []
    if pages is not None:
        source = "the referrers API"
        for page in pages:
            entries += _index_entries(page, f"the referrers of {subject}", str(ref))
    else:
        tag = referrers_tag(subject)
        source = f"the tag {tag}"
        found = session.get(f"/v2/{session.name}/manifests/{tag}", _TAG_ACCEPT, source, _DOCUMENT_LIMIT)
        # No tag: nothing is attached (distribution-spec, "Unavailable Referrers API").
        if found is not None:
            entries = _index_entries(found[0], f"the tag {source}", str(ref))
    out = []
    for k, entry in enumerate(entries, 1):
        if entry.get("artifactType") == artifact_type:
            out.append(Descriptor.from_json(entry, f"{ref}: referrer {k} of {subject}"))
    return out, source


def read_artifact(
    ref: ImageRef, registry: RegistryOptions, manifest: Descriptor, subject: str, media_type: str
) -> bytes:
    """The artifact of ``media_type`` the artifact manifest ``manifest``
    carries, checked: the manifest's bytes and the artifact's against their
    digests and sizes, and the manifest's subject against ``subject``."""
    session = _Session(ref, registry)
    what = f"artifact manifest {manifest.digest}"
    found = session.get(
        f"/v2/{session.name}/manifests/{manifest.digest}", MEDIA_MANIFEST, what, _DOCUMENT_LIMIT
    )
    if found is None:
        raise EncapsulateError(
            f"{ref}: the {what} is listed as a referrer of {subject} but is not in the registry",
            hint="attach the SBOM again (build with --sbom)",
        )
    manifest.check(found[0], f"{ref}: {what}")
    try:
        document = json.loads(found[0])
    except ValueError as e:
        raise EncapsulateError(f"{ref}: {what} is not JSON ({e})") from None
    named = (document.get("subject") or {}).get("digest") if isinstance(document, dict) else None
    if named != subject:
        raise EncapsulateError(
            f"{ref}: {what} names the subject {show(str(named))}, not {subject}",
            hint="the referrers list is wrong: attach the SBOM again",
        )
    layers = [Descriptor.from_json(d, f"{ref}: {what}: layer") for d in document.get("layers") or []]
    layers = [d for d in layers if d.media_type == media_type]
    if len(layers) != 1:
        raise EncapsulateError(f"{ref}: {what} holds {len(layers)} layers of type {media_type}, not one")
    blob = layers[0]
    if blob.size > ARTIFACT_LIMIT:
        raise EncapsulateError(f"{ref}: the artifact {blob.digest} is {blob.size} bytes; it is not read")
    got = session.get(f"/v2/{session.name}/blobs/{blob.digest}", "*/*", f"blob {blob.digest}", blob.size)
    if got is None:
        raise EncapsulateError(f"{ref}: the artifact's blob {blob.digest} is not in the registry")
    blob.check(got[0], f"{ref}: artifact {blob.digest}")
    return got[0]
