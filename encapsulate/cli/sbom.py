"""``debchunk sbom IMGREF``: print an image's SBOM (SPDX 2.3 JSON), made
from its dpkg database or, with ``--attached``, as attached in its registry."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..oci.imgref import parse_imgref
from ..oci.platform import Platform
from ..sbom import write_sbom_file
from ..tools.sbom import attached_sbom, image_sbom
from .settings import add_command, reading_registry


def _cmd_sbom(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    ref = parse_imgref(args.imgref)
    registry = reading_registry(args)
    if args.attached:
        data = attached_sbom(ref, registry, Platform.host())
    else:
        data = image_sbom(ref, registry, Platform.host(), args.tmpdir)
    if args.output is not None:
        write_sbom_file(args.output, data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0


def register(sub: Any) -> None:
    """Add ``sbom`` to the ``debchunk`` subcommands (``sub``: argparse's subparsers)."""
    add_command(
        sub,
        "sbom",
        _cmd_sbom,
        help="print the SBOM of an image's dpkg packages (SPDX 2.3 JSON)",
        description="Print an SPDX 2.3 SBOM of the Debian packages installed in an image: made from the "
        "dpkg database its layers hold (every blob checked), dated with its created time, so that of an "
        "image debchunk wrote it is the document the build wrote; with --attached, the SBOM attached to "
        "the image in its registry.",
    )
