"""An SPDX 2.3 SBOM of the Debian packages installed in a tree.

In: a ``mapping.Tree`` (the tree a build maps, or the tree an image's layers
make) and the image's time.  Out: the bytes of an SPDX 2.3 JSON document
listing every installed binary package of the tree's dpkg database (the
packages ``dpkg-query -W`` lists as installed), each with its version,
architecture, maintainer as supplier, source package and a purl
``pkg:deb/VENDOR/NAME@VERSION?arch=ARCH&distro=CODENAME``.  Nothing is
scanned: the dpkg database says it all, read through the tree, never from
this machine.

The bytes depend on the packages, the tree's os-release and the time only:
``created`` is the image's time (``SOURCE_DATE_EPOCH`` or what stood for it),
packages are sorted and their SPDXIDs made from their names, and the
``documentNamespace`` is a sha256 of the document written with an empty
namespace.  The same tree gives the same document, whichever image format or
transport it went through (docs/sbom.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import shlex
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from mapping import Tree
from mapping.dpkg import Database, Package
from mapping.errors import show, warn

from .errors import EncapsulateError
from .oci.imgref import ImageRef, RegistryOptions
from .oci.layout import atomic_write
from .oci.model import Descriptor, Digest
from .oci.referrers import CREATED_ANNOTATION, attach

log = logging.getLogger("debchunk.encapsulate")

# The IANA media type of SPDX JSON documents (SPDX 2.3, annex "SPDX file
# formats"), also the artifactType of the attached SBOM.
SPDX_MEDIA_TYPE = "application/spdx+json"
SPDX_VERSION = "SPDX-2.3"
# Every SPDX document's data licence (SPDX 2.3, clause 6.2).
DATA_LICENSE = "CC0-1.0"
NOASSERTION = "NOASSERTION"
# ``.invalid`` names no host (RFC 2606): the namespace is an identifier, not a place.
NAMESPACE_BASE = "https://spdx.debchunk.invalid/packages-"
# Where os-release lives, in the order os-release(5) reads it; ``usr/etc`` is
# ``/etc`` in an OSTree commit.
OS_RELEASE_PATHS = ("etc/os-release", "usr/etc/os-release", "usr/lib/os-release")
_OS_RELEASE_LIMIT = 64 * 1024
# The purl vendor when the tree has no os-release ID (the purl deb type wants one).
DEFAULT_VENDOR = "debian"
# Characters an SPDXID may hold (SPDX 2.3, clause 7.2: letters, digits, '.' and '-').
_SPDXID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")
_VENDOR = re.compile(r"[a-z0-9][a-z0-9._-]*")


def debchunk_version() -> str:
    """The version of debchunk installed, as the ``creators`` entry names it."""
    try:
        return metadata.version("debchunk")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class OsRelease:
    """What the SBOM takes from a tree's os-release: the vendor (``ID``), the
    release's codename (``VERSION_CODENAME``) and ``PRETTY_NAME``."""

    id: str | None = None
    codename: str | None = None
    pretty_name: str | None = None

    @classmethod
    def parse(cls, data: bytes) -> OsRelease:
        """The fields of an os-release file (os-release(5): ``KEY=VALUE`` lines,
        values quoted as in a shell); lines that do not parse are skipped."""
        fields: dict[str, str] = {}
        for line in data.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            try:
                words = shlex.split(value)
            except ValueError:
                continue
            fields[key.strip()] = " ".join(words)
        vendor = fields.get("ID", "").lower()
        codename = fields.get("VERSION_CODENAME", "")
        return cls(
            vendor if _VENDOR.fullmatch(vendor) else None,
            codename or None,
            fields.get("PRETTY_NAME") or None,
        )

    @classmethod
    def of(cls, tree: Tree) -> OsRelease:
        """The tree's os-release: the first of ``OS_RELEASE_PATHS`` that
        resolves inside the tree to a file; an empty one when none does."""
        for path in OS_RELEASE_PATHS:
            data = tree.read_bytes(path, _OS_RELEASE_LIMIT)
            if data is not None:
                return cls.parse(data)
        return cls()


def installed_packages(tree: Tree, where: str, quiet: bool = False) -> list[Package]:
    """The installed binary packages of the tree's dpkg database, sorted by
    (name, architecture); damaged paragraphs are skipped with a warning
    (none when ``quiet``: the mapping warned already).  A tree without a dpkg
    database is an ``EncapsulateError`` naming ``where``."""
    database = Database.find(tree)
    if database is None:
        raise EncapsulateError(
            "no dpkg database (var/lib/dpkg/status or an OSTree location of it)",
            where=where,
            hint="an SBOM lists the packages dpkg installed: give a Debian or Ubuntu tree or image",
        )
    found, damaged = database.read_status()
    if not quiet:
        for message in damaged:
            warn(message)
    return found


def purl(package: Package, vendor: str, distro: str | None) -> str:
    """The package URL of a binary package (purl-spec, type ``deb``): name and
    version percent-encoded as the purl spec says (letters, digits, ``.-_~``
    and ``:`` are kept; ``+`` is ``%2B``), the vendor lowercased, qualifiers
    ``arch`` and (when known) ``distro`` in that order, which is sorted."""
    name = urllib.parse.quote(package.name.lower(), safe="")
    version = urllib.parse.quote(package.version, safe=":")
    qualifiers = [("arch", package.architecture)]
    if distro:
        qualifiers.append(("distro", distro))
    query = "&".join(f"{k}={urllib.parse.quote(v, safe=':')}" for k, v in qualifiers)
    return f"pkg:deb/{vendor}/{name}@{version}?{query}"


