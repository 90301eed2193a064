"""Real Debian update pairs for the update-cost experiment, and what an update costs.

Provides:

- package sets of different kinds (``SETS``): ``server`` (minbase + a small
  server), ``desktop`` (apt + GNOME core), ``kde`` (KDE Plasma), ``devel``
  (compilers and language toolchains), ``container-host`` (podman, QEMU,
  libvirt), ``office`` (Xfce with a browser, a mail client and an office
  suite) and ``appliance`` (minbase + sshd, lighttpd, chrony), each built
  seven times with mmdebstrap: ``trixie``, ``trixie-updated`` (trixie +
  trixie-updates + trixie-security), ``trixie-rebuild`` (trixie again, a
  separate build), ``bookworm``, ``bookworm-updated`` (the same for
  bookworm, still supported), ``forky`` and ``sid``; ``spec_for(set,
  build)`` gives the ``TreeSpec`` of each;
- ``build(set, build)``: a cached tree laid out for OSTree
  (``benches.debtrees.ostreeify``), built atomically under
  ``benches.debtrees.cache_dir()`` as ``<key>.ostree``, and its *tree index*
  ``<key>.ostree.index.json.gz`` beside it: the mapping's components, every
  non-directory entry (path, content id, size, mode, owning component), every
  installed binary package (version, source) and the mapping's reference date;
  an index made by other ``mapping`` code is made again (seconds), the tree kept.
  Since format 2 it also records what the peers' packers read (``benches.baselines``):
  each binary package's changelog entry dates (days since the epoch, newest
  first, read with ``mapping.changelog.read_history``: every entry of the last
  365 days before its newest) and its total number of entries, and for each
  file row the binary package whose dpkg file list holds it (``files.package``,
  an index into ``packages``, -1 for none); format 1 files still load, without
  them;
- ``load_index(set, build) -> TreeIndex`` and ``pairs(set)``: the update pairs
  (trixie -> trixie-updated, bookworm -> bookworm-updated, forky -> sid,
  trixie -> trixie-rebuild); an index's ``build_info`` holds its build date
  (``built_at``), frozen with it;
- the cost of an update for a client that holds the old image:
  ``download_bytes`` (layers whose identity is new), ``ideal_bytes`` (content
  not anywhere in the old tree) and ``single_layer_bytes`` (one layer holding
  everything), plus ``changed_sources``;
- a CLI: ``python -m benches.update_pairs build [--set NAME|all]``
  builds and indexes everything; ``... show [--json]`` prints, for each pair,
  files, total bytes, ideal bytes, single-layer bytes and changed source packages;
  ``... freeze`` stores the indexes of every indexed build of a set in one file in the
  repository (``benches/data/<set>.pairs.json.xz``, content ids cut to 64 bits),
  and ``load_index(..., frozen=True)`` reads them back: the same trees on every
  machine, so update-cost figures measured on them are exact and comparable from
  run to run, while the mirror moves on (the CI benchmark profile uses them);
  ``... refresh`` builds the builds that follow the security suites
  (``FOLLOWING``) again from today's mirror and freezes them beside the
  earlier ones (``NAME@YYYYMMDDTHHMM``), and every two builds of one made at
  least ``WEEK_APART_DAYS`` apart are a real week-apart pair
  (``week_apart_pairs``, part of ``pairs(set, frozen=True)``): the corpus
  grows with every refresh; ``--drop-trees`` keeps only the indexes.

A layer's identity is the sha256 of its rows (path, content id, mode) sorted by
path: here the sha256 of the concatenated per-row sha256 digests in path order,
which identifies the same set of rows.  A layer's size is the sum of its
components' sizes (each component's distinct content once): the unit the
planner minimises and that images record in their ``org.debchunk.components``
label, so ``debchunk diff``'s ``download_content_bytes`` is ``download_bytes``
for the same plan.  A symlink's content id is ``symlink:TARGET`` and its size 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gzip
import hashlib
import itertools
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import mapping
from benches.debtrees import MIRROR, SERVER_PACKAGES, TreeSpec, cache_dir, ostreeify
from mapping import Component, EntryType, RootfsOrigin, map_tree, read_tree
from mapping.changelog import read_history
from mapping.debian_formats import paragraphs, version_compare
from mapping.dpkg import Database
from mapping.model import VOLATILE
from mapping.ownership import is_volatile_path, locate
from mapping.stability import VOLATILE_CHANGE_PROBABILITY
from mapping.tree import Tree

SECURITY_MIRROR = os.environ.get("DEBCHUNK_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
ADMINDIR = "usr/share/dpkg/database"
INDEX_FORMAT = 2
# Formats load_index still reads (format 1 has no per-binary-package records).
READABLE_FORMATS = (1, 2)
# Stop before a build when less than this is free where the trees are kept.
MIN_FREE_BYTES = 8 * 10**9

# What every set but the server one installs to boot: init, a kernel and its initramfs.
BOOTABLE = ("systemd", "systemd-sysv", "linux-image-amd64", "initramfs-tools")

SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "server": ("minbase", (*SERVER_PACKAGES, "initramfs-tools")),
    "desktop": (
        "apt",
        (
            *BOOTABLE,
            "gnome-core",
            "network-manager",
            "openssh-server",
        ),
    ),
    # A KDE Plasma desktop, as the installer's "KDE Plasma" task would give.
    "kde": (
        "apt",
        (
            *BOOTABLE,
            "kde-plasma-desktop",
            "network-manager",
            "openssh-server",
        ),
    ),
    # A developer workstation: compilers, headers and language toolchains.
    "devel": (
        "apt",
        (
            *BOOTABLE,
            "openssh-server",
            "build-essential",
            "gcc",
            "g++",
            "clang",
            "golang",
            "rustc",
            "cargo",
            "python3-dev",
            "default-jdk",
            "git",
        ),
    ),
    # A container and virtual machine host.
    "container-host": (
        "minbase",
        (
            *BOOTABLE,
            "openssh-server",
            "podman",
            "qemu-system-x86",
            "libvirt-daemon-system",
        ),
    ),
    # An office desktop whose largest packages take security uploads every few
    # weeks and ship their data inside the binary package (a browser, a mail
    # client, an office suite), as the installer's Xfce task would give.
    "office": (
        "apt",
        (
            *BOOTABLE,
            "xfce4",
            "lightdm",
            "firefox-esr",
            "thunderbird",
            "libreoffice-writer",
            "libreoffice-calc",
            "network-manager",
            "openssh-server",
        ),
    ),
    # A small appliance: minbase and a few daemons.
    "appliance": (
        "minbase",
        (
            *BOOTABLE,
            "openssh-server",
            "lighttpd",
            "chrony",
        ),
    ),
    # Held out: never frozen into benches/data, so the corpus (``--frozen``)
    # never sees them and no planning choice is tuned on them; built and
    # measured on demand to check a choice (docs/layers.md, "Update gaps").
    # A web server ...
    "web": (
        "minbase",
        (*BOOTABLE, "openssh-server", "nginx", "postgresql", "php-fpm", "redis-server"),
    ),
    # ... a Cinnamon desktop ...
    "cinnamon": (
        "apt",
        (*BOOTABLE, "cinnamon-core", "lightdm", "network-manager", "openssh-server"),
    ),
    # ... an Xfce desktop with a browser, whose security releases are large
    # and frequent ...
    "xfce": (
        "apt",
        (*BOOTABLE, "xfce4", "lightdm", "firefox-esr", "network-manager", "openssh-server"),
    ),
    # ... and a router: a small tree of network services.
    "router": (
        "minbase",
        (*BOOTABLE, "openssh-server", "nftables", "dnsmasq", "wireguard-tools", "frr", "chrony"),
    ),
}
#: The sets kept out of the frozen corpus.
HELD_OUT = ("web", "cinnamon", "xfce", "router")
# Build name -> (suite, extra sources.list lines, build id).
BUILDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "trixie": ("trixie", (), ""),
    "trixie-updated": (
        "trixie",
        (f"deb {MIRROR} trixie-updates main", f"deb {SECURITY_MIRROR} trixie-security main"),
        "",
    ),
    "trixie-rebuild": ("trixie", (), "rebuild"),
    # bookworm is still supported (oldstable): its point updates too.
    "bookworm": ("bookworm", (), ""),
    "bookworm-updated": (
        "bookworm",
        (f"deb {MIRROR} bookworm-updates main", f"deb {SECURITY_MIRROR} bookworm-security main"),
        "",
    ),
    "forky": ("forky", (), ""),
    "sid": ("sid", (), ""),
}
# Pair name, old build, new build.
PAIRS: tuple[tuple[str, str, str], ...] = (
    ("point-update", "trixie", "trixie-updated"),
    ("bookworm-point-update", "bookworm", "bookworm-updated"),
    ("testing-to-unstable", "forky", "sid"),
    ("rebuild", "trixie", "trixie-rebuild"),
)
# Builds that follow the security suites, which move every few days: a later
# run builds them again (``refresh``), each new build is frozen beside the
# earlier ones, and two builds made at least WEEK_APART_DAYS apart are a real
# update pair (the testing and unstable suites of the mirror stand still, and
# the point releases come months apart).
FOLLOWING = ("trixie-updated", "bookworm-updated")
WEEK_APART_DAYS = 5
_INSTALLED = ("installed", "triggers-awaiting", "triggers-pending")


def spec_for(set_name: str, build_name: str) -> TreeSpec:
    """The mmdebstrap spec of one build of one package set."""
    if set_name not in SETS:
        raise KeyError(f"unknown set {set_name!r}; one of {', '.join(SETS)}")
    if build_name not in BUILDS:
        raise KeyError(f"unknown build {build_name!r}; one of {', '.join(BUILDS)}")
    variant, include = SETS[set_name]
    suite, sources, build_id = BUILDS[build_name]
    return TreeSpec(suite, variant, include, sources, build_id)


def pairs(set_name: str, frozen: bool = False) -> list[tuple[str, str, str]]:
    """The update pairs of a set: (pair name, old build, new build); with
    ``frozen``, those whose two builds the repository's frozen file holds,
    then its week-apart pairs (``week_apart_pairs``)."""
    if set_name not in SETS:
        raise KeyError(f"unknown set {set_name!r}; one of {', '.join(SETS)}")
    if not frozen:
        return list(PAIRS)
    held = frozen_builds(set_name)
    return [p for p in PAIRS if p[1] in held and p[2] in held] + week_apart_pairs(set_name)


def tree_path(set_name: str, build_name: str) -> Path:
    """Where the laid-out tree of a build is cached."""
    return cache_dir() / f"{spec_for(set_name, build_name).key}.ostree"


def index_path(set_name: str, build_name: str) -> Path:
    """Where the tree index of a build is cached (beside its tree)."""
    tree = tree_path(set_name, build_name)
    return tree.with_name(tree.name + ".index.json.gz")


def _info_path(tree: Path) -> Path:
    return tree.with_name(tree.name + ".build.json")


def _log_path(tree: Path) -> Path:
    return tree.with_name(tree.name + ".log")


def note(message: str) -> None:
    """A progress line on stderr."""
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    while not path.exists():
        path = path.parent
    return path


def _check_free(where: Path) -> None:
    free = shutil.disk_usage(_existing(where)).free
    if free < MIN_FREE_BYTES:
        raise RuntimeError(
            f"{where}: only {free / 1e9:.1f} GB free, {MIN_FREE_BYTES / 1e9:.0f} GB needed; "
            "remove old trees from the cache or point DEBCHUNK_CACHE elsewhere"
        )


class BuildError(RuntimeError):
    """mmdebstrap failed; the message holds the end of its output."""


def build_tree(set_name: str, build_name: str) -> Path:
    """The cached laid-out tree of a build, built with mmdebstrap if missing.

    mmdebstrap writes into ``<key>.partial``; the tree is then laid out in place
    (moved to ``<key>.ostree.partial``) and renamed to ``<key>.ostree``, so an
    interrupted build never looks finished.  A raw tree already cached by
    ``benches.debtrees.build_tree`` is copied rather than rebuilt.
    """
    spec = spec_for(set_name, build_name)
    final = tree_path(set_name, build_name)
    if (final / "usr").is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _check_free(final.parent)
    laid = final.with_name(final.name + ".partial")
    if laid.exists():
        shutil.rmtree(laid)
    raw_cached = cache_dir() / spec.key
    started = time.monotonic()
    if (raw_cached / "usr").is_dir():
        ostreeify(raw_cached, laid, ADMINDIR)
    else:
        raw = cache_dir() / f"{spec.key}.partial"
        if raw.exists():
            shutil.rmtree(raw)
        log = _log_path(final)
        with log.open("wb") as out:
            proc = subprocess.run(
                spec.mmdebstrap_args(raw), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            if raw.exists():
                shutil.rmtree(raw)
            raise BuildError(
                f"mmdebstrap exited with {proc.returncode} for {set_name}/{build_name} "
                f"(log {log}):\n" + "\n".join(tail)
            )
        if log.stat().st_size == 0:
            log.unlink()
        ostreeify(raw, laid, ADMINDIR, move=True)
    seconds = time.monotonic() - started
    info = {
        "set": set_name,
        "build": build_name,
        "seconds": round(seconds, 1),
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": spec.mmdebstrap_args(Path("TARGET")),
    }
    _write_atomic(_info_path(final), json.dumps(info, indent=1).encode())
    laid.rename(final)
    return final


@dataclass(frozen=True, slots=True)
class InstalledPackage:
    """One installed binary package, as the tree's dpkg status says."""

    package: str
    architecture: str
    version: str
    source: str
    source_version: str
    # Changelog entry dates, days since 1970-01-01 (UTC), newest first: the
    # entries within 365 days of the newest (``mapping.changelog.read_history``)
    # and, past them, the first older one.  Empty without a changelog.
    changelog_days: tuple[int, ...] = ()
    # How many entries the whole changelog has (rechunk's "no changelog" rule).
    changelog_entries: int = 0
    # ``name:arch`` for Multi-Arch: same packages, else ``name`` (dpkg's
    # ``${binary:Package}``), as the file lists and changelogs are named.
    package_id: str = ""


