"""The read-back tools on the command line: ``debchunk inspect``, ``diff``,
``validate`` and ``report``.  Each command parses its arguments, makes one
call into ``encapsulate.tools`` and renders what it returns."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..oci.imgref import parse_imgref
from ..tools.diff import diff_images, format_diff
from ..tools.inspect import format_inspect, inspect_image
from ..tools.report import write_report
from ..tools.text import human_size
from ..tools.validate import validate_image
from .render import json_text
from .settings import add_command, reading_registry

# Problems ``validate`` prints; the rest are counted.
SHOWN_PROBLEMS = 5


def _cmd_inspect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    info = inspect_image(
        parse_imgref(args.imgref),
        fetch=args.fetch,
        read_layers=not args.no_layers,
        registry=reading_registry(args),
    )
    if args.json:
        print(json_text(info.to_json()))
    else:
        print(format_inspect(info))
    return 0


def _cmd_diff(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    result = diff_images(
        parse_imgref(args.old),
        parse_imgref(args.new),
        fetch=args.fetch,
        read_layers=not args.no_layers,
        registry=reading_registry(args),
    )
    if args.json:
        print(json_text(result.to_json()))
    else:
        print(format_diff(result))
    return 0


def _cmd_validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    result = validate_image(args.imgref, reading_registry(args))
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
    report = write_report(args.imgref, args.output, args.prior, reading_registry(args))
    if not args.quiet:
        line = f"{args.output}: {len(report.layers)} layers, {human_size(report.total_bytes)}"
        if report.download_bytes is not None:
            line += f"; download from the prior {human_size(report.download_bytes)}"
        print(line)
    return 0


def register(sub: Any) -> None:
    """Add ``inspect``, ``diff``, ``report`` and ``validate`` to the ``debchunk``
    subcommands (``sub``: argparse's subparsers), their arguments from the settings table."""
    add_command(
        sub,
        "inspect",
        _cmd_inspect,
        help="show an image's layers, sizes, components and expected update bytes",
        description="Show the layers of an image: digest, compressed and uncompressed size, files, "
        "components and weekly change probability, and the compressed bytes an average week's update "
        "downloads. Local layers are streamed once (time in proportion to their size).",
    )
    add_command(
        sub,
        "diff",
        _cmd_diff,
        help="show what a client holding OLD downloads to get NEW",
        description="Compare two images: layers reused and new, bytes to download, components changed. "
        "ideal_bytes (file content of NEW found nowhere in OLD) streams NEW's new layers and all of "
        "OLD's layers: time in proportion to their uncompressed size.",
    )
    add_command(
        sub,
        "report",
        _cmd_report,
        help="write an image's layers as a self-contained HTML page",
        description="Chart an image's layers (size, change probability, components) as one HTML file; "
        "with --prior, what a client holding the prior image downloads.",
    )
    add_command(
        sub,
        "validate",
        _cmd_validate,
        help="check an image's blobs, media types, JSON schemas and layer digests",
        description="Check an image: every blob against its descriptor, the media types, the manifest, "
        "config and index against the OCI image-spec schemas, the config's diff_ids against the "
        "uncompressed layers, and the ostree-ext labels and annotations. Exit 1 when a problem is found.",
    )
