"""The OCI image model: digests, descriptors, image indexes, manifests and
image configs, each parsed and checked once.

In: the bytes of an index, a manifest or a config as read from a layout, an
archive or skopeo, and the descriptor that names them (when one does).
Out: frozen values (``Digest``, ``Descriptor``, ``ImageIndex``, ``Manifest``,
``ImageConfig``) whose fields have the types the image-spec gives them, so
readers use them without checking again.  ``parse`` checks the bytes against
the descriptor's digest and size before reading them as JSON (Trust: "verify
before use"), then the shape; a fault is one ``EncapsulateError`` naming the
image, the object and its digest.  Every index, manifest and config is
also checked against the image-spec JSON schemas in ``schemas/`` (the ones
``debchunk validate`` reports against: ``schema_faults`` is their one home),
so a field of the wrong type (``"Cmd": 42``) is refused when it is read, not
copied into an image that ``validate`` would reject.  What the schemas allow
but debchunk does not know (unknown media types) is kept as found.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from mapping.errors import show

from ..errors import EncapsulateError
from .platform import Platform

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

# Media types (OCI image-spec v1.1, "Media Types"; Docker image manifest v2, schema 2).
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (MEDIA_INDEX, DOCKER_MANIFEST_LIST)
# Layer media type -> how its tar is compressed (image-spec "Media Types" and
# layer.md; Docker image manifest v2, schema 2).
LAYER_COMPRESSION = {
    MEDIA_LAYER_TAR: "none",
    MEDIA_LAYER_GZIP: "gzip",
    MEDIA_LAYER_ZSTD: "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}
# Digest algorithms read (image-spec descriptor.md, "Registered algorithms")
# -> the length of their lowercase hex encoding.
ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = frozenset("0123456789abcdef")
# The JSON schemas in ``encapsulate/schemas/`` (after the OCI image-spec
# v1.1's): ``defs`` is shared, the others are checked against.
SCHEMAS = ("defs", "layout", "index", "manifest", "config")
# What a schema fault's message is cut to.
_MESSAGE_LIMIT = 160
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What to do about a document that breaks the schema.
INVALID_HINT = "the image is invalid: 'debchunk validate' lists every problem; fix or rebuild it"


@functools.cache
def _validators() -> dict[str, Validator]:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schemas = {
        name: json.loads(
            resources.files("encapsulate").joinpath("schemas", f"{name}.json").read_text("utf-8")
        )
        for name in SCHEMAS
    }
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values()
    )
    return {name: Draft202012Validator(s, registry=registry) for name, s in schemas.items()}


def json_path(parts: object) -> str:
    """A field's place in a document as messages name it: ``config.Cmd``,
    ``history[2].created``, ``config.Labels["a key"]`` (a key that is not a
    plain name is quoted as JSON, so it stays one printable line)."""
    out = ""
    for part in parts if isinstance(parts, list | tuple) else ():
        if isinstance(part, int):
            out += f"[{part}]"
        elif _NAME.fullmatch(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{json.dumps(str(part))}]"
    return out or "top level"


def _closest(error: ValidationError) -> ValidationError:
    """Of an ``anyOf``'s failed alternatives, the one that came closest: the
    deepest in the document (``{"k": 1}`` as labels: ``k`` is not a string),
    else one other than "not null" (``42`` as ``Cmd``: not an array)."""
    while error.context:
        error = max(error.context, key=lambda e: (len(e.absolute_path), e.validator_value != "null"))
    return error


def schema_faults(kind: str, document: Any) -> list[tuple[str, str]]:
    """``document`` checked against the schema ``kind`` (``layout``,
    ``index``, ``manifest``, ``config``): per violation, the field's path
    (``json_path``) and what is wrong with it, printable and one line."""
    out = []
    errors = _validators()[kind].iter_errors(document)
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        deepest = _closest(error)
        message = show(deepest.message)
        if len(message) > _MESSAGE_LIMIT:
            message = message[: _MESSAGE_LIMIT - 1] + "…"
        out.append((json_path(list(deepest.absolute_path)), message))
    return out


def schema_problems(kind: str, document: Any, what: str) -> list[str]:
    """``schema_faults`` as lines that name ``what`` (a blob, a file)."""
    return [
        f"{what}: does not follow the OCI {kind} schema at {where}: {message}"
        for where, message in schema_faults(kind, document)
    ]


def check_schema(kind: str, document: Any, what: str, hint: str = INVALID_HINT) -> None:
    """Refuse ``document`` (named ``what``) unless it follows the schema
    ``kind``: an ``EncapsulateError`` naming its first faulty field."""
    faults = schema_faults(kind, document)
    if faults:
        where, message = faults[0]
        more = f" (and {len(faults) - 1} more)" if len(faults) > 1 else ""
        raise EncapsulateError(
            f"{where} does not follow the OCI image-spec {kind} schema: {message}{more}",
            where=what,
            hint=hint,
        )


class Digest(str):
    """A content digest, ``ALGORITHM:HEX``: sha256 or sha512 and lowercase
    hex of its length, checked when made (``ValueError`` otherwise).  It is a
    ``str``, so it is compared, hashed, printed and written to JSON as the
    text it is; this class is the one place that splits it."""

    __slots__ = ()

    def __new__(cls, text: str) -> Digest:
        if type(text) is cls:
            return text
        algorithm, _, hexdigest = str(text).partition(":")
        if ALGORITHMS.get(algorithm) != len(hexdigest) or not _HEX.issuperset(hexdigest):
            raise ValueError(f"{text!r} is not a sha256 or sha512 digest")
        return super().__new__(cls, text)

    @classmethod
    def parse(cls, value: object, what: str) -> Digest:
        """``value`` as a digest; an ``EncapsulateError`` naming ``what`` when it is not one."""
        if not isinstance(value, str):
            raise EncapsulateError(f"{what}: digest {value!r} is not a sha256 or sha512 digest")
        try:
            return cls(value)
        except ValueError:
            raise EncapsulateError(f"{what}: digest {value!r} is not a sha256 or sha512 digest") from None

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``."""
        return cls(f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}")

    @classmethod
    def of_hash(cls, h: hashlib._Hash) -> Digest:
        """The digest a finished ``hashlib`` object holds."""
        return cls(f"{h.name}:{h.hexdigest()}")

    @property
    def algorithm(self) -> str:
        """``sha256`` or ``sha512``."""
        return self.partition(":")[0]

    @property
    def hex(self) -> str:
        """The hex part."""
        return self.partition(":")[2]

    @property
    def short(self) -> str:
        """The algorithm and the first 12 hex digits, for tables."""
        return f"{self.algorithm}:{self.hex[:12]}"

    def hasher(self) -> hashlib._Hash:
        """A new hash of this digest's algorithm."""
        return hashlib.new(self.algorithm)


