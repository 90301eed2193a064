"""What ``--keep-base`` saves a client that holds the base: a derived image
as users make it, re-chunked with and without the option.

The image: the trixie container base of the re-chunking tests
(``tests.containerfiles.BASE``: the mmdebstrap minbase tree less systemd, the
kernel, locales and manual pages, one layer) and a Containerfile that adds
python3, curl and nginx in one ``RUN apt-get install``, built with ``buildah
bud --isolation chroot`` (cached by recipe, as the tests' images are) and
exported to an OCI layout.  Then, with ``SOURCE_DATE_EPOCH`` set and
``--max-layers 64``:

- plain: ``container-encapsulate --from oci:SOURCE oci:OUT``;
- keep-base: the same with ``--keep-base oci:BASE``;

and ``debchunk diff --json oci:BASE X`` for each and for the source image:
the bytes a client holding the base downloads, the image's size, its layers.

Checked (a failure exits 1), for keep-base: the base's layer blobs are the
new image's first ones; no layer above the base holds an entry the base holds
as it is (every tar entry; directories as parents and the targets of new
hardlinks aside); the download is at most 1.1x the source's own layers above
the base (the gzip of what the Containerfile added) plus 64 KiB a layer; the
image unpacks (``umoci unpack``) to the source's tree; and the base and the
source read from containers-storage, an ``oci-archive:`` and a registry give
the same image.

Usage: ``python -m benches.keep_base [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benches.debtrees import TreeSpec, build_tree
from benches.encapsulate_speed import SOURCE_DATE_EPOCH, run_child
from benches.mapping_speed import source_revision
from benches.registry import docker_registry
from tests.containerfiles import BASE, build_base, build_containerfile, export_layout
from tests.images import assert_same_tree, held_again, manifest, umoci_unpack

VENV_BIN = Path(sys.executable).parent
NAME = "localhost/debchunk-bench-web:latest"
CONTAINERFILE = f"""\
FROM {BASE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get -o Acquire::Check-Valid-Until=false update \
 && apt-get install -y -q --no-install-recommends python3 curl nginx \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
"""
MAX_LAYERS = 64
# The acceptance: at most this times the source's own added layers, plus this much a layer.
FACTOR, PER_LAYER = 1.1, 64 * 1024


@dataclass
class Row:
    """One image as a client holding the base sees it."""

    name: str
    download_bytes: int
    image_bytes: int
    layers: int
    layers_above_base: int


def _diff(base: str, image: str) -> dict[str, Any]:
    done = run_child([str(VENV_BIN / "debchunk"), "diff", "--json", base, image], capture=True)
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def _row(name: str, base: str, image: str, base_layers: int) -> Row:
    d = _diff(base, image)
    return Row(name, d["download_bytes"], d["total_bytes"], len(d["layers"]), len(d["layers"]) - base_layers)


def _transports(work: Path, registry: str, base: str, source: str) -> dict[str, tuple[str, str]]:
    """The base and the source as buildah left them in containers-storage,
    and copied (``skopeo copy``, blobs as they are) to an ``oci-archive:``
    and to the registry: (base, source) per transport."""
    refs = {
        "oci": (base, source),
        "containers-storage": (f"containers-storage:{BASE}", f"containers-storage:{NAME}"),
    }
    archives = (f"oci-archive:{work}/base.tar:base", f"oci-archive:{work}/web.tar:web")
    pushed = (f"docker://{registry}/bench/base:trixie", f"docker://{registry}/bench/web:latest")
    for name, (b, s) in (("oci-archive", archives), ("registry", pushed)):
        tls = ["--dest-tls-verify=false"] if name == "registry" else []
        for src, dest in ((base, b), (source, s)):
            run_child(["skopeo", "copy", "--quiet", *tls, src, dest])
        refs[name] = (
            (b, s)
            if name != "registry"
            else (b.replace("docker://", "registry:"), s.replace("docker://", "registry:"))
        )
    return refs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.keep_base", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="keep-base-") as scratch:
        work = Path(scratch)
        base_id = build_base(build_tree(TreeSpec("trixie")))
        build_containerfile(NAME, CONTAINERFILE, base_id, work)
        base, source = export_layout(BASE, "base"), export_layout(NAME, "web")
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
        common = ["--max-layers", str(MAX_LAYERS), "--format", "plain", "--quiet"]
        encapsulate = str(VENV_BIN / "container-encapsulate")
        plain, kept = work / "plain", work / "kept"
        run_child([encapsulate, "--from", source.oci, f"oci:{plain}:x", *common], env=env)
        keep = ["--keep-base", base.oci]
        run_child([encapsulate, "--from", source.oci, f"oci:{kept}:x", *keep, *common], env=env)
        base_layers = [d["digest"] for d in manifest(base.layout, base.tag)["layers"]]
        rows = [
            _row("plain rechunk", base.oci, f"oci:{plain}:x", len(base_layers)),
            _row("--keep-base", base.oci, f"oci:{kept}:x", len(base_layers)),
            _row("source image", base.oci, source.oci, len(base_layers)),
        ]
        new_layers = [d["digest"] for d in manifest(kept, "x")["layers"]]
        if new_layers[: len(base_layers)] != base_layers:
            failures.append("the base's layers are not the image's first ones")
        again = held_again(base.layout, base_layers, kept, new_layers[len(base_layers) :])
        if again:
            failures.append(f"{len(again)} entries above the base are the base's as they are: {again[:5]}")
        allowed = FACTOR * rows[2].download_bytes + PER_LAYER * rows[1].layers_above_base
        if rows[1].download_bytes > allowed:
            failures.append(f"keep-base downloads {rows[1].download_bytes} bytes, over {allowed:.0f}")
        try:
            unpacked = umoci_unpack(kept, "x", work / "u-kept")
            assert_same_tree(umoci_unpack(source.layout, source.tag, work / "u-source"), unpacked)
        except AssertionError as e:
            failures.append(f"the keep-base image unpacks to another tree: {e}")
        # The same from the other transports: the same image, digest for digest.
        same: dict[str, bool] = {}
        (work / "registry").mkdir()
        with docker_registry(work / "registry") as registry:
            for name, (b, s) in _transports(work, registry, base.oci, source.oci).items():
                out = work / f"kept-{name}"
                tls = ["--tls-verify=false"] if name == "registry" else []
                run_child(
                    [encapsulate, "--from", s, f"oci:{out}:x", "--keep-base", b, *tls, *common], env=env
                )
                same[name] = manifest(out, "x") == manifest(kept, "x")
                if not same[name]:
                    failures.append(f"from {name}, --keep-base gives another image")
    print(f"--keep-base on {NAME} (FROM {BASE}), code {source_revision()}")
    print(f"  {'image':16} {'download from base':>20} {'image size':>14} {'layers':>7}")
    for r in rows:
        sizes = f"{r.download_bytes / 2**20:17.2f} MiB {r.image_bytes / 2**20:10.2f} MiB"
        print(f"  {r.name:16} {sizes} {r.layers:7}")
    print(
        f"  allowed for --keep-base: {allowed / 2**20:.2f} MiB (1.1x the source's layers above the base, "
        "64 KiB a layer)"
    )
    print(f"  entries above the base that the base holds as they are: {len(again)}")
    print("  the same image from: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))
    for f in failures:
        print(f"FAIL {f}")
    if args.json:
        figures = {"rows": [asdict(r) for r in rows], "same_from": same, "failures": failures}
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