def _version_cmp(a: str, b: str) -> int:
    return version_compare(a, b) or (a > b) - (a < b)


_version_order = functools.cmp_to_key(_version_cmp)


def read_packages(tree: Path) -> list[InstalledPackage]:
    """Installed binary packages of a laid-out tree, sorted by name and architecture."""
    result = []
    for para in paragraphs((tree / ADMINDIR / "status").read_bytes()):
        status = para.get("Status", "").split()
        if len(status) != 3 or status[2] not in _INSTALLED:
            continue
        # "Source: name (version)" (deb-control(5)); the version only when it differs.
        source, _, rest = para.get("Source", "").partition(" ")
        result.append(
            InstalledPackage(
                para["Package"],
                para.get("Architecture", ""),
                para["Version"],
                source or para["Package"],
                rest.strip().strip("()") or para["Version"],
            )
        )
    result.sort(key=lambda p: (p.package, p.architecture))
    return result


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# A changelog trailer line (deb-changelog(5)): one per entry.
_TRAILER_LINE = re.compile(rb"^ -- ", re.MULTILINE)


def epoch_day(when: dt.datetime) -> int:
    """Days since 1970-01-01 of ``when``'s UTC date."""
    return (when.astimezone(dt.UTC).date() - _EPOCH.date()).days