def _strings(value: object, what: str) -> dict[str, str]:
    """A JSON object of strings (annotations, labels); null or absent is empty."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise EncapsulateError(f"{what}: not an object of strings; the image is damaged")
    return {str(k): v for k, v in value.items()}


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (image-spec descriptor.md)."""

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    # Where a foreign (non-distributable) blob is fetched from.
    urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The descriptor as OCI JSON."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out

    @classmethod
    def from_json(cls, data: object, what: str = "descriptor") -> Descriptor:
        """Read a descriptor; an ``EncapsulateError`` naming ``what`` when it is malformed."""
        if not isinstance(data, dict):
            raise EncapsulateError(f"{what}: the descriptor is not a JSON object; the image is damaged")
        media_type, size, urls = data.get("mediaType"), data.get("size"), data.get("urls") or []
        if not isinstance(media_type, str):
            raise EncapsulateError(f"{what}: the descriptor has no media type; the image is damaged")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise EncapsulateError(f"{what}: size {size!r} is not a byte count; the image is damaged")
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise EncapsulateError(f"{what}: urls is not a list of strings; the image is damaged")
        digest = Digest.parse(data.get("digest"), what)
        return cls(media_type, digest, size, _strings(data.get("annotations"), what), tuple(urls))

    def check(self, data: bytes, what: str) -> None:
        """Refuse ``data`` unless it is the blob this descriptor names (its size and digest)."""
        found = Digest.of(data, self.digest.algorithm)
        if len(data) != self.size or found != self.digest:
            raise EncapsulateError(f"{what}: {blob_mismatch(len(data), found, self)}; the image is damaged")


