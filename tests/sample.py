"""Generated Debian-like trees: a real dpkg database, real gzip'd changelogs,
usrmerge symlinks, the OSTree layout (usr/etc, relocated admindir and kernel),
optionally committed with ``ostree commit``.

``build_sample`` is the embedded sample; ``make demo`` (tests/demo.py) runs the
whole job on it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import os
import struct
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

KVER = "6.1.0-1-amd64"
# vfs_cap_data revision 2, effective, permitted = CAP_NET_RAW (13) (capability.h).
CAP_NET_RAW_EP = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)
ADMINDIR = "usr/share/dpkg/database"


@dataclass
class Pkg:
    """A binary package to install into a sample tree."""

    name: str
    version: str = "1.0-1"
    source: str | None = None
    source_version: str | None = None
    arch: str = "amd64"
    multi_arch: str | None = None
    status: str = "install ok installed"
    files: dict[str, bytes] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    hardlinks: dict[str, str] = field(default_factory=dict)  # new path -> path in files
    changelog: Sequence[dt.datetime] = ()
    changelog_versions: Sequence[str] = ()  # one per date; default: all of one upstream version
    native: bool = False


def changelog_text(source: str, versions_dates: Iterable[tuple[str, dt.datetime]]) -> bytes:
    """A Debian changelog with one entry per (version, date), newest first."""
    out = []
    for version, when in versions_dates:
        stamp = email.utils.format_datetime(when)
        out.append(
            f"{source} ({version}) unstable; urgency=medium\n\n  * Change.\n\n"
            f" -- Dev Eloper <dev@example.org>  {stamp}\n\n"
        )
    return "".join(out).encode()


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


class SampleTree:
    """A root tree under construction, laid out as an OSTree commit expects.

    Paths given to ``add`` are as dpkg would list them (``/etc/x``, ``/bin/y``);
    they are written where an OSTree tree keeps them (``usr/etc/x``, ``usr/bin/y``).
    """

    def __init__(
        self, root: Path, admindir: str = ADMINDIR, usrmerge: bool = True, ostree_layout: bool = True
    ) -> None:
        self.root = root
        self.admindir = admindir
        self.ostree_layout = ostree_layout
        self.packages: list[Pkg] = []
        self.diversions: list[tuple[str, str, str]] = []
        root.mkdir(parents=True, exist_ok=True)
        (root / "usr/bin").mkdir(parents=True, exist_ok=True)
        (root / "usr/lib").mkdir(parents=True, exist_ok=True)
        (root / "usr/etc" if ostree_layout else root / "etc").mkdir(exist_ok=True)
        if usrmerge:
            for name in ("bin", "lib", "sbin"):
                (root / "usr" / name).mkdir(exist_ok=True)
                os.symlink(f"usr/{name}", root / name)
        (root / admindir / "info").mkdir(parents=True)
        (root / admindir / "alternatives").mkdir()
        if admindir != "var/lib/dpkg":
            (root / "var/lib").mkdir(parents=True)
            os.symlink(os.path.relpath(root / admindir, root / "var/lib"), root / "var/lib/dpkg")

    def where(self, listed: str) -> Path:
        """The on-disk location of a path as dpkg lists it."""
        rel = listed.lstrip("/")
        if self.ostree_layout and (rel == "etc" or rel.startswith("etc/")):
            rel = "usr/" + rel
        if self.ostree_layout and rel.startswith("boot/vmlinuz-"):
            rel = f"usr/lib/modules/{rel[len('boot/vmlinuz-') :]}/vmlinuz"
        parts = rel.split("/")
        if parts[0] in ("bin", "lib", "sbin") and (self.root / parts[0]).is_symlink():
            rel = "usr/" + rel
        return self.root / rel

    def write(self, listed: str, data: bytes, mode: int = 0o644) -> Path:
        """Write a file at a dpkg-style path, creating parents."""
        path = self.where(listed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
        return path

    def add(self, pkg: Pkg) -> Pkg:
        """Install ``pkg``: its files, its changelog, its list and status entry."""
        source = pkg.source or pkg.name
        doc = f"/usr/share/doc/{pkg.name}"
        if pkg.changelog:
            name = "changelog.gz" if pkg.native else "changelog.Debian.gz"
            versions = pkg.changelog_versions or [
                f"{pkg.source_version or pkg.version}~{i}" for i in range(len(pkg.changelog))
            ]
            pkg.files[f"{doc}/{name}"] = _gzip(
                changelog_text(source, zip(versions, pkg.changelog, strict=True))
            )
        listed: set[str] = set()
        for path, data in pkg.files.items():
            self.write(path, data, 0o755 if "/bin/" in path else 0o644)
            listed.add(path)
        for path, existing in pkg.hardlinks.items():
            os.link(self.where(existing), self.where(path))
            listed.add(path)
        for path, target in pkg.symlinks.items():
            link = self.where(path)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, link)
            listed.add(path)
        dirs = {"/."}
        for path in listed:
            parts = path.split("/")
            dirs.update("/".join(parts[:i]) for i in range(2, len(parts)))
        list_name = f"{pkg.name}:{pkg.arch}.list" if pkg.multi_arch == "same" else f"{pkg.name}.list"
        text = "\n".join(sorted(dirs | listed)) + "\n"
        (self.root / self.admindir / "info" / list_name).write_text(text)
        self.packages.append(pkg)
        return pkg

    def divert(self, original: str, diverted_to: str, package: str) -> None:
        """Record a diversion (``package`` ``:`` for a local one)."""
        self.diversions.append((original, diverted_to, package))

    def alternative(self, name: str, link: str, target: str) -> None:
        """An update-alternatives group with one master link and no slaves."""
        (self.root / self.admindir / "alternatives" / name).write_text(f"auto\n{link}\n\n{target}\n50\n\n")
        alt = self.where(f"/etc/alternatives/{name}")
        alt.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, alt)
        os.symlink(f"/etc/alternatives/{name}", self.where(link))

    def finish(self, truncate_status: int | None = None) -> Path:
        """Write ``status`` and ``diversions``; optionally cut ``status`` short."""
        paras = []
        for p in self.packages:
            fields = [
                f"Package: {p.name}",
                f"Status: {p.status}",
                "Priority: optional",
                f"Architecture: {p.arch}",
            ]
            if p.multi_arch:
                fields.append(f"Multi-Arch: {p.multi_arch}")
            if p.source and p.source_version:
                fields.append(f"Source: {p.source} ({p.source_version})")
            elif p.source:
                fields.append(f"Source: {p.source}")
            fields += [f"Version: {p.version}", "Description: sample package", " for tests"]
            paras.append("\n".join(fields) + "\n")
        status = "\n".join(paras).encode()
        if truncate_status is not None:
            status = status[:truncate_status]
        (self.root / self.admindir / "status").write_bytes(status)
        (self.root / self.admindir / "diversions").write_text(
            "".join(f"{a}\n{b}\n{c}\n" for a, b, c in self.diversions)
        )
        return self.root


def commit(
    tree: Path, repo: Path, ref: str = "sample", mode: str = "bare-user", options: Sequence[str] = ()
) -> str:
    """``ostree commit`` the tree into ``repo`` (initialised if needed), with
    ``options`` given to ``ostree commit`` too (metadata, ...)."""
    if not (repo / "config").exists():
        subprocess.run(["ostree", "init", f"--repo={repo}", f"--mode={mode}"], check=True)
    out = subprocess.run(
        [
            "ostree",
            "commit",
            f"--repo={repo}",
            f"--tree=dir={tree}",
            "-b",
            ref,
            "--timestamp=2026-01-01T00:00:00Z",
            "-s",
            "sample",
            *options,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def day(n: int) -> dt.datetime:
    """A fixed date ``n`` days before the sample's newest changelog entry."""
    return dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC) - dt.timedelta(days=n)