def _changelog_record(tree: Tree, name: str) -> tuple[tuple[int, ...], int]:
    """(entry days newest first, total entries) of a binary package's changelog,
    ``/usr/share/doc/NAME/changelog.Debian.gz`` or ``changelog.gz`` (the paths
    the mapping reads, symlinked doc directories followed)."""
    doc = f"usr/share/doc/{name}"
    for path in (f"{doc}/changelog.Debian.gz", f"{doc}/changelog.gz"):
        history = read_history(tree, path)
        if history is None:
            continue
        data = tree.read_bytes(path) or b""
        try:
            total = len(_TRAILER_LINE.findall(gzip.decompress(data)))
        except (OSError, EOFError):
            total = len(history)
        return tuple(epoch_day(c.date) for c in history), total
    return (), 0


def binary_package_records(tree: Tree) -> tuple[list[InstalledPackage], dict[str, int]]:
    """The installed binary packages of a tree with their changelog records, and
    for every tree path a dpkg file list names, the index of the package listing
    it (the first in (name, architecture) order, as the mapping gives a file to
    the first source listing it; diversions applied the same way)."""
    db = Database.find(tree)
    if db is None:
        raise RuntimeError(f"{tree.description}: no dpkg database found")
    diversions = {d.original: d for d in db.diversions()}
    packages: list[InstalledPackage] = []
    owner: dict[str, int] = {}
    for package in db.packages():
        days, total = _changelog_record(tree, package.name)
        k = len(packages)
        packages.append(
            InstalledPackage(
                package.name,
                package.architecture,
                package.version,
                package.source,
                package.source_version,
                days,
                total,
                package.id,
            )
        )
        for listed in db.listed_paths(package):
            diversion = diversions.get(listed)
            if diversion is not None and diversion.package != package.name:
                listed = diversion.diverted_to
            path = locate(tree, listed)
            if path is not None:
                owner.setdefault(path, k)
    return packages, owner