def blob_mismatch(found_size: int, found: str, expected: Descriptor, whose: str = "descriptor") -> str:
    """How a blob of ``found_size`` bytes and digest ``found`` differs from
    ``expected`` (the ``whose`` descriptor: a manifest's, an index's)."""
    if found_size < expected.size:
        return f"truncated: {found_size} of {expected.size} bytes"
    return f"its {found_size} bytes have digest {found}, not the {whose}'s {expected.size} bytes"


def _document(data: bytes, expected: Descriptor | None, what: str) -> dict[str, Any]:
    """``data`` checked against ``expected`` and read as a JSON object."""
    if expected is not None:
        expected.check(data, what)
    try:
        value = json.loads(data)
    except ValueError:
        raise EncapsulateError(f"{what}: not JSON; the image is damaged") from None
    if not isinstance(value, dict):
        raise EncapsulateError(f"{what}: not a JSON object; the image is damaged")
    return value


def _optional_str(document: Mapping[str, Any], key: str, what: str) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise EncapsulateError(f"{what}: {key} {value!r:.40} is not a string; the image is damaged")
    return value


def is_index(media_type: str | None, document: Mapping[str, Any]) -> bool:
    """Whether a document (named by a descriptor of ``media_type``) is an image index."""
    return media_type in INDEX_TYPES or document.get("mediaType") in INDEX_TYPES


@dataclass(frozen=True)
class IndexEntry:
    """One image of an image index: its manifest's descriptor and its platform."""

    descriptor: Descriptor
    os: str | None
    architecture: str | None
    variant: str | None

    @property
    def platform_name(self) -> str:
        """``os/architecture`` as messages show it (``?`` for what is not said)."""
        return f"{self.os or '?'}/{self.architecture or '?'}"


@dataclass(frozen=True)
class ImageIndex:
    """An image index (a multi-platform image), image-spec image-index.md."""

    manifests: tuple[IndexEntry, ...]

    @classmethod
    def from_json(cls, document: Mapping[str, Any], what: str) -> ImageIndex:
        """Read an index document; errors name ``what``."""
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise EncapsulateError(f"{what}: the image index lists no manifests; the image is damaged")
        out = []
        for k, entry in enumerate(entries):
            descriptor = Descriptor.from_json(entry, f"{what}: manifests[{k}]")
            platform = entry.get("platform")
            platform = platform if isinstance(platform, dict) else {}
            fields = (_optional_str(platform, key, what) for key in ("os", "architecture", "variant"))
            out.append(IndexEntry(descriptor, *fields))
        return cls(tuple(out))

    @classmethod
    def parse(cls, data: bytes, expected: Descriptor | None, what: str) -> ImageIndex:
        """An index from its bytes, checked against ``expected`` first."""
        return cls.from_json(_document(data, expected, what), what)

    def choose(self, platform: Platform, what: str) -> Descriptor:
        """The manifest of ``platform``; fails listing the index's platforms when none fits."""
        for entry in self.manifests:
            if platform.matches(entry.os, entry.architecture, entry.variant):
                return entry.descriptor
        if not self.manifests:
            raise EncapsulateError(f"{what}: the image index lists no manifests; the image is damaged")
        found = ", ".join(sorted({show(e.platform_name) for e in self.manifests}))
        raise EncapsulateError(
            f"{what}: the image index has no {platform} image (it has {found}); choose one of those"
        )


