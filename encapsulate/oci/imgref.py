"""Image references (``IMGREF``): the one parser, and the one table of transports.

In: ``TRANSPORT:LOCATION`` text as given on the command line.
Out: an ``ImageRef`` (transport, location, tag) that knows whether debchunk
reads and writes it itself (``oci:``, ``oci-archive:``) or through skopeo,
how skopeo spells it, and whether registry options (``--tls-verify``,
``--authfile``: a ``RegistryOptions``) apply to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import EncapsulateError
from .retry import DEFAULT_RETRY, RetryPolicy


@dataclass(frozen=True)
class Transport:
    """How one transport is reached.  ``direct``: debchunk reads and writes it
    itself, and its location ends in an optional ``:TAG`` that debchunk parses;
    otherwise skopeo does, and the tag stays part of the location.
    ``skopeo``: the prefix skopeo spells it with.  ``registry``: a network
    registry, where TLS verification and credentials apply."""

    name: str
    direct: bool
    skopeo: str
    registry: bool
    example: str


TRANSPORTS = {
    t.name: t
    for t in (
        Transport("oci", True, "oci:", False, "oci:DIR[:TAG]"),
        Transport("oci-archive", True, "oci-archive:", False, "oci-archive:FILE[:TAG]"),
        Transport("docker-archive", False, "docker-archive:", False, "docker-archive:FILE[:TAG]"),
        # debchunk's spelling of a registry; skopeo's is docker://.
        Transport("registry", False, "docker://", True, "registry:HOST/REPO[:TAG]"),
        # docker://HOST/REPO splits as transport "docker", location "//HOST/REPO".
        Transport("docker", False, "docker:", True, "docker://HOST/REPO[:TAG]"),
        Transport("containers-storage", False, "containers-storage:", False, "containers-storage:NAME"),
        Transport("dir", False, "dir:", False, "dir:DIR"),
    )
}

# A tag of an oci: or oci-archive: reference is stored as the layout's
# org.opencontainers.image.ref.name and may be pushed to a registry unchanged,
# so it must be both:
# - a distribution-spec tag: "MUST be at most 128 characters in length and
#   MUST match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}" (OCI distribution-spec
#   v1.1, spec.md, "Pulling manifests");
# - an image-spec ref.name component: alphanum (separator alphanum)* with
#   alphanum [A-Za-z0-9]+ and separator [-._:@+] | "--" (OCI image-spec v1.1,
#   annotations.md, "Pre-Defined Annotation Keys"; ":" and "@" cannot occur
#   here, "/" is not a tag character).
_DISTRIBUTION_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_REF_NAME_COMPONENT = re.compile(r"[A-Za-z0-9]+(?:(?:[-._+]|--)[A-Za-z0-9]+)*")


def valid_tag(tag: str) -> bool:
    """Whether ``tag`` may name an image in an OCI layout (see the grammars above)."""
    return bool(_DISTRIBUTION_TAG.fullmatch(tag) and _REF_NAME_COMPONENT.fullmatch(tag))


@dataclass(frozen=True)
class ImageRef:
    """A parsed ``IMGREF``.  ``tag`` is None when an ``oci:``/``oci-archive:``
    reference names none (and always for other transports, whose tag is part
    of ``location``)."""

    transport: str
    location: str
    tag: str | None = None

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        return f"{self.transport}:{self.location}{tag}"

    @property
    def direct(self) -> bool:
        """Read and written by debchunk itself, not through skopeo."""
        return TRANSPORTS[self.transport].direct

    @property
    def registry(self) -> bool:
        """A network registry: ``--tls-verify`` and ``--authfile`` apply."""
        return TRANSPORTS[self.transport].registry

    @property
    def skopeo(self) -> str:
        """The reference as skopeo spells it."""
        tag = f":{self.tag}" if self.tag is not None else ""
        return f"{TRANSPORTS[self.transport].skopeo}{self.location}{tag}"

    def with_tag(self, tag: str) -> ImageRef:
        """The same place, image ``tag`` (for ``oci:``/``oci-archive:``)."""
        return ImageRef(self.transport, self.location, tag)

    def by_digest(self, digest: str) -> ImageRef:
        """The manifest ``digest`` in the same registry repository (the tag,
        if any, dropped): how one platform's manifest of an index is read."""
        if not self.registry:
            raise EncapsulateError(f"{self}: only a registry image can be read by digest")
        name = self.location.partition("@")[0]
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:  # a tag, not a port (a port comes before the first /)
            name = name[:colon]
        return ImageRef(self.transport, f"{name}@{digest}")


@dataclass(frozen=True)
class RegistryOptions:
    """How a registry is reached: ``authfile`` holds its credentials
    (containers-auth.json(5)), or ``creds`` gives them (``USER[:PASSWORD]``,
    as skopeo's ``--creds``; they win over the authfile's);
    ``tls_verify=False`` reads it over plain HTTP or with an unverified
    certificate.  None leaves skopeo's default.  Only registry references
    take them (``ImageRef.registry``).  ``retry``: how often a request that
    meets a transient fault is tried again, and how long one is waited on
    (debchunk's own requests, and skopeo's ``--retry-times``)."""

    authfile: str | None = None
    tls_verify: bool | None = None
    creds: str | None = field(default=None, repr=False)
    retry: RetryPolicy = DEFAULT_RETRY


# No options: skopeo's defaults.
DEFAULT_REGISTRY = RegistryOptions()


def _unknown(text: str, transport: str) -> EncapsulateError:
    examples = ", ".join(t.example for t in TRANSPORTS.values())
    return EncapsulateError(f"{text}: unknown transport {transport!r}; use one of {examples}")


def parse_imgref(text: str) -> ImageRef:
    """Parse ``TRANSPORT:LOCATION``.  ``oci:`` and ``oci-archive:`` take an
    optional ``:TAG`` after their path (checked against the OCI tag grammar);
    the other transports keep their tag in the location, for skopeo."""
    transport, colon, rest = text.partition(":")
    if not colon or not transport:
        raise EncapsulateError(f"{text}: give the image as TRANSPORT:LOCATION, e.g. oci:DIR[:TAG]")
    kind = TRANSPORTS.get(transport)
    if kind is None:
        raise _unknown(text, transport)
    if kind.direct:
        path, colon, tag = rest.partition(":")
        if not path:
            raise EncapsulateError(f"{text}: no path; give {kind.example}")
        if colon and not valid_tag(tag):
            raise EncapsulateError(
                f"{text}: {tag!r} is not a valid OCI tag; use letters and digits with single . _ - "
                "(or --) between them, at most 128 characters"
            )
        return ImageRef(transport, path, tag if colon else None)
    if transport == "docker" and not rest.startswith("//"):
        raise EncapsulateError(f"{text}: write a registry image as docker://HOST/REPO[:TAG]")
    if not rest.strip("/"):
        raise EncapsulateError(f"{text}: no location; give {kind.example}")
    return ImageRef(transport, rest)