def row_content_id(entry_type: EntryType, content_id: str | None, target: str | None, rdev: int) -> str:
    if content_id is not None:
        return content_id
    if entry_type is EntryType.SYMLINK:
        return f"symlink:{target}"
    if entry_type in (EntryType.CHAR, EntryType.BLOCK):
        return f"{entry_type.value}:{os.major(rdev)}:{os.minor(rdev)}"
    return str(entry_type.value)


def mapping_digest() -> str:
    """sha256 of the ``mapping`` package's source: an index made by other
    mapping code is stale and ``build`` makes it again (the tree is kept)."""
    h = hashlib.sha256()
    root = Path(mapping.__file__).parent
    for path in sorted(root.rglob("*.py")):
        h.update(f"{path.relative_to(root)}\0{path.stat().st_size}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def stored_mapping_digest(set_name: str, build_name: str) -> str | None:
    """The mapping digest an index was made with (None: no index, or an old one)."""
    try:
        data = json.loads(gzip.decompress(index_path(set_name, build_name).read_bytes()))
    except FileNotFoundError:
        return None
    digest = data.get("mapping_digest")
    return digest if isinstance(digest, str) else None


def make_index(set_name: str, build_name: str, tree: Path) -> dict[str, Any]:
    """The tree index of a laid-out tree (the JSON object written to disk)."""
    started = time.monotonic()
    digest = mapping_digest()
    # Unsplit: the baselines plan whole packages; debchunk's rows split the
    # index themselves (benches.update_cost.split_index).
    m = map_tree(read_tree(RootfsOrigin(str(tree))))
    assert m.tree is not None
    packages, listed_by = binary_package_records(m.tree)
    rows = []
    for entry, owner in zip(m.tree.entries, m.owners, strict=True):
        if entry.type is EntryType.DIR:
            continue
        if owner < 0:
            raise RuntimeError(f"{tree}: {entry.path} has no owner in the mapping")
        cid = row_content_id(entry.type, entry.content_id, entry.target, entry.rdev)
        package = listed_by.get(entry.path, -1)
        rows.append((entry.path, cid, entry.size, entry.mode, m.components[owner].name, package))
    rows.sort()
    spec = spec_for(set_name, build_name)
    info_file = _info_path(tree)
    build_info = json.loads(info_file.read_text()) if info_file.exists() else None
    return {
        "format": INDEX_FORMAT,
        "set": set_name,
        "build": build_name,
        "spec": {**asdict(spec), "key": spec.key, "mirror": MIRROR},
        "reference_date": m.reference_date.isoformat() if m.reference_date else None,
        "mapping_digest": digest,
        "build_info": build_info,
        "index_seconds": round(time.monotonic() - started, 1),
        "components": [c.to_json() for c in m.components],
        "files": {
            "path": [r[0] for r in rows],
            "content_id": [r[1] for r in rows],
            "size": [r[2] for r in rows],
            "mode": [r[3] for r in rows],
            "component": [r[4] for r in rows],
            "package": [r[5] for r in rows],
        },
        "packages": [asdict(p) for p in packages],
    }


def index_is_current(set_name: str, build_name: str) -> bool:
    """Whether the index exists, is of the current format and was made by the
    current mapping code."""
    return (
        stored_mapping_digest(set_name, build_name) == mapping_digest()
        and _stored_format(set_name, build_name) == INDEX_FORMAT
    )


def _stored_format(set_name: str, build_name: str) -> object:
    try:
        return json.loads(gzip.decompress(index_path(set_name, build_name).read_bytes())).get("format")
    except FileNotFoundError:
        return None


def build(set_name: str, build_name: str, *, reindex: bool = False) -> Path:
    """Build (if needed) the tree of a build and its index; return the index path.

    The index is made again when ``reindex`` or when the mapping code changed
    since it was made; the tree is only ever built once.
    """
    path = index_path(set_name, build_name)
    if not reindex and index_is_current(set_name, build_name):
        return path
    tree = build_tree(set_name, build_name)
    data = make_index(set_name, build_name, tree)
    raw = json.dumps(data, separators=(",", ":")).encode()
    _write_atomic(path, gzip.compress(raw, compresslevel=6, mtime=0))
    return path


@dataclass(frozen=True, eq=False)
class TreeIndex:
    """A loaded tree index.  File rows are parallel arrays sorted by path.

    ``owners[i]`` is the index in ``components`` of the component owning
    ``paths[i]``; ``row_digests[i]`` is the sha256 of that row's
    (path, content id, mode), the unit of layer identity.
    """

    set_name: str
    build_name: str
    spec: dict[str, Any]
    reference_date: str | None
    build_info: dict[str, Any] | None
    components: tuple[Component, ...]
    component_index: dict[str, int]
    paths: tuple[str, ...]
    content_ids: tuple[str, ...]
    sizes: NDArray[np.int64]
    modes: NDArray[np.int64]
    owners: NDArray[np.int64]
    row_digests: NDArray[np.uint8]
    packages: tuple[InstalledPackage, ...]
    mapping_digest: str | None = None
    # For each row, the index in ``packages`` of the binary package whose dpkg
    # file list holds it (-1: none); None for a format-1 index, which lacks it.
    row_packages: NDArray[np.int64] | None = None

    @classmethod
    def of_rows(
        cls,
        set_name: str,
        build_name: str,
        components: Sequence[Component],
        paths: Sequence[str],
        content_ids: Sequence[str],
        sizes: Sequence[int],
        modes: Sequence[int],
        owner_names: Sequence[str],
        *,
        spec: dict[str, Any] | None = None,
        reference_date: str | None = None,
        build_info: dict[str, Any] | None = None,
        packages: Sequence[InstalledPackage] = (),
        mapping_digest: str | None = None,
        row_packages: Sequence[int] | None = None,
    ) -> TreeIndex:
        """An index of rows given column by column (sorted by path), each
        owned by the component ``owner_names`` names; the derived columns
        (owner positions, row digests) made here."""
        component_index = {c.name: i for i, c in enumerate(components)}
        paths, content_ids = tuple(paths), tuple(content_ids)
        return cls(
            set_name=set_name,
            build_name=build_name,
            spec=spec or {},
            reference_date=reference_date,
            build_info=build_info,
            components=tuple(components),
            component_index=component_index,
            paths=paths,
            content_ids=content_ids,
            sizes=np.asarray(sizes, dtype=np.int64),
            modes=np.asarray(modes, dtype=np.int64),
            owners=np.asarray([component_index[n] for n in owner_names], dtype=np.int64),
            row_digests=row_digests(paths, content_ids, modes),
            packages=tuple(packages),
            mapping_digest=mapping_digest,
            row_packages=None if row_packages is None else np.asarray(row_packages, dtype=np.int64),
        )

    @property
    def file_count(self) -> int:
        """Non-directory entries."""
        return len(self.paths)

    @property
    def total_bytes(self) -> int:
        """Sum of the sizes of all non-directory entries."""
        return int(self.sizes.sum())

    @property
    def content_bytes(self) -> int:
        """Sum of the components' sizes: the tree as one layer."""
        return sum(c.size for c in self.components)

    def component_of(self, i: int) -> str:
        """Name of the component owning row ``i``."""
        return self.components[int(self.owners[i])].name

    def source_versions(self) -> dict[str, str]:
        """Source package -> its version(s) installed (``,``-joined when several)."""
        found: dict[str, set[str]] = {}
        for p in self.packages:
            found.setdefault(p.source, set()).add(p.source_version)
        # Oldest first by Debian's ordering (ties by string, for a stable order).
        return {s: ",".join(sorted(v, key=_version_order)) for s, v in found.items()}

    def tree_digest(self) -> bytes:
        """Identity of the whole tree as one layer."""
        return hashlib.sha256(self.row_digests.tobytes()).digest()


def row_digests(paths: Sequence[str], content_ids: Sequence[str], modes: Sequence[int]) -> NDArray[np.uint8]:
    joined = b"".join(
        hashlib.sha256(f"{p}\0{c}\0{m:o}".encode("utf-8", "surrogateescape")).digest()
        for p, c, m in zip(paths, content_ids, modes, strict=True)
    )
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, 32)


