"""Real container images built from Containerfiles, for the re-chunking tests.

In: the cached mmdebstrap trixie tree (``benches.debtrees``) and the
Containerfiles below.  Out: images in containers-storage, built with
``buildah bud --isolation chroot`` (``podman run`` does not work in these
sandboxes; a RUN step reaches only the Debian mirror), each also exported as
an OCI layout.  Every image carries ``RECIPE_LABEL``, a hash of what built it
(its Containerfile and its base image's id): an image whose label matches is
kept, so a warm run builds nothing.  Layouts are cached by image id.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benches.debtrees import TreeSpec, build_tree, cache_dir

RECIPE_LABEL = "org.debchunk.test.recipe"
BASE = "localhost/debchunk-test-base:trixie"
_IMPORTED = "localhost/debchunk-test-import:trixie"

# The cached minbase tree also holds systemd, a kernel and locales (benches
# want them); a container base does not.  Removing them, and translations and
# manual pages as Debian's slim images do, takes the image from 350 MB to
# 92 MB, which every test that re-chunks or unpacks it pays for.
BASE_SCRIPT = (
    "set -e; export DEBIAN_FRONTEND=noninteractive; "
    "apt-get purge -q -y --autoremove --allow-remove-essential "
    "linux-image-amd64 'linux-image-6*' initramfs-tools systemd systemd-sysv udev locales >/dev/null; "
    "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/locale/* /usr/share/man/*"
)

# Packages image A installs (small, no recommends), and the one A2 adds; and
# the source packages A2 has that A has not (bc needs libreadline8t64).
PACKAGES = ("nano", "less", "file")
ADDED_PACKAGE = "bc"
ADDED_SOURCES = frozenset({"bc", "readline"})

_APT_INSTALL = (
    "apt-get -o Acquire::Check-Valid-Until=false update"
    " && apt-get install -y -q --no-install-recommends {packages}"
    " && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin"
)

# One layer per RUN (buildah bud --layers).  Each step makes something a
# re-chunker must apply in order: whiteouts of base files and of a whole
# package (tzdata), an opaque directory (/opt/y), a directory replaced by a
# file (/opt/x), a hardlink to a base file, odd owners and modes, a fifo.
CONTAINERFILE_A = f"""\
FROM {BASE}
ARG DEBIAN_FRONTEND=noninteractive
RUN mkdir -p /opt/x /opt/y && echo inner > /opt/x/file && echo a > /opt/y/a && echo b > /opt/y/b
RUN {_APT_INSTALL.format(packages=" ".join(PACKAGES))}
RUN rm -rf /usr/share/doc/hostname
RUN dpkg --purge tzdata
RUN ln /usr/bin/base64 /usr/local/bin/b64 \
 && install -d -o 1234 -g 5678 -m 2750 /srv/data && echo x > /srv/data/f && chown 1234:5678 /srv/data/f \
 && chmod 4711 /srv/data/f && mkfifo -m 0600 /srv/fifo && ln -s ../srv/data/f /srv/link