@dataclass(frozen=True)
class Manifest:
    """An image manifest (image-spec manifest.md; Docker's schema 2 reads the
    same): its config and layer descriptors, its annotations, and its own
    digest, size and bytes (as stored, so they can be sent on unchanged)."""

    digest: Digest
    size: int
    media_type: str | None
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str]
    raw: bytes = field(repr=False)

    @classmethod
    def parse(cls, data: bytes, expected: Descriptor | None, where: str) -> Manifest:
        """A manifest from its bytes, checked against ``expected`` (when the
        bytes were found by tag, there is none: their digest is theirs)."""
        found = manifest_or_index(data, expected, where)
        if isinstance(found, ImageIndex):
            raise EncapsulateError(f"{where}: an image index, where an image manifest was expected")
        return found

    @classmethod
    def from_document(cls, document: Mapping[str, Any], data: bytes, digest: Digest, where: str) -> Manifest:
        """A manifest from its parsed ``document`` (its bytes ``data``, already checked)."""
        what = f"{where}: manifest {digest}"
        if "config" not in document:
            raise EncapsulateError(f"{what}: the manifest names no config; the image is damaged")
        config = Descriptor.from_json(document["config"], f"{what}: config")
        layers = document.get("layers")
        if not isinstance(layers, list):
            raise EncapsulateError(f"{what}: layers is not a list; the image is damaged")
        return cls(
            digest,
            len(data),
            _optional_str(document, "mediaType", what),
            config,
            tuple(Descriptor.from_json(d, f"{what}: layer {k}") for k, d in enumerate(layers, 1)),
            _strings(document.get("annotations"), f"{what}: annotations"),
            data,
        )


def manifest_or_index(data: bytes, expected: Descriptor | None, where: str) -> Manifest | ImageIndex:
    """What a tag names: a manifest, or an image index (by the descriptor's
    media type or the document's own), from its bytes checked against ``expected``."""
    digest = expected.digest if expected is not None else Digest.of(data)
    document = _document(data, expected, f"{where}: manifest {digest}")
    if is_index(None if expected is None else expected.media_type, document):
        check_schema("index", document, f"{where}: image index {digest}")
        return ImageIndex.from_json(document, f"{where}: image index {digest}")
    check_schema("manifest", document, f"{where}: manifest {digest}")
    return Manifest.from_document(document, data, digest, where)


@dataclass(frozen=True)
class ImageConfig:
    """An image config (image-spec config.md): the platform, ``created``,
    the runtime settings (``config``, with its ``Labels``), ``rootfs.diff_ids``
    and ``history``.  ``document`` is the whole config as read, for what a
    build passes on unchanged."""

    digest: Digest
    size: int
    architecture: str | None
    variant: str | None
    os: str | None
    created: str | None
    runtime: dict[str, Any]
    labels: dict[str, str]
    diff_ids: tuple[Digest, ...]
    history: tuple[dict[str, Any], ...]
    document: dict[str, Any] = field(repr=False)

    @classmethod
    def parse(cls, data: bytes, expected: Descriptor, where: str) -> ImageConfig:
        """A config from its bytes, checked against the manifest's ``expected`` descriptor first."""
        what = f"{where}: config {expected.digest}"
        document = _document(data, expected, what)
        check_schema("config", document, what)
        runtime = document.get("config")
        if runtime is None:
            runtime = {}
        if not isinstance(runtime, dict):
            raise EncapsulateError(f"{what}: config is not an object; the image is damaged")
        rootfs = document.get("rootfs") or {}
        if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids") or [], list):
            raise EncapsulateError(f"{what}: rootfs.diff_ids is not a list; the image is damaged")
        diff_ids = rootfs.get("diff_ids") or []
        history = document.get("history") or []
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise EncapsulateError(f"{what}: history is not a list of objects; the image is damaged")
        return cls(
            expected.digest,
            len(data),
            _optional_str(document, "architecture", what),
            _optional_str(document, "variant", what),
            _optional_str(document, "os", what),
            _optional_str(document, "created", what),
            runtime,
            _strings(runtime.get("Labels"), f"{what}: config.Labels"),
            tuple(Digest.parse(d, f"{what}: rootfs.diff_ids") for d in diff_ids),
            tuple(history),
            document,
        )