FROZEN_DIR = Path(__file__).resolve().parent / "data"
FROZEN_ID_HEX = 16  # 64 bits: no collision among a few hundred thousand contents
_HEX_ID = re.compile(r"[0-9a-f]{64}")


def frozen_path(set_name: str) -> Path:
    """The repository's frozen indexes of every build of a set."""
    return FROZEN_DIR / f"{set_name}.pairs.json.xz"


def frozen_builds(set_name: str) -> list[str]:
    """The builds of a set the repository's frozen file holds (none without
    one): the builds of ``BUILDS``, then the earlier builds of ``FOLLOWING``
    (``NAME@DATE``), oldest first."""
    if not frozen_path(set_name).exists():
        return []
    held = _frozen(set_name)["builds"]
    earlier = sorted((k for k in held if k.partition("@")[2]), key=lambda k: (_built_at(held[k]), k))
    return [b for b in BUILDS if b in held] + earlier


def _built_at(data: dict[str, Any]) -> dt.datetime:
    """When the build of an index was made (its ``build_info.built_at``); an
    index without one counts as made at the epoch."""
    when = (data.get("build_info") or {}).get("built_at")
    return dt.datetime.fromisoformat(when) if isinstance(when, str) else dt.datetime.fromtimestamp(0, dt.UTC)


def dated_name(build_name: str, built_at: dt.datetime) -> str:
    """The name an earlier build of ``build_name`` is kept under once a newer
    one is frozen: ``NAME@YYYYMMDDTHHMM`` (UTC)."""
    return f"{build_name}@{built_at.astimezone(dt.UTC):%Y%m%dT%H%M}"


def week_apart_pairs(set_name: str) -> list[tuple[str, str, str]]:
    """Real week-apart update pairs of a set from its frozen builds: for each
    build of ``FOLLOWING``, every two of its frozen builds made at least
    ``WEEK_APART_DAYS`` apart, older first; the pair is named
    ``week-apart-SUITE-OLDDATE-NEWDATE``."""
    if not frozen_path(set_name).exists():
        return []
    held = _frozen(set_name)["builds"]
    found: list[tuple[str, str, str]] = []
    for base in FOLLOWING:
        versions = sorted(
            (k for k in held if k.partition("@")[0] == base), key=lambda k: (_built_at(held[k]), k)
        )
        suite = BUILDS[base][0]
        for i, old in enumerate(versions):
            for new in versions[i + 1 :]:
                t_old, t_new = _built_at(held[old]), _built_at(held[new])
                if t_new - t_old >= dt.timedelta(days=WEEK_APART_DAYS):
                    found.append((f"week-apart-{suite}-{t_old:%Y%m%d}-{t_new:%Y%m%d}", old, new))
    return found


