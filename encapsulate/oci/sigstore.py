"""Sigstore signatures of registry images, as containers/image and cosign store and check them.

In: a registry image (its manifest's digest), a ``SigningKey`` or a
``PublicKey`` (``encapsulate.keys``) and the reference the signature names.
Out: a signature attached in the registry, or the verdict on the ones there.

The format (facts from containers/image ``docker/docker_image_dest.go``,
``internal/signature/sigstore.go``, ``signature/internal/sigstore_payload.go``
and ``signature/policy_eval_sigstore.go``, and cosign ``pkg/oci/static``):

- the payload is cosign's "simple signing" JSON, ``{"critical": {"identity":
  {"docker-reference": REF}, "image": {"docker-manifest-digest": DIGEST},
  "type": "cosign container image signature"}, "optional": null}``;
- the signature is over the payload's bytes (SHA-256; ECDSA in ASN.1 DER),
  base64 in the annotation ``dev.cosignproject.cosign/signature`` of the
  payload's descriptor, of media type
  ``application/vnd.dev.cosign.simplesigning.v1+json``;
- each signature is one layer of an OCI manifest tagged ``sha256-HEX.sig`` in
  the image's repository (HEX: the signed manifest digest's), with a config
  whose ``rootfs.diff_ids`` list the layers' digests; a new signature is
  appended to the layers there, so earlier signatures stay.

A client with ``use-sigstore-attachments: true`` for the registry in
``registries.d`` and a ``sigstoreSigned`` entry in ``policy.json`` reads
them.  ``verify_image`` checks them as that client does: the signature
with the key, the payload's fields strictly, the signed digest against the
manifest the reference resolves to, and the signed reference against the
one asked for (``matchRepoDigestOrExact``: the same repository and tag; the
same repository when asked for by digest).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import urllib.error
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mapping.errors import show

from ..errors import EncapsulateError
from ..keys import PublicKey, SigningKey
from .imgref import ImageRef, RegistryOptions, parse_imgref
from .model import DOCKER_MANIFEST_LIST, MEDIA_CONFIG, MEDIA_INDEX, MEDIA_MANIFEST
from .registry import RegistrySession
from .retry import drain, registry_errors

# From cosign pkg/types.SimpleSigningMediaType and pkg/oci/static.SignatureAnnotationKey.
SIGNATURE_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
# containers/image signature/internal/sigstore_payload.go.
PAYLOAD_TYPE = "cosign container image signature"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_MANIFEST_TYPES = (MEDIA_MANIFEST, DOCKER_MANIFEST, MEDIA_INDEX, DOCKER_MANIFEST_LIST)
# Documents read here are small; larger ones are refused (containers/image's
# iolimits: 4 MiB for a manifest or a signature payload, 4 MiB for a config).
_DOCUMENT_LIMIT = 4 << 20
_HUB = "docker.io"
_LEGACY_HUB = "index.docker.io"
# The reference grammar of distribution/reference (regexp.go): lowercase path
# components joined by ".", "_", "__" or dashes; a host of DNS labels with an
# optional port; a tag of word characters, dots and dashes; a digest.
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?"
)
_PATH = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_NAME_LIMIT = 255


def signature_tag(digest: str) -> str:
    """The tag a manifest's signatures are stored at: ``ALGORITHM-HEX.sig``."""
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}-{hex_}.sig"


@dataclass(frozen=True)
class DockerReference:
    """A registry reference as containers/image normalises it: ``docker.io``
    for a name without a host, ``library/`` for a single Docker Hub name,
    ``latest`` when neither tag nor digest is given."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """``DOMAIN/PATH``."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        at = f"@{self.digest}" if self.digest else ""
        return f"{self.repository}{tag}{at}"

    @classmethod
    def parse(cls, text: str, option: str | None = None) -> DockerReference:
        """``[HOST/]REPO[:TAG][@DIGEST]`` (a ``registry:`` IMGREF's location,
        or the value of ``option``, named in an error)."""
        name, _, digest = text.lstrip("/").partition("@")
        slash, colon = name.rfind("/"), name.rfind(":")
        tag = None
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            domain, path = first, rest
        else:
            domain, path = _HUB, name
        if domain == _LEGACY_HUB:
            domain = _HUB
        if domain == _HUB and "/" not in path:
            path = f"library/{path}"
        if (
            not _DOMAIN.fullmatch(domain)
            or not _PATH.fullmatch(path)
            or len(f"{domain}/{path}") > _NAME_LIMIT
            or (tag is not None and not _TAG.fullmatch(tag))
            or (digest and not _DIGEST.fullmatch(digest))
        ):
            raise EncapsulateError(
                "not a registry reference",
                where=f"{option} {show(text)}" if option else show(text),
                hint="give HOST/REPO[:TAG] (lowercase repository names, as the registry grammar has them)",
            )
        return cls(domain, path, tag if tag or digest else "latest", digest or None)

    @classmethod
    def of(cls, ref: ImageRef) -> DockerReference:
        """The reference of a registry ``ImageRef``."""
        return cls.parse(ref.location)