def supplier(maintainer: str) -> str:
    """The SPDX supplier of a package from its Maintainer field ("Name
    <address>"): ``Person: Name (address)``, the address empty when the field
    has none; NOASSERTION without a name."""
    text = " ".join(maintainer.split())
    name, _, rest = text.partition("<")
    address = rest.partition(">")[0].strip() if rest else ""
    name = name.strip()
    if not name:
        return NOASSERTION
    # The last parentheses hold the address (SPDX 2.3, clause 7.5): none in it.
    return f"Person: {name} ({address.replace('(', '').replace(')', '')})"


def _spdx_ids(packages: Sequence[Package]) -> list[str]:
    """Stable SPDXIDs, ``SPDXRef-Package-deb-NAME-ARCH``: characters an SPDXID
    cannot hold become ``-``, and an ID that changed so, or that two packages
    would share, ends in 12 hex digits of a sha256 of ``NAME:ARCH``."""
    plain = [f"SPDXRef-Package-deb-{p.name}-{p.architecture}" for p in packages]
    cleaned = [_SPDXID_UNSAFE.sub("-", i) for i in plain]
    seen: dict[str, int] = {}
    for i in cleaned:
        seen[i] = seen.get(i, 0) + 1
    out = []
    for p, before, after in zip(packages, plain, cleaned, strict=True):
        if before != after or seen[after] > 1:
            after += "-" + hashlib.sha256(f"{p.name}:{p.architecture}".encode()).hexdigest()[:12]
        out.append(after)
    return out


def _created(epoch: int) -> str:
    """SPDX's time format (SPDX 2.3, clause 6.9: ``YYYY-MM-DDThh:mm:ssZ``)."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def document_bytes(document: dict[str, Any]) -> bytes:
    """The document as written: JSON indented by one space, ASCII only (so it
    prints safely whatever a package's fields hold), a newline at the end."""
    return json.dumps(document, indent=1, ensure_ascii=True).encode() + b"\n"


def sbom_document(packages: Sequence[Package], release: OsRelease, epoch: int) -> dict[str, Any]:
    """The SPDX 2.3 document of ``packages`` (installed binary packages), its
    time ``epoch`` (seconds since 1970)."""
    ordered = sorted(packages, key=lambda p: (p.name, p.architecture, p.version))
    ids = _spdx_ids(ordered)
    vendor = release.id or DEFAULT_VENDOR
    entries = []
    for spdx_id, p in zip(ids, ordered, strict=True):
        entries.append(
            {
                "SPDXID": spdx_id,
                "name": p.name,
                "versionInfo": p.version,
                "supplier": supplier(p.maintainer),
                "downloadLocation": NOASSERTION,
                "filesAnalyzed": False,
                "sourceInfo": f"built package from: {p.source} {p.source_version}",
                "licenseConcluded": NOASSERTION,
                "licenseDeclared": NOASSERTION,
                "copyrightText": NOASSERTION,
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": purl(p, vendor, release.codename),
                    }
                ],
            }
        )
    document: dict[str, Any] = {
        "spdxVersion": SPDX_VERSION,
        "dataLicense": DATA_LICENSE,
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{release.pretty_name or vendor}: installed dpkg packages",
        "documentNamespace": "",
        "creationInfo": {
            "created": _created(epoch),
            "creators": [f"Tool: debchunk-{debchunk_version()}"],
        },
        "packages": entries,
        "relationships": [
            {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": i}
            for i in ids
        ],
    }
    # The namespace names this content: the sha256 of the document without it.
    document["documentNamespace"] = NAMESPACE_BASE + hashlib.sha256(document_bytes(document)).hexdigest()
    return document


def tree_sbom(tree: Tree, epoch: int, where: str, quiet: bool = False) -> bytes:
    """The SBOM of the packages installed in ``tree`` (``where`` names it in
    errors), dated ``epoch``: the bytes of its SPDX 2.3 JSON document."""
    packages = installed_packages(tree, where, quiet)
    return document_bytes(sbom_document(packages, OsRelease.of(tree), epoch))


def write_sbom_file(path: str, data: bytes) -> None:
    """The SBOM at ``path``, replaced whole or not at all."""
    try:
        with atomic_write(path, ".tmp-debchunk-", ".spdx.json") as f:
            f.write(data)
    except OSError as e:
        raise EncapsulateError(f"cannot write the SBOM: {e.strerror}", where=show(path)) from None


def attach_sbom(
    destination: ImageRef, registry: RegistryOptions, image: Descriptor, data: bytes, epoch: int
) -> Digest:
    """Attach the SBOM ``data`` to the image whose manifest is ``image`` in
    the registry ``destination`` names (``oci.referrers.attach``: the
    referrers API, else the fallback tag); the digest of the artifact's
    manifest, which is what signing the SBOM signs."""
    attached = attach(
        destination, registry, image, data, SPDX_MEDIA_TYPE, {CREATED_ANNOTATION: _created(epoch)}
    )
    log.info(
        "SBOM attached to %s as %s (listed by %s)",
        image.digest,
        attached.manifest.digest,
        attached.listed_by,
    )
    return attached.manifest.digest