def freeze(set_name: str) -> Path:
    """Store the cached indexes of the builds of ``set_name`` in the repository,
    beside what it already holds.

    A cached index replaces the frozen one of its build, except that a newer
    build of ``FOLLOWING`` (a later ``built_at``) keeps the one it replaces
    under ``dated_name``: the corpus of week-apart pairs grows with every
    refresh.  Builds without a cached index keep their frozen one."""
    builds: dict[str, Any] = dict(_frozen(set_name)["builds"]) if frozen_path(set_name).exists() else {}
    added = 0
    for build_name in BUILDS:
        path = index_path(set_name, build_name)
        if not path.exists():
            note(
                f"{set_name}/{build_name}: no index ({path}), frozen one kept"
                if build_name in builds
                else f"{set_name}/{build_name}: no index ({path}), not frozen"
            )
            continue
        data = json.loads(gzip.decompress(path.read_bytes()))
        ids = data["files"]["content_id"]
        data["files"]["content_id"] = [c[:FROZEN_ID_HEX] if _HEX_ID.fullmatch(c) else c for c in ids]
        before = builds.get(build_name)
        if build_name in FOLLOWING and before is not None and _built_at(before) < _built_at(data):
            builds[dated_name(build_name, _built_at(before))] = before
        builds[build_name] = data
        added += 1
    if not added:
        raise FileNotFoundError(
            f"{set_name}: no build has an index; run `python -m benches.update_pairs build --set {set_name}`"
        )
    raw = json.dumps({"format": INDEX_FORMAT, "builds": builds}, sort_keys=True, separators=(",", ":"))
    target = frozen_path(set_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    # One xz stream with a 64 MiB window: the five builds share most rows.
    _write_atomic(target, lzma.compress(raw.encode(), preset=9 | lzma.PRESET_EXTREME))
    _frozen.cache_clear()
    return target


@cache
def _frozen(set_name: str) -> dict[str, Any]:
    path = frozen_path(set_name)
    try:
        data: dict[str, Any] = json.loads(lzma.decompress(path.read_bytes()))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no frozen indexes of {set_name}; "
            f"run `python -m benches.update_pairs freeze --set {set_name}`"
        ) from None
    return data


def load_index(set_name: str, build_name: str, frozen: bool = False) -> TreeIndex:
    """Load the cached tree index of a build (run ``build`` first), or with
    ``frozen`` the one stored in the repository."""
    path = frozen_path(set_name) if frozen else index_path(set_name, build_name)
    try:
        if frozen:
            data = _frozen(set_name)["builds"][build_name]
        else:
            data = json.loads(gzip.decompress(path.read_bytes()))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no index for {set_name}/{build_name}; run "
            f"`python -m benches.update_pairs build --set {set_name}`"
        ) from None
    if data.get("format") not in READABLE_FORMATS:
        raise ValueError(
            f"{path}: index format {data.get('format')!r}, expected one of {READABLE_FORMATS}; rebuild it"
        )
    files = data["files"]
    paths = tuple(files["path"])
    content_ids = tuple(files["content_id"])
    components, owner_names = volatile_now(
        [Component.from_json(c) for c in data["components"]],
        paths,
        content_ids,
        files["size"],
        files["mode"],
        files["component"],
        files.get("package"),
    )
    if any(a >= b for a, b in itertools.pairwise(paths)):
        raise ValueError(f"{path}: file rows are not sorted by path; rebuild the index")
    return TreeIndex.of_rows(
        set_name,
        build_name,
        components,
        paths,
        content_ids,
        files["size"],
        files["mode"],
        owner_names,
        spec=data["spec"],
        reference_date=data["reference_date"],
        build_info=data.get("build_info"),
        packages=tuple(_installed(p) for p in data["packages"]),
        mapping_digest=data.get("mapping_digest"),
        row_packages=files.get("package"),
    )


def volatile_now(
    components: list[Component],
    paths: Sequence[str],
    content_ids: Sequence[str],
    sizes: Sequence[int],
    modes: Sequence[int],
    owner_names: Sequence[str],
    listed: Sequence[int] | None,
) -> tuple[tuple[Component, ...], list[str]]:
    """The components and row owners with today's volatile paths applied.

    An index keeps the owners the mapping gave when it was made.  The volatile
    rule (``mapping.ownership.is_volatile_path``) is on paths alone and comes
    after the dpkg file lists, so a path added to it later is applied here to
    the rows no package lists (``listed[i] < 0``; every row without that
    column): such a row moves to the ``volatile``
    component (made if missing, as the mapping makes it), and the sizes and
    file counts of the components it leaves and joins are counted again
    (distinct contents once, as ``Component.size`` counts them)."""
    kinds = {c.name: c.kind for c in components}
    moved = [
        i
        for i, (path, name) in enumerate(zip(paths, owner_names, strict=True))
        if (listed is None or listed[i] < 0) and kinds.get(name) != "volatile" and is_volatile_path(path)
    ]
    if not moved:
        return tuple(components), list(owner_names)
    names = list(owner_names)
    touched = {names[i] for i in moved} | {VOLATILE}
    for i in moved:
        names[i] = VOLATILE
    if VOLATILE not in kinds:
        components.append(Component(VOLATILE, "volatile", change_probability=VOLATILE_CHANGE_PROBABILITY))
    held: dict[str, dict[str, int]] = {n: {} for n in touched}
    for name, cid, size in zip(names, content_ids, sizes, strict=True):
        if name in held and cid:
            held[name].setdefault(cid, int(size))
    # Component.files counts entries other than directories.
    counted = {
        n: sum(1 for name, mode in zip(names, modes, strict=True) if name == n and not stat.S_ISDIR(mode))
        for n in touched
    }
    out = tuple(
        replace(c, size=sum(held[c.name].values()), files=counted[c.name]) if c.name in touched else c
        for c in components
    )
    return out, names


