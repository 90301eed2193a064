"""The read-back tools on the command line: ``debchunk inspect``, ``diff``,
``validate`` and ``report``.  Each command parses its arguments, makes one
call into ``encapsulate.tools`` and renders what it returns."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..oci.imgref import RegistryOptions, parse_imgref
from ..tools.diff import diff_images, format_diff
from ..tools.inspect import format_inspect, inspect_image
from ..tools.report import write_report
from ..tools.text import human_size
from ..tools.validate import validate_image
from .options import common_options, print_json, tls_verify_option

# Problems ``validate`` prints; the rest are counted.
SHOWN_PROBLEMS = 5


def _registry(args: argparse.Namespace) -> RegistryOptions:
    """The registry options the command line gives (``--tls-verify``)."""
    return RegistryOptions(tls_verify=args.tls_verify)


def _cmd_inspect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    info = inspect_image(
        parse_imgref(args.imgref), fetch=args.fetch, read_layers=not args.no_layers, registry=_registry(args)
    )
    if args.json:
        print_json(info.to_json())
    else:
        print(format_inspect(info))
    return 0


def _cmd_diff(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    result = diff_images(
        parse_imgref(args.old),
        parse_imgref(args.new),
        fetch=args.fetch,
        read_layers=not args.no_layers,
        registry=_registry(args),
    )
    if args.json:
        print_json(result.to_json())
    else:
        print(format_diff(result))
    return 0


def _cmd_validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    result = validate_image(args.imgref, _registry(args))
    if result.valid:
        if not args.quiet:
            layers = f"{result.layers} layer{'s' * (result.layers != 1)}"
            print(f"{args.imgref}: valid: {result.blobs} blobs, {layers}, {human_size(result.size)}")
        return 0
    problems = result.problems
    if len(problems) == 1:
        lines = [f"debchunk: error: {args.imgref}: {problems[0]}"]
    else:
        lines = [f"debchunk: error: {args.imgref}: {len(problems)} problems:"]
        lines += [f"  {p}" for p in problems[:SHOWN_PROBLEMS]]
    if len(problems) > SHOWN_PROBLEMS:
        lines.append(f"  ... and {len(problems) - SHOWN_PROBLEMS} more")
    print("\n".join(lines), file=sys.stderr)
    return 1


def _cmd_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    report = write_report(args.imgref, args.output, args.prior, _registry(args))
    if not args.quiet:
        line = f"{args.output}: {len(report.layers)} layers, {human_size(report.total_bytes)}"
        if report.download_bytes is not None:
            line += f"; download from the prior {human_size(report.download_bytes)}"
        print(line)
    return 0


def _layer_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--fetch",
        action="store_true",
        help="copy the layers of images read through skopeo (registry:, docker://, docker-archive:, "
        f"containers-storage:) to a temporary directory, to {what}",
    )
    p.add_argument("--no-layers", action="store_true", help=f"read manifests and configs only: do not {what}")
    tls_verify_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub: Any) -> None:
    """Add ``inspect``, ``diff``, ``report`` and ``validate`` to the ``debchunk``
    subcommands (``sub``: argparse's subparsers)."""
    p = sub.add_parser(
        "inspect",
        help="show an image's layers, sizes, components and expected update bytes",
        description="Show the layers of an image: digest, compressed and uncompressed size, files, "
        "components and weekly change probability, and the compressed bytes an average week's update "
        "downloads. Local layers are streamed once (time in proportion to their size).",
    )
    p.add_argument(
        "imgref", metavar="IMGREF", help="the image: oci:DIR[:TAG], oci-archive:FILE, registry:..."
    )
    _layer_options(p, "count files and uncompressed sizes")
    common_options(p)
    p.set_defaults(handler=_cmd_inspect, parser=p)

    p = sub.add_parser(
        "diff",
        help="show what a client holding OLD downloads to get NEW",
        description="Compare two images: layers reused and new, bytes to download, components changed. "
        "ideal_bytes (file content of NEW found nowhere in OLD) streams NEW's new layers and all of "
        "OLD's layers: time in proportion to their uncompressed size.",
    )
    p.add_argument("old", metavar="OLD", help="the image the client holds")
    p.add_argument("new", metavar="NEW", help="the image it updates to")
    _layer_options(p, "compute ideal_bytes")
    common_options(p)
    p.set_defaults(handler=_cmd_diff, parser=p)

    p = sub.add_parser(
        "report",
        help="write an image's layers as a self-contained HTML page",
        description="Chart an image's layers (size, change probability, components) as one HTML file; "
        "with --prior, what a client holding the prior image downloads.",
    )
    p.add_argument("imgref", metavar="IMGREF", help="the image, e.g. oci:DIR[:TAG]")
    p.add_argument("--prior", metavar="IMGREF", help="the image a client already holds")
    p.add_argument("--output", "-o", metavar="FILE", required=True, help="the HTML file to write")
    tls_verify_option(p)
    common_options(p)
    p.set_defaults(handler=_cmd_report, parser=p)

    p = sub.add_parser(
        "validate",
        help="check an image's blobs, media types, JSON schemas and layer digests",
        description="Check an image: every blob against its descriptor, the media types, the manifest, "
        "config and index against the OCI image-spec schemas, the config's diff_ids against the "
        "uncompressed layers, and the ostree-ext labels and annotations. Exit 1 when a problem is found.",
    )
    p.add_argument("imgref", metavar="IMGREF", help="the image: oci:DIR[:TAG], oci-archive:FILE[:TAG], ...")
    tls_verify_option(p)
    common_options(p)
    p.set_defaults(handler=_cmd_validate, parser=p)