def payload(digest: str, identity: str) -> bytes:
    """The simple-signing payload for the manifest ``digest`` under the
    reference ``identity``: Go's ``encoding/json`` output (sorted keys, no
    spaces), as cosign writes it, ``optional`` null, so the same image and
    reference always give the same bytes."""
    document = {
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": None,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _exact_object(value: Any, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != keys:
        raise ValueError(f"{what} is not an object of exactly {', '.join(sorted(keys))}")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key appears twice")
    return dict(pairs)


def parse_payload(data: bytes) -> tuple[str, str]:
    """The signed digest and reference of a payload, read as strictly as
    containers/image reads it (exactly the known fields, no key twice, the
    type cosign's); ``ValueError`` saying what is wrong otherwise."""
    document = json.loads(data, object_pairs_hook=_no_duplicate_keys)
    top = _exact_object(document, {"critical", "optional"}, "the payload")
    optional = top["optional"]
    if optional is not None and not isinstance(optional, dict):
        raise ValueError("optional is neither null nor an object")
    critical = _exact_object(top["critical"], {"identity", "image", "type"}, "critical")
    if critical["type"] != PAYLOAD_TYPE:
        raise ValueError(f"type {critical['type']!r:.80} is not {PAYLOAD_TYPE!r}")
    digest = _exact_object(critical["image"], {"docker-manifest-digest"}, "critical.image")[
        "docker-manifest-digest"
    ]
    identity = _exact_object(critical["identity"], {"docker-reference"}, "critical.identity")[
        "docker-reference"
    ]
    if not isinstance(digest, str) or not isinstance(identity, str):
        raise ValueError("the digest and reference are not strings")
    algorithm, colon, hex_ = digest.partition(":")
    if not colon or algorithm not in ("sha256", "sha512") or not hex_ or set(hex_) - set("0123456789abcdef"):
        raise ValueError(f"docker-manifest-digest {digest!r:.90} is not a digest")
    return digest, identity


@dataclass
class SignatureStore(RegistrySession):
    """The signatures of images in one registry repository (``ref``'s):
    manifests resolved, signature manifests read and written."""

    push: bool = False

    def __post_init__(self) -> None:
        if self.push:
            self.actions = "pull,push"
            self.tls_option = "--dest-tls-verify"

    def _fail(self, what: str, e: Exception, hint: str) -> EncapsulateError:
        if isinstance(e, urllib.error.HTTPError):
            detail = f"HTTP {e.code} {e.reason}"
            try:
                codes = registry_errors(e.read(_DOCUMENT_LIMIT))
            except OSError:
                codes = ""
            detail += f": {codes}" if codes else ""
            e.close()
        else:
            detail = str(getattr(e, "reason", e))
        return EncapsulateError(f"{what} failed ({detail[:300]})", where=show(str(self.ref)), hint=hint)

    def _read(self, path: str, accept: tuple[str, ...], what: str) -> tuple[bytes, str] | None:
        """The body and ``Content-Type`` of ``GET path``; None on ``404``."""
        headers = {"Accept": ", ".join(accept)} if accept else {}
        try:
            with self.send("GET", path, headers=headers) as response:
                data = response.read(_DOCUMENT_LIMIT + 1)
                kind = response.headers.get("Content-Type", "")  # type: ignore[attr-defined]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                e.close()
                return None
            raise self._fail(what, e, "check the reference and the credentials (--authfile)") from None
        except OSError as e:
            raise self._fail(what, e, "check that the registry runs, and run again") from None
        if len(data) > _DOCUMENT_LIMIT:
            raise EncapsulateError(f"{what}: larger than {_DOCUMENT_LIMIT} bytes", where=show(str(self.ref)))
        return data, kind.split(";")[0].strip()

    def manifest(self, reference: str) -> tuple[bytes, str, str] | None:
        """The manifest (or index) a tag or digest names: its bytes, media
        type and digest (of the bytes, as a client computes it); None when absent."""
        found = self._read(
            f"/v2/{self.name}/manifests/{reference}", _MANIFEST_TYPES, f"reading manifest {reference}"
        )
        if found is None:
            return None
        raw, kind = found
        if not kind or kind not in _MANIFEST_TYPES:
            try:
                kind = str(json.loads(raw).get("mediaType") or MEDIA_MANIFEST)
            except (ValueError, AttributeError):
                kind = MEDIA_MANIFEST
        return raw, kind, "sha256:" + hashlib.sha256(raw).hexdigest()

    def blob(self, digest: str) -> bytes:
        """A small blob, checked against its digest."""
        found = self._read(f"/v2/{self.name}/blobs/{digest}", (), f"reading blob {digest}")
        if found is None:
            raise EncapsulateError(f"blob {digest} is missing", where=show(str(self.ref)))
        data = found[0]
        algorithm, _, hex_ = digest.partition(":")
        if algorithm != "sha256" or hashlib.sha256(data).hexdigest() != hex_:
            raise EncapsulateError(f"blob {digest} does not match its digest", where=show(str(self.ref)))
        return data

    def _write(
        self, what: str, method: str, path: str, body: bytes, headers: dict[str, str], hint: str
    ) -> Any:
        try:
            with self.send(method, path, body, {**headers, "Content-Length": str(len(body))}) as response:
                drain(response)
                return response.headers  # type: ignore[attr-defined]
        except (urllib.error.HTTPError, OSError) as e:
            raise self._fail(what, e, hint) from None

    def put_blob(self, data: bytes, hint: str) -> str:
        """Put ``data`` into the repository as a blob (unless there); its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        try:
            with self.send("HEAD", f"/v2/{self.name}/blobs/{digest}"):
                return digest
        except urllib.error.HTTPError as e:
            e.close()
            if e.code != 404:
                raise self._fail(f"asking for blob {digest}", e, hint) from None
        except OSError as e:
            raise self._fail(f"asking for blob {digest}", e, hint) from None
        uploads = f"/v2/{self.name}/blobs/uploads/"
        headers = self._write(f"starting the upload of {digest}", "POST", uploads, b"", {}, hint)
        location = headers.get("Location")
        if not location:
            raise EncapsulateError(
                "the registry gave no upload location", where=show(str(self.ref)), hint=hint
            )
        put = location + ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})
        self._write(
            f"the upload of {digest}", "PUT", put, data, {"Content-Type": "application/octet-stream"}, hint
        )
        return digest

    def signatures(self, digest: str) -> list[tuple[bytes, dict[str, str]]]:
        """The simple-signing payloads attached to the manifest ``digest``,
        each with its descriptor's annotations (layers of other media types
        are left out, as containers/image leaves them)."""
        found = self.manifest(signature_tag(digest))
        if found is None:
            return []
        raw, _, _ = found
        try:
            layers = json.loads(raw).get("layers") or []
        except (ValueError, AttributeError):
            raise EncapsulateError(
                f"the signature manifest {signature_tag(digest)} is not JSON", where=show(str(self.ref))
            ) from None
        found_signatures = []
        for layer in layers:
            if not isinstance(layer, dict) or layer.get("mediaType") != SIGNATURE_MEDIA_TYPE:
                continue
            annotations = layer.get("annotations") or {}
            if not isinstance(annotations, dict) or not isinstance(layer.get("digest"), str):
                continue
            found_signatures.append(
                (self.blob(layer["digest"]), {str(k): str(v) for k, v in annotations.items()})
            )
        return found_signatures

    def attach(self, digest: str, data: bytes, signature: bytes, same_key: PublicKey | None = None) -> bool:
        """Attach ``signature`` (over the payload ``data``) to the manifest
        ``digest``: the payload and a config uploaded, then the signature
        manifest put at ``signature_tag(digest)`` with the layers already
        there and this one last.  A signature there already over the same
        payload by ``same_key`` is kept and nothing is written: False."""
        tag = signature_tag(digest)
        hint = (
            f"the registry must accept the tag {tag} in {self.name} (cosign's and containers/image's "
            "place for signatures); check its tag rules and the credentials (--authfile)"
        )
        existing = self.manifest(tag)
        manifest: dict[str, Any]
        config: dict[str, Any]
        if existing is None:
            # Not an image's config (describe.py makes those): the one
            # containers/image gives a new signature manifest, an empty
            # image-spec config whose diff_ids name the signature layers.
            signature_layers: dict[str, Any] = {"type": "layers", "diff_ids": []}
            manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "layers": []}
            config = {
                "architecture": "",
                "os": "",
                "config": {},
                "rootfs": signature_layers,
            }
        else:
            try:
                manifest = json.loads(existing[0])
                config_digest = manifest["config"]["digest"]
                config = json.loads(self.blob(config_digest))
                if not isinstance(manifest.get("layers"), list) or not isinstance(config.get("rootfs"), dict):
                    raise ValueError("layers")
            except (ValueError, KeyError, TypeError):
                raise EncapsulateError(
                    f"the signature manifest {tag} there is damaged",
                    where=show(str(self.ref)),
                    hint=f"delete the tag {tag}, then sign again",
                ) from None
            if same_key is not None:
                for layer in manifest["layers"]:
                    if (
                        isinstance(layer, dict)
                        and layer.get("mediaType") == SIGNATURE_MEDIA_TYPE
                        and layer.get("digest") == "sha256:" + hashlib.sha256(data).hexdigest()
                        and _signature_of(layer.get("annotations")) is not None
                        and same_key.verifies(_signature_of(layer.get("annotations")) or b"", data)
                    ):
                        return False
        layer_digest = self.put_blob(data, hint)
        layer = {
            "mediaType": SIGNATURE_MEDIA_TYPE,
            "digest": layer_digest,
            "size": len(data),
            "annotations": {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()},
        }
        manifest["layers"] = [*manifest["layers"], layer]
        rootfs = config["rootfs"]
        rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), layer_digest]
        config_bytes = json.dumps(config, separators=(",", ":")).encode()
        config_digest = self.put_blob(config_bytes, hint)
        # A signature manifest another tool wrote keeps its media types (a
        # Docker schema 2 one stays one); a new one is OCI's.
        config_type = (manifest.get("config") or {}).get("mediaType") or MEDIA_CONFIG
        manifest["config"] = {"mediaType": config_type, "digest": config_digest, "size": len(config_bytes)}
        manifest_type = manifest.get("mediaType") or (existing[1] if existing else MEDIA_MANIFEST)
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        self._write(
            f"putting the signature manifest {tag}",
            "PUT",
            f"/v2/{self.name}/manifests/{tag}",
            raw,
            {"Content-Type": manifest_type},
            hint,
        )
        return True


def _signature_of(annotations: Any) -> bytes | None:
    if not isinstance(annotations, dict) or not isinstance(annotations.get(SIGNATURE_ANNOTATION), str):
        return None
    try:
        return base64.b64decode(annotations[SIGNATURE_ANNOTATION], validate=True)
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class Signer:
    """Signing at push: the ``key`` (decrypted before anything is pushed) and
    the reference signed (``identity``; default: the destination's)."""

    key: SigningKey
    identity: str | None = None

    def identity_for(self, ref: ImageRef) -> str:
        """The reference a signature of ``ref``'s image names."""
        if self.identity is not None:
            return str(DockerReference.parse(self.identity, "--sign-identity"))
        return str(DockerReference.of(ref))

    def before_manifest(self, store: SignatureStore) -> Callable[[str], None]:
        """What a push calls once the blobs are in and before the manifest
        is put: the signature of that manifest digest attached, so the tag
        names no unsigned image, even for a moment; a registry refusing the
        signature stops the push before the image is tagged."""

        return lambda digest: self.sign_pushed(store, digest)

    def sign_pushed(self, store: SignatureStore, digest: str) -> None:
        """Attach the signature of the manifest ``digest`` in ``store``'s
        repository, naming this signer's identity for its reference."""
        data = payload(digest, self.identity_for(store.ref))
        store.attach(digest, data, self.key.sign(data), same_key=self.key.public)


@dataclass(frozen=True)
class SignResult:
    """What ``sign_image`` did: the manifest digest signed, the reference
    named, and whether a signature was added (False: the same one was there)."""

    digest: str
    identity: str
    added: bool


def _resolve(store: SignatureStore, ref: ImageRef) -> tuple[str, DockerReference]:
    reference = DockerReference.of(ref)
    asked = reference.digest or reference.tag or "latest"
    found = store.manifest(asked)
    if found is None:
        raise EncapsulateError(
            f"no manifest {asked} in {store.name}", where=show(str(ref)), hint="check the reference"
        )
    digest = found[2]
    if reference.digest is not None and digest != reference.digest:
        raise EncapsulateError(
            f"the registry gave a manifest of digest {digest} for {reference.digest}", where=show(str(ref))
        )
    return digest, reference


def sign_image(
    ref: ImageRef, registry: RegistryOptions, key: SigningKey, identity: str | None = None
) -> SignResult:
    """Sign the image ``ref`` already in a registry: its manifest (as the
    reference resolves it) signed for ``identity`` (default: ``ref``)."""
    store = SignatureStore(ref, registry, push=True)
    digest, reference = _resolve(store, ref)
    signed = str(DockerReference.parse(identity, "--identity")) if identity is not None else str(reference)
    data = payload(digest, signed)
    added = store.attach(digest, data, key.sign(data), same_key=key.public)
    return SignResult(digest, signed, added)


def check_stored(store: SignatureStore, reference: str, digest: str) -> None:
    """That the registry holds the manifest pushed under ``reference`` as
    the ``digest`` signed (it stores manifests byte for byte; one that
    rewrote it would leave a signature of another digest)."""
    found = store.manifest(reference)
    if found is None or found[2] != digest:
        now = "nothing" if found is None else found[2]
        raise EncapsulateError(
            f"the registry holds {now} at {reference}, not the manifest {digest} pushed and signed",
            where=show(str(store.ref)),
            hint="push again; if it persists, the registry rewrites manifests: sign with 'debchunk sign'",
        )


@dataclass(frozen=True)
class Verdict:
    """What ``verify_image`` found: ``digest`` the manifest the reference
    resolves to; ``identity`` the reference a valid signature names (None:
    none valid); ``signatures`` how many were attached; ``problems`` why each
    of the others was refused."""

    ref: str
    digest: str
    identity: str | None
    signatures: int
    problems: tuple[str, ...] = field(default=())

    @property
    def valid(self) -> bool:
        """Whether one signature is accepted."""
        return self.identity is not None


def _identity_problem(signed: str, asked: DockerReference, expected: str | None) -> str | None:
    """Why ``signed`` does not fit: ``expected`` (``exactReference``), else
    ``matchRepoDigestOrExact`` against ``asked``."""
    try:
        got = DockerReference.parse(signed)
    except EncapsulateError:
        return f"the signed reference {show(signed)!r:.100} is not a registry reference"
    if expected is not None:
        want = DockerReference.parse(expected, "--identity")
        return None if got == want else f"it names {show(str(got))}, not {show(str(want))}"
    if asked.digest is not None:
        return (
            None if got.repository == asked.repository else f"it names {show(str(got))}, another repository"
        )
    if got.digest is None and got == asked:
        return None
    return f"it names {show(str(got))}, not {asked}"


def verify_image(
    ref: ImageRef, registry: RegistryOptions, key: PublicKey, identity: str | None = None
) -> Verdict:
    """Check the sigstore signatures of the image ``ref`` as containers/image
    does for a ``sigstoreSigned`` policy with ``key``: one signature must be
    the key's over a payload naming the manifest ``ref`` resolves to (the
    digest of its bytes) and a fitting reference (``identity`` exactly, when
    given, else ``matchRepoDigestOrExact``)."""
    if identity is not None:
        DockerReference.parse(identity, "--identity")
    store = SignatureStore(ref, registry)
    digest, asked = _resolve(store, ref)
    attached = store.signatures(digest)
    problems = []
    for data, notes in attached:
        signature = _signature_of(notes)
        if signature is None:
            problems.append(f"no base64 {SIGNATURE_ANNOTATION} annotation")
            continue
        if not key.verifies(signature, data):
            problems.append("not made by this key")
            continue
        try:
            signed_digest, signed = parse_payload(data)
        except ValueError as e:
            problems.append(f"its payload is invalid ({show(str(e))[:120]})")
            continue
        if signed_digest != digest:
            problems.append(f"it signs {signed_digest}, not this manifest {digest}")
            continue
        problem = _identity_problem(signed, asked, identity)
        if problem is not None:
            problems.append(problem)
            continue
        return Verdict(str(ref), digest, signed, len(attached), tuple(problems))
    return Verdict(str(ref), digest, None, len(attached), tuple(problems))


def registry_imgref(text: str) -> ImageRef:
    """A registry IMGREF (``registry:HOST/REPO[:TAG]``, ``docker://...``)."""
    ref = parse_imgref(text)
    if not ref.registry:
        raise EncapsulateError(
            f"{show(text)}: signatures are stored in a registry",
            hint="give registry:HOST/REPO[:TAG] or docker://HOST/REPO[:TAG]",
        )
    return ref
