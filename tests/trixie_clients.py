"""Debian trixie's skopeo and podman, for checking signatures as clients do.

Debian 12's skopeo 1.9.3 and podman 4.3.1 are built with sigstore disabled
(a Debian-local patch), so signatures are checked with trixie's (skopeo 1.18,
podman 5.4) in a chroot: ``mmdebstrap --variant=minbase
--include=skopeo,podman trixie``, built once and cached under the debchunk
cache directory (``benches.debtrees.build_tree``, keyed by suite, variant,
packages and mirror).  Each session works in an overlay on the cached tree,
so the cache stays as built, with /proc, /sys (read-only), /run and a /dev
of its own (a tmpfs with the few device nodes the clients open) mounted, and
unmounted again.  The chroot shares this machine's network,
so it reaches the test registry on 127.0.0.1.

``TrixieClients.trust(host, key)`` writes a ``policy.json`` that takes only
images of ``host`` signed by ``key`` (``sigstoreSigned``,
``matchRepoDigestOrExact``) and the ``registries.d`` entry that makes
containers/image read sigstore attachments there; ``skopeo_copy`` and
``podman_pull`` then fetch an image under it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from benches.debtrees import TreeSpec, build_tree

SPEC = TreeSpec("trixie", "minbase", ("skopeo", "podman"))
# What the chroot needs mounted: (type, source, place, options).
# Nothing of this machine's is bound in: a run that dies before unmounting
# leaves nothing a later clean-up of the directory could delete through.
_MOUNTS = (
    ("proc", "proc", "proc", ()),
    ("sysfs", "sys", "sys", ("-o", "ro")),
    ("tmpfs", "tmpfs", "run", ()),
    ("tmpfs", "tmpfs", "dev", ("-o", "mode=0755")),
    # podman's locks.
    ("tmpfs", "tmpfs", "dev/shm", ("-o", "mode=1777")),
)
# The device nodes the clients use, made in the chroot's own /dev (Linux's
# numbers, devices.txt): name -> (major, minor).
_DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}


class TrixieClients:
    """trixie's skopeo and podman in a chroot at ``root`` (see the module)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._pulls = 0

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``args`` run in the chroot; stdout and stderr captured."""
        return subprocess.run(
            ["chroot", str(self.root), "env", "PODMAN_IGNORE_CGROUPSV1_WARNING=1", *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    def put(self, path: Path, name: str) -> str:
        """Copy ``path`` into the chroot's /srv as ``name``; its path there."""
        target = self.root / "srv" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return f"/srv/{name}"

    def trust(self, host: str, key: Path | None, name: str, identity: str | None = None) -> str:
        """A policy (``/srv/NAME.json`` in the chroot) taking images of
        ``host`` signed by ``key`` only (any image, without a key), for the
        reference pulled (``matchRepoDigestOrExact``) or, given ``identity``,
        for that one (``exactReference``); the registries.d entry for
        ``host`` is written too."""
        registries_d = self.root / "etc/containers/registries.d"
        registries_d.mkdir(parents=True, exist_ok=True)
        (registries_d / "debchunk-tests.yaml").write_text(
            f"docker:\n  {host}:\n    use-sigstore-attachments: true\n"
        )
        requirement: dict[str, object]
        if key is None:
            requirement = {"type": "insecureAcceptAnything"}
        else:
            requirement = {
                "type": "sigstoreSigned",
                "keyPath": self.put(key, f"{name}.pub"),
                "signedIdentity": (
                    {"type": "matchRepoDigestOrExact"}
                    if identity is None
                    else {"type": "exactReference", "dockerReference": identity}
                ),
            }
        policy = {
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {host: [requirement]},
                "dir": {"": [{"type": "insecureAcceptAnything"}]},
            },
        }
        target = self.root / "srv" / f"{name}.json"
        target.write_text(json.dumps(policy))
        return f"/srv/{name}.json"

    def skopeo_copy(self, policy: str, image: str) -> subprocess.CompletedProcess[str]:
        """``skopeo copy --policy`` of ``docker://IMAGE`` into a new ``dir:``."""
        self._pulls += 1
        return self.run(
            "skopeo",
            "copy",
            "--policy",
            policy,
            "--src-tls-verify=false",
            f"docker://{image}",
            f"dir:/srv/copy-{self._pulls}",
        )

    def podman_pull(self, policy: str, image: str) -> subprocess.CompletedProcess[str]:
        """``podman pull`` of ``docker://IMAGE`` under ``policy``, into a new
        store (vfs: overlay cannot stack on the overlay the chroot is)."""
        self._pulls += 1
        store = f"/srv/storage-{self._pulls}"
        return self.run(
            "podman",
            "--storage-driver",
            "vfs",
            "--root",
            store,
            "--runroot",
            f"/run/podman-{self._pulls}",
            "pull",
            "--signature-policy",
            policy,
            "--tls-verify=false",
            f"docker://{image}",
        )


def _mount(args: list[str]) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def trixie_clients(workdir: Path) -> Iterator[TrixieClients]:
    """The cached chroot (built if missing), overlaid at ``workdir/root``,
    mounted for the clients; everything unmounted on leaving."""
    tree = build_tree(SPEC)
    root, upper, work = workdir / "root", workdir / "upper", workdir / "work"
    for d in (root, upper, work):
        d.mkdir(parents=True)
    mounted: list[Path] = []
    try:
        try:
            _mount(
                [
                    "-t",
                    "overlay",
                    "overlay",
                    "-o",
                    f"lowerdir={tree},upperdir={upper},workdir={work}",
                    str(root),
                ]
            )
            mounted.append(root)
        except subprocess.CalledProcessError:
            # No overlayfs here: a copy of the tree, thrown away afterwards.
            root.rmdir()
            subprocess.run(["cp", "-a", "--reflink=auto", str(tree), str(root)], check=True)
        for kind, source, place, options in _MOUNTS:
            target = root / place
            target.mkdir(exist_ok=True)
            _mount([*options, *(["-t", kind] if kind else []), source, str(target)])
            mounted.append(target)
            # Nothing done under the chroot reaches this machine's mounts.
            _mount(["--make-private", str(target)])
        for name, (major, minor) in _DEVICES.items():
            os.mknod(root / "dev" / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(root / "dev" / name, 0o666)
        for name, target_path in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                                  ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):  # fmt: skip
            os.symlink(target_path, root / "dev" / name)
        yield TrixieClients(root)
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], capture_output=True, stdin=subprocess.DEVNULL)