def _installed(record: dict[str, Any]) -> InstalledPackage:
    """An ``InstalledPackage`` from its JSON object (lists back to tuples)."""
    fields = dict(record)
    fields["changelog_days"] = tuple(fields.get("changelog_days", ()))
    return InstalledPackage(**fields)


def _layer_of_component(index: TreeIndex, groups: Sequence[Sequence[str]]) -> NDArray[np.int64]:
    """For each component of ``index``, the group holding it (-1: none)."""
    layer = np.full(len(index.components), -1, dtype=np.int64)
    for g, group in enumerate(groups):
        for name in group:
            i = index.component_index.get(name)
            if i is None:
                raise ValueError(f"{index.set_name}/{index.build_name}: no component {name!r}")
            if layer[i] >= 0:
                raise ValueError(f"{index.set_name}/{index.build_name}: {name!r} is in two groups")
            layer[i] = g
    with_files = np.bincount(index.owners, minlength=len(index.components)) > 0
    missing = [index.components[i].name for i in np.flatnonzero(with_files & (layer < 0))]
    if missing:
        raise ValueError(
            f"{index.set_name}/{index.build_name}: {len(missing)} components with files are in no "
            f"group: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
        )
    return layer


def layers(index: TreeIndex, groups: Sequence[Sequence[str]]) -> list[tuple[bytes, int]]:
    """(identity, size in bytes) of each layer made of ``groups`` of ``index``'s
    components; a layer's size is the sum of its components' sizes."""
    of_component = _layer_of_component(index, groups)
    of_row = of_component[index.owners]
    order = np.argsort(of_row, kind="stable")  # stable: path order within each layer
    counts = np.bincount(of_row, minlength=len(groups))
    grouped = of_component >= 0
    component_sizes = np.array([float(c.size) for c in index.components])
    sizes = np.bincount(of_component[grouped], weights=component_sizes[grouped], minlength=len(groups))
    result = []
    start = 0
    for g in range(len(groups)):
        rows = order[start : start + counts[g]]
        start += int(counts[g])
        result.append((hashlib.sha256(index.row_digests[rows].tobytes()).digest(), int(sizes[g])))
    return result


def download_bytes(
    old_index: TreeIndex,
    old_groups: Sequence[Sequence[str]],
    new_index: TreeIndex,
    new_groups: Sequence[Sequence[str]],
) -> int:
    """Bytes a client holding the old image downloads to get the new one: the
    sizes of the new layers whose identity is not among the old layers'."""
    have = {identity for identity, _ in layers(old_index, old_groups)}
    return sum(size for identity, size in layers(new_index, new_groups) if identity not in have)


def ideal_bytes(old_index: TreeIndex, new_index: TreeIndex) -> int:
    """The floor: sizes of the new tree's contents found nowhere in the old tree,
    each distinct content counted once."""
    have = set(old_index.content_ids)
    new: dict[str, int] = {}
    for cid, size in zip(new_index.content_ids, new_index.sizes.tolist(), strict=True):
        if cid not in have:
            new.setdefault(cid, size)
    return sum(new.values())


def single_layer_bytes(old_index: TreeIndex, new_index: TreeIndex) -> int:
    """Cost with one layer holding everything: the whole new tree if anything changed."""
    return 0 if old_index.tree_digest() == new_index.tree_digest() else new_index.content_bytes


def changed_sources(old_index: TreeIndex, new_index: TreeIndex) -> dict[str, tuple[str | None, str | None]]:
    """Source packages whose installed binaries changed (version, added or
    removed binaries): source -> (old source version(s), new source version(s))."""

    def by_source(index: TreeIndex) -> dict[str, set[tuple[str, str, str]]]:
        found: dict[str, set[tuple[str, str, str]]] = {}
        for p in index.packages:
            found.setdefault(p.source, set()).add((p.package, p.architecture, p.version))
        return found

    old, new = by_source(old_index), by_source(new_index)
    old_v, new_v = old_index.source_versions(), new_index.source_versions()
    return {
        s: (old_v.get(s), new_v.get(s)) for s in sorted(old.keys() | new.keys()) if old.get(s) != new.get(s)
    }


@dataclass(frozen=True)
class PairSummary:
    """The layering-independent figures of one update pair."""

    set_name: str
    pair: str
    old_build: str
    new_build: str
    files: int
    total_bytes: int
    ideal_bytes: int
    single_layer_bytes: int
    changed_sources: int
    old_packages: int
    new_packages: int


def summarize(set_name: str, pair: str, old_build: str, new_build: str) -> PairSummary:
    """Figures of one pair, from the cached indexes."""
    old, new = load_index(set_name, old_build), load_index(set_name, new_build)
    return PairSummary(
        set_name,
        pair,
        old_build,
        new_build,
        new.file_count,
        new.total_bytes,
        ideal_bytes(old, new),
        single_layer_bytes(old, new),
        len(changed_sources(old, new)),
        len(old.packages),
        len(new.packages),
    )


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}"


def corpus_sets() -> list[str]:
    """The sets of the corpus: every set but the held-out ones."""
    return [s for s in SETS if s not in HELD_OUT]


def _sets(choice: str) -> list[str]:
    return corpus_sets() if choice == "all" else [choice]