def blob(seed: str, size: int) -> bytes:
    """Deterministic, incompressible-enough content of ``size`` bytes."""
    out = bytearray()
    counter = 0
    import hashlib

    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def build_sample(root: Path) -> Path:
    """The embedded sample: a small Debian-like system with every kind of owner."""
    t = SampleTree(root)
    t.add(
        Pkg(
            "libc6",
            "2.41-12",
            source="glibc",
            arch="amd64",
            multi_arch="same",
            files={
                "/lib/x86_64-linux-gnu/libc.so.6": blob("libc", 2_000_000),
                "/lib64/ld-linux-x86-64.so.2": blob("ld", 200_000),
            },
            changelog=[day(0), day(30), day(60), day(200), day(400)],
        )
    )
    t.add(
        Pkg(
            "libc-bin",
            "2.41-12",
            source="glibc",
            files={
                "/sbin/ldconfig": blob("ldconfig", 900_000),
                "/etc/ld.so.conf": b"include /etc/ld.so.conf.d/*.conf\n",
            },
            changelog=[day(0), day(30), day(60), day(200), day(400)],
        )
    )
    t.add(
        Pkg(
            "locales",
            "2.41-12",
            source="glibc",
            arch="all",
            files={"/usr/share/i18n/SUPPORTED": blob("supported", 300_000)},
            changelog=[day(0), day(30), day(60), day(200), day(400)],
        )
    )
    t.divert("/lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2.usr-is-merged", "libc6")
    t.add(
        Pkg(
            "systemd",
            "257.9-1",
            files={
                "/lib/systemd/systemd": blob("systemd", 1_500_000),
                "/etc/systemd/system.conf": b"[Manager]\n",
            },
            changelog=[day(5), day(90)],
        )
    )
    t.add(
        Pkg(
            "libsystemd0",
            "257.9-1",
            source="systemd",
            multi_arch="same",
            files={"/usr/lib/x86_64-linux-gnu/libsystemd.so.0": blob("libsystemd", 800_000)},
            changelog=[day(5), day(90)],
        )
    )
    t.add(
        Pkg(
            "coreutils",
            "9.7-3",
            files={"/bin/ls": blob("ls", 150_000), "/bin/cat": blob("cat", 40_000)},
            changelog=[day(500)],
        )
    )
    t.add(
        Pkg(
            "bash",
            "5.2.37-2",
            files={"/bin/bash": blob("bash", 1_200_000), "/etc/bash.bashrc": b"# bash\n"},
            changelog=[day(100), day(300)],
        )
    )
    # setuid root, a file capability (binary xattr, as Debian's ping has), hardlinks.
    t.add(
        Pkg(
            "login",
            "1:4.17-1",
            source="shadow",
            files={"/bin/su": blob("su", 60_000), "/bin/ping": blob("ping", 90_000)},
            changelog=[day(3)],
        )
    )
    os.chmod(t.where("/bin/su"), 0o4755)
    os.setxattr(t.where("/bin/ping"), "security.capability", CAP_NET_RAW_EP)
    t.add(
        Pkg(
            "gzip",
            "1.13-1",
            files={"/bin/gzip": blob("gzip", 80_000)},
            hardlinks={"/bin/gunzip": "/bin/gzip"},
            changelog=[day(9)],
        )
    )
    t.add(Pkg("nano", "8.4-1", files={"/bin/nano": blob("nano", 300_000)}, changelog=[day(20)]))
    t.alternative("editor", "/usr/bin/editor", "/bin/nano")
    t.add(
        Pkg(
            "base-files",
            "13.8",
            native=True,
            files={"/etc/debian_version": b"13.1\n"},
            changelog=[day(10), day(40), day(70)],
        )
    )
    t.add(
        Pkg(
            f"linux-image-{KVER}",
            "6.1.8-1",
            source="linux-signed-amd64",
            source_version="6.1.8+1",
            files={
                f"/boot/vmlinuz-{KVER}": blob("vmlinuz", 3_000_000),
                f"/lib/modules/{KVER}/kernel/fs/ext4.ko": blob("ext4", 500_000),
            },
            changelog=[day(1), day(15), day(29), day(43)],
        )
    )
    moddir = t.where(f"/lib/modules/{KVER}")
    (moddir / "modules.alias").write_bytes(blob("alias", 1_300_000))  # depmod output
    (moddir / "initramfs.img").write_bytes(blob("initramfs", 4_000_000))
    t.write("/etc/ld.so.cache", blob("ldcache", 20_000))
    t.write("/etc/machine-id", b"0123456789abcdef0123456789abcdef\n")
    t.write("/etc/ssh/ssh_host_ed25519_key", blob("hostkey", 400), 0o600)
    t.write("/etc/hostname", b"sample\n")
    t.write("/usr/lib/firmware/blob.bin", blob("firmware", 1_500_000))
    app = t.write("/opt/app/bin/app", blob("app", 600_000)).parent.parent
    os.setxattr(app, "user.component", b"app")
    plugin = t.write("/opt/app/plugins/extra.so", blob("extra", 250_000))
    os.setxattr(plugin, "user.component", b"app-extra")
    os.symlink("bin/app", app / "current")
    return t.finish()
