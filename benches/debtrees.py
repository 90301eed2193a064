"""Real Debian trees and OSTree commits for tests and benchmarks.

In: a suite, an mmdebstrap variant and a package list.  Out: a cached root tree
(built once with mmdebstrap), a copy of it laid out the way an OSTree image
builder lays out a tree before ``ostree commit`` (DESIGN.md, "Real Debian commits
for tests and benches"), and a commit of that copy in a fresh repo.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MIRROR = os.environ.get("DEBCHUNK_MIRROR", "http://deb.debian.org/debian")

# The mirror's Release files may be past Valid-Until (DESIGN.md).
_APTOPT = 'Acquire::Check-Valid-Until "false"'

SERVER_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "openssh-server",
    "python3",
    "curl",
    "ca-certificates",
    "iproute2",
    "kmod",
    "udev",
    "dbus",
    "linux-image-amd64",
)
# The smallest tree acceptance tests need: systemd, a kernel with its initramfs,
# and locales so that glibc's three binaries are all present.
MINIMAL_PACKAGES = ("systemd", "systemd-sysv", "linux-image-amd64", "initramfs-tools", "locales")


@dataclass(frozen=True)
class TreeSpec:
    """What mmdebstrap is asked to build.

    ``extra_sources`` are further sources.list lines (``deb URL SUITE main``),
    passed to mmdebstrap after the mirror.  ``build_id`` tells apart two builds
    of the same spec (a rebuild): it changes the cache key and nothing else.
    ``dpkgopts`` are dpkg options (``path-exclude=...``), which mmdebstrap
    applies and leaves in the tree's ``/etc/dpkg/dpkg.cfg.d/99mmdebstrap``.
    """

    suite: str
    variant: str = "minbase"
    include: tuple[str, ...] = MINIMAL_PACKAGES
    extra_sources: tuple[str, ...] = ()
    build_id: str = ""
    dpkgopts: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        fields = [self.suite, self.variant, *sorted(self.include), MIRROR]
        # Only added when set, so that the keys of existing caches stay the same.
        if self.extra_sources:
            fields += ["sources:", *self.extra_sources]
        if self.build_id:
            fields += [f"build-id:{self.build_id}"]
        if self.dpkgopts:
            fields += ["dpkgopts:", *self.dpkgopts]
        text = "\n".join(fields)
        return f"{self.suite}-{self.variant}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def mmdebstrap_args(self, target: Path) -> list[str]:
        """The mmdebstrap command line that builds this spec into ``target``."""
        return [
            "mmdebstrap",
            "--quiet",
            f"--variant={self.variant}",
            "--mode=root",
            f"--aptopt={_APTOPT}",
            *(f"--dpkgopt={option}" for option in self.dpkgopts),
            f"--include={','.join(self.include)}",
            self.suite,
            str(target),
            MIRROR,
            *self.extra_sources,
        ]


def cache_dir() -> Path:
    """Where built trees are kept between runs."""
    base = os.environ.get("DEBCHUNK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "debchunk"
    )
    return Path(base) / "trees"


def build_tree(spec: TreeSpec) -> Path:
    """Return a cached mmdebstrap tree for ``spec``, building it if needed."""
    final = cache_dir() / spec.key
    if (final / "usr").is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    subprocess.run(spec.mmdebstrap_args(partial), check=True, stdin=subprocess.DEVNULL)
    partial.rename(final)
    return final


def _empty_dir(path: Path) -> None:
    for child in list(path.iterdir()) if path.is_dir() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def ostreeify(src: Path, dst: Path, admindir: str = "usr/share/dpkg/database", *, move: bool = False) -> Path:
    """Copy ``src`` to ``dst`` and lay it out as an OSTree image builder does.

    With ``move``, ``src`` is renamed to ``dst`` instead of copied (same
    filesystem; ``src`` is gone afterwards), which saves a copy of a large tree.
    """
    if dst.exists():
        shutil.rmtree(dst)
    if move:
        src.rename(dst)
    else:
        subprocess.run(["cp", "-a", "--", str(src), str(dst)], check=True)
    # 1. API filesystems and scratch space hold nothing in a commit.
    for name in ("dev", "proc", "sys", "run", "tmp"):
        (dst / name).mkdir(exist_ok=True)
        _empty_dir(dst / name)
    # 2. /etc is shipped as usr/etc.
    (dst / "etc").rename(dst / "usr" / "etc")
    # 3. The dpkg database moves under usr/; var/lib/dpkg points at it.
    target = dst / admindir
    target.parent.mkdir(parents=True, exist_ok=True)
    (dst / "var/lib/dpkg").rename(target)
    # 4. Kernel and initramfs live beside their modules.
    boot = dst / "boot"
    for vmlinuz in sorted(boot.glob("vmlinuz-*")):
        kver = vmlinuz.name[len("vmlinuz-") :]
        moddir = dst / "usr/lib/modules" / kver
        moddir.mkdir(parents=True, exist_ok=True)
        vmlinuz.rename(moddir / "vmlinuz")
        initrd = boot / f"initrd.img-{kver}"
        if initrd.exists():
            initrd.rename(moddir / "initramfs.img")
    _empty_dir(boot)
    for link in list(dst.iterdir()):
        if link.is_symlink() and link.name.startswith(("vmlinuz", "initrd.img")):
            link.unlink()
    # 5. var/ is state: only var/tmp and the dpkg symlink remain.
    _empty_dir(dst / "var")
    (dst / "var/tmp").mkdir(mode=0o1777)
    os.chmod(dst / "var/tmp", 0o1777)
    (dst / "var/lib").mkdir()
    os.symlink(os.path.relpath(target, dst / "var/lib"), dst / "var/lib/dpkg")
    return dst


def ostree_commit(tree: Path, repo: Path, ref: str, mode: str = "bare-user") -> str:
    """Commit ``tree`` as ``ref`` into ``repo`` (created if missing); return the checksum."""
    if not (repo / "config").exists():
        subprocess.run(["ostree", "init", f"--mode={mode}", f"--repo={repo}"], check=True)
    out = subprocess.run(
        [
            "ostree",
            "commit",
            f"--repo={repo}",
            "--bootable",
            f"--tree=dir={tree}",
            "-b",
            ref,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()