def cmd_build(
    set_names: Iterable[str],
    reindex: bool = False,
    drop_trees: bool = False,
    only: Sequence[str] | None = None,
) -> int:
    """Build and index every build of the sets (``only``: these builds); print
    each pair's figures.  With ``drop_trees``, each tree is removed once its
    index is made (the index is all the update-cost experiment reads)."""
    failed: list[str] = []
    for set_name in set_names:
        for build_name in BUILDS if only is None else only:
            label = f"{set_name}/{build_name}"
            has_index = index_path(set_name, build_name).exists()
            if not reindex and index_is_current(set_name, build_name):
                note(f"{label}: cached ({index_path(set_name, build_name)})")
                continue
            free = shutil.disk_usage(_existing(cache_dir())).free
            if (tree_path(set_name, build_name) / "usr").is_dir():
                why = "forced" if reindex else "made by other mapping code" if has_index else "no index"
                note(f"{label}: indexing the cached tree ({why})")
            else:
                note(f"{label}: building ({free / 1e9:.1f} GB free)")
            started = time.monotonic()
            try:
                build(set_name, build_name, reindex=reindex)
            except (BuildError, RuntimeError, OSError, subprocess.CalledProcessError) as e:
                note(f"{label}: FAILED: {e}")
                failed.append(label)
                continue
            note(f"{label}: done in {time.monotonic() - started:.0f} s -> {index_path(set_name, build_name)}")
            if drop_trees:
                shutil.rmtree(tree_path(set_name, build_name), ignore_errors=True)
        for pair, old_build, new_build in pairs(set_name):
            if not (index_path(set_name, old_build).exists() and index_path(set_name, new_build).exists()):
                note(f"{set_name} {pair}: skipped, a build is missing")
                continue
            s = summarize(set_name, pair, old_build, new_build)
            print(
                f"{set_name} {pair} ({old_build} -> {new_build}): {s.changed_sources} source packages "
                f"changed; ideal {_mb(s.ideal_bytes)} MB, single layer {_mb(s.single_layer_bytes)} MB "
                f"of {_mb(s.total_bytes)} MB",
                flush=True,
            )
    if failed:
        note(f"failed: {', '.join(failed)}")
        return 1
    return 0


def cmd_refresh(set_names: Iterable[str], drop_trees: bool = False) -> int:
    """Build the ``FOLLOWING`` builds of the sets again from today's mirror,
    index them and freeze them beside the earlier ones."""
    failed: list[str] = []
    for set_name in set_names:
        for build_name in FOLLOWING:
            tree = tree_path(set_name, build_name)
            for stale in (index_path(set_name, build_name), _info_path(tree)):
                stale.unlink(missing_ok=True)
            shutil.rmtree(tree, ignore_errors=True)
        if cmd_build([set_name], drop_trees=drop_trees, only=FOLLOWING) != 0:
            failed.append(set_name)
            continue
        note(f"{set_name}: frozen into {freeze(set_name)}")
        for pair, old, new in week_apart_pairs(set_name):
            note(f"{set_name}: week-apart pair {pair} ({old} -> {new})")
    if failed:
        note(f"failed: {', '.join(failed)}")
        return 1
    return 0


def cmd_show(set_names: Iterable[str], as_json: bool) -> int:
    """Print each pair's layering-independent figures."""
    rows = []
    current = mapping_digest()
    for set_name in set_names:
        for build_name in BUILDS:
            has_index = index_path(set_name, build_name).exists()
            if has_index and stored_mapping_digest(set_name, build_name) != current:
                note(f"{set_name}/{build_name}: index made by other mapping code; run `build` to refresh it")
        for pair, old_build, new_build in pairs(set_name):
            try:
                rows.append(summarize(set_name, pair, old_build, new_build))
            except FileNotFoundError as e:
                note(f"{set_name} {pair}: {e}")
    if as_json:
        print(json.dumps([asdict(r) for r in rows], indent=1))
        return 0
    head = ("set", "pair", "old -> new", "files", "total MB", "ideal MB", "single MB", "src changed")
    table = [head] + [
        (
            r.set_name,
            r.pair,
            f"{r.old_build} -> {r.new_build}",
            f"{r.files:,}",
            _mb(r.total_bytes),
            _mb(r.ideal_bytes),
            _mb(r.single_layer_bytes),
            str(r.changed_sources),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        cells = [
            c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``build`` or ``show``."""
    parser = argparse.ArgumentParser(
        prog="python -m benches.update_pairs", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build and index every tree of the set(s)")
    p_build.add_argument("--set", choices=[*SETS, "all"], default="all")
    p_build.add_argument("--reindex", action="store_true", help="make every index again (trees are kept)")
    p_build.add_argument(
        "--drop-trees", action="store_true", help="remove each tree once its index is made (saves disk)"
    )
    p_refresh = sub.add_parser(
        "refresh",
        help="build the security-following builds again and freeze them beside the earlier ones "
        "(week-apart pairs)",
    )
    p_refresh.add_argument("--set", choices=[*SETS, "all"], default="all")
    p_refresh.add_argument(
        "--drop-trees", action="store_true", help="remove each tree once its index is made"
    )
    p_show = sub.add_parser("show", help="print each update pair's figures")
    p_show.add_argument("--set", choices=[*SETS, "all"], default="all")
    p_show.add_argument("--json", action="store_true")
    p_freeze = sub.add_parser("freeze", help="store the set(s)' indexes in the repository (benches/data)")
    p_freeze.add_argument("--set", choices=[*SETS, "all"], default="all")
    args = parser.parse_args(argv)
    if args.command == "build":
        return cmd_build(_sets(args.set), args.reindex, args.drop_trees)
    if args.command in ("refresh", "freeze") and args.set in HELD_OUT:
        parser.error(f"--set {args.set}: a held-out set is never frozen (benches/update_pairs.py, HELD_OUT)")
    if args.command == "refresh":
        return cmd_refresh(_sets(args.set), args.drop_trees)
    if args.command == "freeze":
        for set_name in _sets(args.set):
            note(f"{set_name}: frozen into {freeze(set_name)}")
        return 0
    return cmd_show(_sets(args.set), args.json)


if __name__ == "__main__":
    sys.exit(main())
