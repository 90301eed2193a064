"""The Debian package of debchunk, built and installed in trixie chroots.

In: the checkout (its files git tracks or would track) and two cached
mmdebstrap trixie trees (``benches.debtrees``): a build chroot holding the
package's build dependencies and lintian, and a clean minbase one.  Out:
``debchunk_VERSION_all.deb`` built there by ``dpkg-buildpackage -us -uc -b``,
lintian's report of it, and a copy of the clean chroot with the package
installed by ``apt install ./debchunk_*.deb``.  Each is cached under the
debchunk cache directory, keyed by what made it (the chroot's key, the
source's files, the .deb's digest), so an unchanged checkout builds nothing.

Usage (``make package``): ``python -m tests.debpackage [--output DIR]``
builds the package, copies it into DIR (default ``dist``) and prints the
lintian report and the time taken.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benches.debtrees import MIRROR, TreeSpec, build_tree, cache_dir

REPO_ROOT = Path(__file__).resolve().parent.parent

# What dpkg-buildpackage needs (debian/control's Build-Depends) and lintian.
BUILD_SPEC = TreeSpec(
    "trixie",
    variant="apt",
    include=tuple(
        sorted(
            (
                "build-essential",
                "debhelper",
                "dh-python",
                "pybuild-plugin-pyproject",
                "python3-all",
                "python3-setuptools",
                "bash-completion",
                "python3-debian",
                "python3-numpy",
                "python3-zstandard",
                "python3-jsonschema",
                "python3-apt",
                "python3-cryptography",
                "python3-nacl",
                "python3-gi",
                "gir1.2-ostree-1.0",
                "lintian",
                "fakeroot",
            )
        )
    ),
)
# A clean trixie: the minbase variant (apt is in it anyway).
CLEAN_SPEC = TreeSpec("trixie", variant="minbase", include=("apt",))

_APT_OPTIONS = ("-o", "Acquire::Check-Valid-Until=false", "-o", "Acquire::Retries=3")


@dataclass(frozen=True)
class BuiltPackage:
    """A built .deb, lintian's report of it (``lintian -I --pedantic``; empty
    when it has nothing to say) and the seconds the build took when it was made."""

    deb: Path
    lintian: str
    build_seconds: float

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.deb.read_bytes()).hexdigest()


def source_files() -> list[str]:
    """The checkout's files that go into the source package: the ones git tracks
    and the new ones it would track, less what is not there (deleted)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sorted({name.decode() for name in listed if name and (REPO_ROOT / name.decode()).is_file()})


def source_key(files: Sequence[str]) -> str:
    """A hash of the source: every file's name, mode and contents, and the build chroot's key."""
    h = hashlib.sha256(f"{BUILD_SPEC.key}\n{MIRROR}\n".encode())
    for name in files:
        path = REPO_ROOT / name
        h.update(f"{name}\0{path.stat().st_mode & 0o111:o}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def _chroot(root: Path, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``sh -c script`` in the chroot ``root``, its output captured."""
    done = subprocess.run(
        ["chroot", str(root), "sh", "-c", script],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/root"},
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"in {root}: {script}\nfailed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done


def _package_name() -> str:
    """``debchunk_VERSION_all.deb``, the version from debian/changelog's first line."""
    first = (REPO_ROOT / "debian/changelog").read_text().split("\n", 1)[0]
    version = first.split("(", 1)[1].split(")", 1)[0]
    return f"debchunk_{version}_all.deb"


def build_package() -> BuiltPackage:
    """The .deb of the checkout, built in the build chroot (or found built)."""
    files = source_files()
    out = cache_dir().parent / "debs" / source_key(files)
    name = _package_name()
    if (out / name).is_file() and (out / "result.json").is_file():
        result = json.loads((out / "result.json").read_text())
        return BuiltPackage(out / name, result["lintian"], result["build_seconds"])
    root = build_tree(BUILD_SPEC)
    build = root / "build"
    shutil.rmtree(build, ignore_errors=True)
    (build / "debchunk").mkdir(parents=True)
    for file in files:
        target = build / "debchunk" / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / file, target)
    try:
        t0 = time.monotonic()
        _chroot(root, "cd /build/debchunk && dpkg-buildpackage -us -uc -b")
        seconds = time.monotonic() - t0
        changes = next(build.glob("*.changes")).name
        # Lintian exits 0 when it found no error (warnings and notes are printed).
        lint = _chroot(
            root, f"cd /build && lintian -I --pedantic --suppress-tags-from-file /dev/null {changes}"
        )
        report = "\n".join(
            line
            for line in (lint.stdout + lint.stderr).splitlines()
            if "running with root privileges" not in line
        )
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        shutil.copy2(build / name, partial / name)
        (partial / "result.json").write_text(json.dumps({"lintian": report, "build_seconds": seconds}) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return BuiltPackage(out / name, report, seconds)


def installed_chroot(package: BuiltPackage) -> Path:
    """A copy of the clean trixie chroot with ``package`` installed by
    ``apt install ./debchunk_*.deb`` (its dependencies from the mirror),
    cached by the .deb's digest."""
    final = cache_dir() / f"trixie-debchunk-{package.sha256[:16]}"
    if (final / "usr/bin/debchunk").is_file():
        return final
    # Chroots of earlier packages are stale.
    for stale in cache_dir().glob("trixie-debchunk-*"):
        shutil.rmtree(stale)
    clean = build_tree(CLEAN_SPEC)
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["cp", "-a", "--", str(clean), str(partial)], check=True)
    shutil.copy2(package.deb, partial / "tmp" / package.deb.name)
    options = " ".join(_APT_OPTIONS)
    _chroot(
        partial,
        "export DEBIAN_FRONTEND=noninteractive; "
        f"apt-get {options} update -q && apt-get {options} install -y -q ./tmp/{package.deb.name} "
        f"&& rm -f /tmp/{package.deb.name} && apt-get clean && rm -rf /var/lib/apt/lists/*",
    )
    partial.rename(final)
    return final


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.debpackage", description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="dist", help="where the .deb is copied (default dist)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    package = build_package()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    shutil.copy2(package.deb, output / package.deb.name)
    print(f"{output / package.deb.name}: sha256 {package.sha256}")
    print(
        f"dpkg-buildpackage: {package.build_seconds:.1f} s in the chroot, "
        f"{time.monotonic() - t0:.1f} s in all"
    )
    print(f"lintian -I --pedantic: {package.lintian or '(nothing reported)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
