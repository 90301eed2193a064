"""Read the dpkg database inside a tree.

In: a ``Tree``.  Out: the admindir found by the probe order of DESIGN.md, the
installed binary packages (with their source package and version), the paths
each one lists, the diversions, the alternatives links and the native
architecture, all read through the tree (never from the host).  ``status`` is
parsed by ``apt_pkg.TagFile``, or python-debian without python-apt
(``mapping.debian_formats``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .debian_formats import paragraphs
from .errors import MappingError, show, warn
from .tree import EntryType, Tree

# Where image builders put the dpkg database, most specific first (DESIGN.md).
ADMINDIR_PROBES = (
    "usr/lib/sysimage/dpkg",
    "usr/share/dpkg/database",
    "usr/rootdirs/var/lib/dpkg",
    "usr/share/factory/var/lib/dpkg",
    "var/lib/dpkg",
)

# dpkg states whose files are on disk (dpkg(1), "Package states").
INSTALLED_STATES = frozenset({"installed", "triggers-awaiting", "triggers-pending"})


@dataclass(frozen=True, slots=True)
class Package:
    """One installed binary package."""

    name: str
    architecture: str
    version: str
    source: str
    source_version: str
    multi_arch_same: bool
    # The Maintainer field as written ("Name <address>"), "" when absent.
    maintainer: str = ""

    @property
    def id(self) -> str:
        """The name dpkg-query's ``${binary:Package}`` shows: ``name:arch`` for
        Multi-Arch: same packages, else ``name``."""
        return f"{self.name}:{self.architecture}" if self.multi_arch_same else self.name


@dataclass(frozen=True, slots=True)
class Diversion:
    """``original`` of every package but ``package`` lives at ``diverted_to``;
    ``package`` is None for a local diversion, which applies to all packages."""

    original: str
    diverted_to: str
    package: str | None


# No file of a dpkg database comes near this: a desktop's status is about
# 1 MB, the largest file lists a few MB.  A larger one is refused, not read.
MAX_FILE_BYTES = 256 << 20
# An architecture file holds a few short lines; more is not one.
_ARCH_FILE_LIMIT = 4096


def _package(para: dict[str, str]) -> Package:
    """The package of a ``status`` paragraph that has every field it needs."""
    name, version = para["Package"], para["Version"]
    # "Source: name (version)", the version only when it differs (deb-control(5)).
    source, _, rest = para.get("Source", name).partition(" ")
    return Package(
        name,
        para["Architecture"],
        version,
        source or name,
        rest.strip().strip("()") or version,
        para.get("Multi-Arch", "") == "same",
        para.get("Maintainer", ""),
    )


class Database:
    """The dpkg database of a tree, located by ``find``."""

    def __init__(self, tree: Tree, admindir: str) -> None:
        self.tree = tree
        self.admindir = admindir

    @classmethod
    def find(cls, tree: Tree) -> Database | None:
        """The first admindir of the probe order holding a ``status`` file."""
        for probe in ADMINDIR_PROBES:
            resolved = tree.resolve(probe)
            if resolved is None:
                continue
            entry = tree.get(resolved)
            if entry is not None and entry.type is EntryType.DIR:
                status = tree.get(f"{resolved}/status")
                if status is not None and status.type is EntryType.FILE:
                    return cls(tree, resolved)
        return None

    def _read(self, name: str) -> bytes | None:
        """A file of the database (None when there is none), refused past
        ``MAX_FILE_BYTES``."""
        return self._bounded(f"{self.admindir}/{name}")

    def _bounded(self, path: str) -> bytes | None:
        data = self.tree.read_bytes(path, MAX_FILE_BYTES + 1)
        if data is not None and len(data) > MAX_FILE_BYTES:
            raise MappingError(
                f"larger than {MAX_FILE_BYTES >> 20} MB, which no dpkg database file is",
                f"{self.tree.description}: {show(path)}",
                "the tree's dpkg database is damaged or not dpkg's; map a tree with a sound one",
            )
        return data

    def packages(self) -> list[Package]:
        """Installed packages from ``status``, sorted by (name, architecture);
        a damaged paragraph is skipped with a warning."""
        found, damaged = self.read_status()
        for message in damaged:
            warn(message)
        return found

    def read_status(self) -> tuple[list[Package], list[str]]:
        """Installed packages from ``status``, sorted by (name, architecture),
        and a message for each damaged paragraph, which is skipped; nothing is
        logged, so a caller that only looks can stay quiet."""
        found: list[Package] = []
        damaged: list[str] = []
        where = f"{show(self.admindir)}/status"
        for number, para in enumerate(paragraphs(self._read("status") or b""), 1):
            name = para.get("Package", "")
            status = para.get("Status", "").split()
            missing = [f for f in ("Package", "Status", "Version", "Architecture") if not para.get(f)]
            if missing or len(status) != 3:
                label = f"package {show(name)}" if name else f"paragraph {number}"
                damaged.append(
                    f"{where}: {label} has no valid {', '.join(missing) or 'Status'} field "
                    "(truncated or corrupt database); its files are treated as unpackaged"
                )
            elif status[2] in INSTALLED_STATES:
                found.append(_package(para))
        found.sort(key=lambda p: (p.name, p.architecture))
        return found, damaged

    def architecture(self) -> str | None:
        """The tree's native architecture as dpkg records it: the first line
        of ``arch-native`` (dpkg 1.21+), else of ``arch`` (whose first line is
        the native one), else the ``dpkg`` package's Architecture in
        ``status`` (dpkg is always native); None when none says."""
        for name in ("arch-native", "arch"):
            data = self.tree.read_bytes(f"{self.admindir}/{name}", _ARCH_FILE_LIMIT)
            first = (data or b"").decode("ascii", "replace").strip().split("\n")[0].strip()
            if first:
                return first
        # Any state counts: a half-configured dpkg still says what it was built for.
        for para in paragraphs(self._read("status") or b""):
            if para.get("Package") == "dpkg" and para.get("Architecture"):
                return para["Architecture"]
        return None

    def listed_paths(self, package: Package) -> Iterator[str]:
        """Absolute paths a package lists in ``info/<pkg>[:<arch>].list``."""
        data = self._read(f"info/{package.name}:{package.architecture}.list")
        if data is None:
            data = self._read(f"info/{package.name}.list")
        if data is None:
            warn(
                f"{show(self.admindir)}/info: no file list for installed package {show(package.id)}; "
                "its files are treated as unpackaged"
            )
            return
        for line in data.decode("utf-8", "surrogateescape").splitlines():
            if line and line != "/.":
                yield line

    def diversions(self) -> list[Diversion]:
        """Entries of ``diversions``: three lines each (original, diverted-to, package or ``:``)."""
        lines = (self._read("diversions") or b"").decode("utf-8", "surrogateescape").splitlines()
        if len(lines) % 3:
            warn(
                f"{show(self.admindir)}/diversions: {len(lines)} lines is not a multiple of 3 "
                "(truncated); the incomplete last entry is ignored"
            )
        return [
            Diversion(lines[i], lines[i + 1], None if lines[i + 2] == ":" else lines[i + 2])
            for i in range(0, len(lines) - 2, 3)
        ]

    def alternative_links(self) -> set[str]:
        """Absolute paths of every link managed by update-alternatives: each
        group's master and slave links, and their ``/etc/alternatives/`` names."""
        links: set[str] = set()
        directory = self.tree.resolve(f"{self.admindir}/alternatives")
        if directory is None:
            return links
        for entry in self.tree.children(directory):
            if entry.type is not EntryType.FILE:
                continue
            lines = (self._bounded(entry.path) or b"").decode("utf-8", "surrogateescape").splitlines()
            # update-alternatives(1) "FILES": status line, master link, then
            # (slave name, slave link) pairs up to a blank line.
            if len(lines) < 2:
                continue
            links.add(lines[1])
            links.add(f"/etc/alternatives/{entry.path.rpartition('/')[2]}")
            i = 2
            while i + 1 < len(lines) and lines[i]:
                links.add(f"/etc/alternatives/{lines[i]}")
                links.add(lines[i + 1])
                i += 2
        return links