RUN rm -rf /opt/x && echo hi > /opt/x && rm -rf /opt/y && mkdir /opt/y && echo c > /opt/y/c
LABEL org.opencontainers.image.title=test containers.bootc=1
ENV A=1
WORKDIR /root
USER 0
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["/bin/bash"]
"""

# A with one more package, installed by a last step: every layer of A is
# shared, so what changed between the two is that package and the state apt
# and dpkg rewrite.
CONTAINERFILE_A2 = CONTAINERFILE_A + f"RUN {_APT_INSTALL.format(packages=ADDED_PACKAGE)}\n"

# The base and one step: a file added, a base directory whited out.
CONTAINERFILE_TWO = f"""\
FROM {BASE}
RUN echo two > /srv/two && rm -rf /usr/share/doc/dash
"""


def _many_layers(steps: int) -> str:
    """A Containerfile of ``steps`` RUN steps, each writing a file; some
    remove an earlier step's file, rewrite a base file or change a mode, so
    the order the layers are applied in matters."""
    lines = [f"FROM {BASE}", "RUN mkdir /srv/many"]
    for i in range(1, steps):
        step = [f"echo {i} > /srv/many/f{i:02d}"]
        if i % 5 == 0:
            step.append(f"rm /srv/many/f{i - 3:02d}")
        if i % 7 == 0:
            step.append(f"echo {i} >> /etc/issue")
        if i % 9 == 0:
            step.append(f"chmod 0600 /srv/many/f{i - 1:02d}")
        lines.append("RUN " + " && ".join(step))
    return "\n".join(lines) + "\n"


# The base layer and 29 steps: 30 layers.
CONTAINERFILE_MANY = _many_layers(29)


@dataclass(frozen=True)
class BuiltImage:
    """An image built here: ``name`` in containers-storage, and the same
    image in the OCI layout ``layout`` as ``tag``; ``layers`` it has."""

    name: str
    layout: Path
    tag: str
    layers: int

    @property
    def oci(self) -> str:
        """Its IMGREF in the OCI layout."""
        return f"oci:{self.layout}:{self.tag}"

    @property
    def storage(self) -> str:
        """Its IMGREF in containers-storage."""
        return f"containers-storage:{self.name}"


@dataclass(frozen=True)
class BuiltImages:
    """The images the re-chunking tests read (see the Containerfiles above)."""

    base: BuiltImage
    a: BuiltImage
    a2: BuiltImage
    two: BuiltImage
    many: BuiltImage


def _inspect(name: str) -> dict[str, object] | None:
    """``buildah inspect`` of the image ``name``, or None when there is none."""
    done = subprocess.run(
        ["buildah", "inspect", "--type", "image", name], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return None
    data: dict[str, object] = json.loads(done.stdout)
    return data


def _image_id(name: str) -> str:
    info = _inspect(name)
    assert info is not None, name
    return str(info["FromImageID"])


def _recipe(name: str) -> str | None:
    """The ``RECIPE_LABEL`` of the image ``name`` (None without the image or the label)."""
    info = _inspect(name)
    if info is None:
        return None
    oci = info.get("OCIv1")
    config = oci.get("config") if isinstance(oci, dict) else None
    labels = config.get("Labels") if isinstance(config, dict) else None
    value = labels.get(RECIPE_LABEL) if isinstance(labels, dict) else None
    return value if isinstance(value, str) else None


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def build_base(tree: Path) -> str:
    """``BASE`` from ``tree`` (imported as a tar stream, which keeps owners and
    modes; ``buildah copy`` would make every file root's), with
    ``BASE_SCRIPT`` run in it and squashed to one layer; its image id."""
    recipe = _hash(str(tree), BASE_SCRIPT)
    if _recipe(BASE) == recipe:
        return _image_id(BASE)
    tar = subprocess.Popen(
        ["tar", "-C", str(tree), "--numeric-owner", "--xattrs", "--xattrs-include=*", "-c", "."],
        stdout=subprocess.PIPE,
    )
    subprocess.run(["podman", "import", "--quiet", "-", _IMPORTED], stdin=tar.stdout, check=True)
    assert tar.stdout is not None
    tar.stdout.close()
    if tar.wait() != 0:
        raise RuntimeError(f"tar of {tree} failed")
    container = subprocess.run(
        ["buildah", "from", "--pull=never", _IMPORTED], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        subprocess.run(
            ["buildah", "run", "--isolation", "chroot", container, "--", "sh", "-c", BASE_SCRIPT], check=True
        )
        subprocess.run(["buildah", "config", "--label", f"{RECIPE_LABEL}={recipe}", container], check=True)
        subprocess.run(
            ["buildah", "commit", "--quiet", "--squash", container, BASE], check=True, capture_output=True
        )
    finally:
        subprocess.run(["buildah", "rm", container], check=False, capture_output=True)
    subprocess.run(["buildah", "rmi", _IMPORTED], check=False, capture_output=True)
    return _image_id(BASE)


def build_containerfile(name: str, text: str, base_id: str, workdir: Path) -> None:
    """``name`` built from the Containerfile ``text`` over the base ``base_id``,
    one layer per RUN step, unless an image of that recipe is already there."""
    recipe = _hash(text, base_id)
    if _recipe(name) == recipe:
        return
    context = workdir / name.replace("/", "_").replace(":", "_")
    context.mkdir(parents=True, exist_ok=True)
    (context / "Containerfile").write_text(text)
    subprocess.run(
        [
            "buildah",
            "bud",
            "--isolation",
            "chroot",
            "--layers",
            "--pull=never",
            "--quiet",
            "--label",
            f"{RECIPE_LABEL}={recipe}",
            "--file",
            str(context / "Containerfile"),
            "--tag",
            name,
            str(context),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def export_layout(name: str, tag: str) -> BuiltImage:
    """``name`` copied from containers-storage into an OCI layout, cached by image id."""
    cache = cache_dir().parent / "images"
    layout = cache / f"{tag}-{_image_id(name)[:16]}"
    if not (layout / "index.json").exists():
        # Layouts of earlier builds of this image are stale.
        for stale in cache.glob(f"{tag}-*"):
            shutil.rmtree(stale)
        partial = layout.with_name(layout.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["skopeo", "copy", "--quiet", f"containers-storage:{name}", f"oci:{partial}:{tag}"],
            check=True,
            capture_output=True,
        )
        partial.rename(layout)
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    manifest = json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_text())
    return BuiltImage(
        name, layout, entry["annotations"]["org.opencontainers.image.ref.name"], len(manifest["layers"])
    )


def build_test_images(workdir: Path) -> BuiltImages:
    """Every image of this module, built (or found built) in containers-storage
    and exported into OCI layouts; ``workdir`` holds the build contexts."""
    base_id = build_base(build_tree(TreeSpec("trixie")))
    built = {
        "localhost/debchunk-test-a:latest": CONTAINERFILE_A,
        "localhost/debchunk-test-a2:latest": CONTAINERFILE_A2,
        "localhost/debchunk-test-two:latest": CONTAINERFILE_TWO,
        "localhost/debchunk-test-many:latest": CONTAINERFILE_MANY,
    }
    for name, text in built.items():
        build_containerfile(name, text, base_id, workdir)
    a, a2, two, many = (
        export_layout(name, tag) for name, tag in zip(built, ("a", "a2", "two", "many"), strict=True)
    )
    return BuiltImages(export_layout(BASE, "base"), a, a2, two, many)
