"""The ``debchunk`` and ``container-encapsulate`` commands: argparse, then one
library call per subcommand; errors become one line and exit status 1."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence

from chunker import ChunkerError, Plan, pack
from mapping import Component, Mapping, MappingError, build_mapping

from ..errors import EncapsulateError
from ..oci.deliver import deliver, parse_imgref
from ..oci.layout import read_json_object
from ..tools.inspect import register as register_inspect
from ..tools.prior import image_manifest, prior_from_manifest_file, prior_plan
from ..tools.report import register as register_report
from ..tools.validate import register as register_validate
from ..write.image import ImageResult, write_image
from .options import common_options, print_json, tls_verify_option

# Usage errors exit 2 (argparse's convention), failures 1 (DESIGN.md, "Interfaces").
EXIT_FAILURE = 1


class _OneLine(logging.Formatter):
    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        return f"{self.prog}: {record.levelname.lower()}: {record.getMessage()}"


def _setup_logging(prog: str, quiet: bool, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine(prog))
    root = logging.getLogger("debchunk")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING)
    root.propagate = False


def human_size(n: float) -> str:
    """Bytes as a short human-readable size (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_mapping(mapping: Mapping) -> str:
    """The mapping as a table, components by size, largest first."""
    rows = [("COMPONENT", "KIND", "PACKAGES", "SIZE", "FILES", "P(WEEK)")]
    for c in mapping.components:
        packages = ", ".join(c.packages[:3]) + (f" +{len(c.packages) - 3}" if len(c.packages) > 3 else "")
        rows.append(
            (c.name, c.kind, packages or "-", human_size(c.size), str(c.files), f"{c.change_probability:.3f}")
        )
    widths = [min(48, max(len(r[i]) for r in rows)) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [(r[i] if len(r[i]) <= widths[i] else r[i][: widths[i] - 1] + "…") for i in range(len(r))]
        lines.append(
            "  ".join(
                cell.rjust(w) if i in (3, 4, 5) else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()
        )
    total = sum(c.size for c in mapping.components)
    by_kind: dict[str, int] = {}
    for c in mapping.components:
        by_kind[c.kind] = by_kind.get(c.kind, 0) + c.size
    summary = ", ".join(
        f"{k} {100 * v / total:.1f}%" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])
    )
    lines.append("")
    lines.append(
        f"{len(mapping.components)} components, {human_size(total)} of unique content "
        f"({summary}); dpkg database: {mapping.admindir or 'none'}"
    )
    if mapping.reference_date:
        lines.append(f"change probabilities relative to {mapping.reference_date.date().isoformat()}")
    return "\n".join(lines)


def _add_source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", nargs="?", metavar="REF", help="OSTree ref or commit checksum (with --repo)")
    parser.add_argument("--repo", metavar="REPO", help="OSTree repository holding REF")
    parser.add_argument("--rootfs", metavar="DIR", help="map a root directory instead of a commit")


def _reference_date() -> dt.datetime | None:
    """``SOURCE_DATE_EPOCH`` as the mapping's reference date (None: unset)."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return dt.datetime.fromtimestamp(int(value), dt.UTC)
    except (ValueError, OverflowError):
        raise EncapsulateError(
            f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds since 1970; fix or unset it"
        ) from None


def _mapping(args: argparse.Namespace, parser: argparse.ArgumentParser, prior: Plan | None = None) -> Mapping:
    names = None if prior is None else prior.layer_index().keys()
    if args.rootfs is not None:
        if args.repo is not None or args.ref is not None:
            parser.error("--rootfs DIR takes no --repo or REF")
        return build_mapping(rootfs=args.rootfs, prior=names, reference_date=_reference_date())
    if args.repo is None or args.ref is None:
        parser.error("give --repo REPO REF, or --rootfs DIR")
    return build_mapping(repo=args.repo, ref=args.ref, prior=names, reference_date=_reference_date())


def _cmd_map(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    mapping = _mapping(args, parser)
    if args.json:
        print_json(mapping.to_json())
    else:
        print(format_mapping(mapping))
    return 0


def format_plan(plan: Plan) -> str:
    """The plan as a table, one row per layer, and its expected update bytes."""
    rows = [("LAYER", "COMPONENTS", "SIZE", "P(WEEK)", "E(BYTES)")]
    for i, layer in enumerate(plan.layers, 1):
        shown = ", ".join(layer.components[:4]) + (
            f" +{len(layer.components) - 4}" if len(layer.components) > 4 else ""
        )
        rows.append(
            (
                str(i),
                shown,
                human_size(layer.size),
                f"{layer.change_probability:.3f}",
                human_size(layer.size * layer.change_probability),
            )
        )
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(r, widths, strict=True)]
        lines.append(
            "  ".join(
                c.ljust(w) if i == 1 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()
        )
    total = len(plan.layers) + plan.reserved_layers
    lines.append("")
    lines.append(
        f"{len(plan.layers)} content layers + {plan.reserved_layers} metadata = {total} of at most "
        f"{plan.max_layers}; expected update {human_size(plan.expected_update_bytes)} per week "
        f"(floor {human_size(plan.floor_bytes)}, "
        f"{plan.expected_update_bytes / plan.floor_bytes if plan.floor_bytes else 1.0:.2f}x)"
    )
    return "\n".join(lines)


def _prior(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Plan | None:
    """The previous build's plan from --prior-plan, --prior or --previous-build-manifest."""
    options = ("prior_plan", "prior", "previous_build_manifest")
    given = [name for name in options if getattr(args, name, None) is not None]
    if len(given) > 1:
        parser.error("give only one of --prior-plan, --prior and --previous-build-manifest")
    if args.prior_plan is not None:
        try:
            return Plan.from_json(
                read_json_object(args.prior_plan, "plan", "pass the output of 'debchunk plan --json'")
            )
        except ChunkerError as e:
            raise ChunkerError(f"{args.prior_plan}: {e}") from None
    if getattr(args, "prior", None) is not None:
        return prior_plan(args.prior)
    if getattr(args, "previous_build_manifest", None) is not None:
        return prior_from_manifest_file(args.previous_build_manifest)
    return None


def _cmd_plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.mapping is not None:
        if args.repo or args.ref or args.rootfs:
            parser.error("--mapping FILE takes no --repo, REF or --rootfs")
        try:
            mapping = Mapping.from_json(
                read_json_object(args.mapping, "mapping", "pass the output of 'debchunk map --json'")
            )
        except MappingError as e:
            raise ChunkerError(f"{args.mapping}: {e}") from None
        prior = _prior(args, parser)
    else:
        prior = _prior(args, parser)
        # The mapping splits packages as 'encapsulate' writes them (a mapping
        # read from JSON carries its split).
        mapping = _mapping(args, parser, prior)
    if args.max_layers < 2:
        parser.error(f"--max-layers {args.max_layers}: an image needs at least 2 layers (metadata + content)")
    plan = pack(mapping.components, args.max_layers, prior)
    if args.json:
        print_json(plan.to_json())
    else:
        print(format_plan(plan))
    return 0


def _run(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    dispatch: Callable[[argparse.Namespace], int],
) -> int:
    args = parser.parse_args(argv)
    _setup_logging(prog, getattr(args, "quiet", False), getattr(args, "debug", False))
    try:
        return dispatch(args)
    except (MappingError, ChunkerError, EncapsulateError) as e:
        if args.debug:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{prog}: error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_FAILURE
    except Exception as e:  # anything unforeseen still gets one line
        if args.debug:
            raise
        print(
            f"{prog}: error: internal error: {type(e).__name__}: {e}; rerun with --debug and report it",
            file=sys.stderr,
        )
    return EXIT_FAILURE


def debchunk_parser() -> argparse.ArgumentParser:
    """The ``debchunk`` command's parser."""
    parser = argparse.ArgumentParser(
        prog="debchunk", description="Chunked, reproducible OCI images of Debian OSTree systems."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "map",
        help="show who owns every file of a tree and how often it changes",
        description="Map a commit or root tree to components.",
    )
    _add_source_args(p)
    p.add_argument("--json", action="store_true", help="print the mapping as JSON")
    common_options(p)
    p.set_defaults(handler=_cmd_map, parser=p)
    p = sub.add_parser(
        "plan",
        help="group a tree's components into layers",
        description="Plan the layers of a commit, a root tree or a saved mapping.",
    )
    _add_source_args(p)
    p.add_argument("--mapping", metavar="FILE", help="plan from 'debchunk map --json' output")
    p.add_argument(
        "--max-layers", type=int, default=64, metavar="N", help="layers in the image, at most (64)"
    )
    p.add_argument("--prior-plan", metavar="FILE", help="the previous build's plan ('debchunk plan --json')")
    p.add_argument("--prior", metavar="IMGREF", help="the previous build's image (its plan label)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    common_options(p)
    p.set_defaults(handler=_cmd_plan, parser=p)
    p = sub.add_parser(
        "encapsulate", help="write a commit or root tree as an OCI image (as container-encapsulate)"
    )
    _fill_encapsulate_parser(p)
    register_inspect(sub)
    register_report(sub)
    register_validate(sub)
    return parser


def debchunk_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``debchunk``."""
    parser = debchunk_parser()
    return _run("debchunk", parser, argv, lambda a: int(a.handler(a, a.parser)))


def encapsulate_parser(prog: str = "container-encapsulate") -> argparse.ArgumentParser:
    """The parser of ``container-encapsulate`` and ``debchunk encapsulate``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Write an OSTree commit or a root tree as a chunked, reproducible OCI image."
    )
    _fill_encapsulate_parser(parser)
    return parser


def _fill_encapsulate_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="REF", nargs="?", help="OSTree ref or commit (with --repo)")
    p.add_argument("imgref", metavar="IMGREF", help="destination, oci:DIR[:TAG]")
    p.add_argument("--repo", metavar="REPO", help="OSTree repository holding REF")
    p.add_argument("--rootfs", metavar="DIR", help="encapsulate a root directory instead of a commit")
    p.add_argument(
        "--max-layers", type=int, default=64, metavar="N", help="layers in the image, at most (64)"
    )
    p.add_argument(
        "--format", choices=("ostree", "plain"), help="layer format (ostree for commits, else plain)"
    )
    p.add_argument("--compression", choices=("gzip", "zstd"), default="gzip", help="layer compression (gzip)")
    p.add_argument(
        "--label", "-l", action="append", default=[], metavar="K=V", help="config label (repeatable)"
    )
    p.add_argument("--arch", default="amd64", help="image architecture (amd64)")
    p.add_argument("--image-config", metavar="FILE", help="an OCI image config (JSON) to merge in")
    p.add_argument("--cmd", action="append", metavar="ARG", help="the image's Cmd (repeat for each argument)")
    p.add_argument(
        "--copymeta",
        action="append",
        default=[],
        metavar="KEY",
        help="copy this commit metadata key to a label (it must exist)",
    )
    p.add_argument(
        "--copymeta-opt",
        action="append",
        default=[],
        metavar="KEY",
        help="copy this commit metadata key to a label if it exists",
    )
    p.add_argument(
        "--format-version", choices=("1", "2"), default="1", help="ostree-ext chunked format version (1)"
    )
    p.add_argument(
        "--write-contentmeta-json",
        metavar="FILE",
        help="write the components as rpm-ostree's content metadata (JSON array)",
    )
    p.add_argument("--compare-with-build", metavar="IMGREF", help="print what changed against this image")
    p.add_argument("--dry-run", action="store_true", help="plan and print the layers; write nothing")
    p.add_argument("--prior-plan", metavar="FILE", help="the previous build's plan ('debchunk plan --json')")
    p.add_argument("--prior", metavar="IMGREF", help="the previous build's image: keep its layers")
    p.add_argument(
        "--previous-build-manifest", metavar="FILE", help="the previous build's raw OCI manifest (JSON)"
    )
    p.add_argument("--plan-json", metavar="FILE", help="also write the plan used, as JSON")
    p.add_argument("--authfile", metavar="FILE", help="registry credentials, passed to skopeo")
    tls_verify_option(p, "--dest-tls-verify")
    p.add_argument("--json", action="store_true", help="print the digests and layer sizes as JSON")
    common_options(p)
    p.set_defaults(handler=_cmd_encapsulate, parser=p)


def _source_epoch(mapping: Mapping, commit_timestamp: int | None) -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value:
        try:
            return int(value)
        except ValueError:
            raise EncapsulateError(
                f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds; fix or unset it"
            ) from None
    if commit_timestamp is not None:
        return commit_timestamp
    if mapping.reference_date is not None:
        return int(mapping.reference_date.timestamp())
    raise EncapsulateError("no timestamp for the image: the tree has no changelogs; set SOURCE_DATE_EPOCH")


def _progress(done: int, total: int) -> None:
    sys.stderr.write(f"\rwriting layers: {done}/{total}")
    sys.stderr.flush()


def _copied_metadata(mapping: Mapping, required: Sequence[str], optional: Sequence[str]) -> dict[str, str]:
    """Commit metadata keys copied to labels (--copymeta, --copymeta-opt)."""
    metadata = getattr(mapping.tree, "metadata", {}) or {}
    out = {}
    for key in [*required, *optional]:
        if key not in metadata:
            if key in required:
                raise EncapsulateError(
                    f"--copymeta {key}: the commit has no such metadata key; "
                    "use --copymeta-opt to make it optional"
                )
            continue
        value = metadata[key]
        out[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return out


def _write_contentmeta(path: str, components: Sequence[Component]) -> None:
    """rpm-ostree's content metadata: one object per component."""
    entries = [
        {
            "identifier": c.name,
            "name": c.name,
            "srcid": c.name,
            "change_time_offset": 0,
            # Expected changes per year, from the weekly probability.
            "change_frequency": round(-52.0 * math.log1p(-min(c.change_probability, 0.999999))),
        }
        for c in sorted(components, key=lambda c: c.name)
    ]
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=1)
    except OSError as e:
        raise EncapsulateError(f"{path}: cannot write content metadata: {e.strerror}") from None


def _compare(imgref: str, result: ImageResult) -> str:
    """Which layers a client holding ``imgref`` would download for the new image."""
    have = {layer.get("digest") for layer in image_manifest(imgref).get("layers") or []}
    fresh = [b for b in result.layers if b.descriptor.digest not in have]
    total = sum(b.descriptor.size for b in result.layers)
    download = sum(b.descriptor.size for b in fresh)
    return (
        f"compared with {imgref}: {len(result.layers) - len(fresh)} of {len(result.layers)} layers reused, "
        f"download {human_size(download)} of {human_size(total)}"
    )


def _cmd_encapsulate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.rootfs is None and (args.repo is None or args.source is None):
        parser.error("give --repo REPO REF IMGREF, or --rootfs DIR IMGREF")
    if args.rootfs is not None and args.source is not None:
        parser.error("--rootfs DIR takes no REF")
    if args.max_layers < 2:
        parser.error(f"--max-layers {args.max_layers}: an image needs at least 2 layers")
    labels = {}
    for item in args.label:
        key, eq, value = item.partition("=")
        if not eq or not key:
            parser.error(f"--label {item!r}: give KEY=VALUE")
        labels[key] = value
    try:
        ref = parse_imgref(args.imgref)
    except EncapsulateError as e:
        parser.error(str(e))
    fmt = args.format or ("plain" if args.rootfs else "ostree")
    if fmt == "ostree" and args.rootfs is not None:
        parser.error(
            "--format ostree needs an OSTree commit (--repo REPO REF); a --rootfs tree is written plain"
        )
    if args.format_version != "1":
        raise EncapsulateError(f"--format-version {args.format_version}: only version 1 is written; use 1")
    if (args.copymeta or args.copymeta_opt) and args.rootfs is not None:
        parser.error("--copymeta needs an OSTree commit; a --rootfs tree has no commit metadata")
    image_config = (
        read_json_object(args.image_config, "image config", "pass an OCI image config (JSON object)")
        if args.image_config
        else {}
    )
    if args.cmd:
        image_config.setdefault("config", {})
        if not isinstance(image_config["config"], dict):
            raise EncapsulateError(f"{args.image_config}: 'config' is not an object")
        image_config["config"]["Cmd"] = list(args.cmd)
    prior = _prior(args, parser)
    names = None if prior is None else prior.layer_index().keys()
    mapping = (
        build_mapping(rootfs=args.rootfs, prior=names, reference_date=_reference_date())
        if args.rootfs
        else build_mapping(repo=args.repo, ref=args.source, prior=names, reference_date=_reference_date())
    )
    labels.update(_copied_metadata(mapping, args.copymeta, args.copymeta_opt))
    timestamp = getattr(mapping.tree, "timestamp", None)
    epoch = _source_epoch(mapping, timestamp)
    plan = pack(mapping.components, args.max_layers, prior)
    if args.write_contentmeta_json:
        _write_contentmeta(args.write_contentmeta_json, mapping.components)
    if args.dry_run:
        print(format_plan(plan))
        return 0
    progress = _progress if sys.stderr.isatty() and not args.quiet and not args.json else None
    written: list[ImageResult] = []

    def write(layout_path: str, tag: str) -> None:
        written.append(
            write_image(
                mapping,
                plan,
                layout_path,
                tag,
                epoch=epoch,
                labels=labels,
                architecture=args.arch,
                compression=args.compression,
                layer_format=fmt,
                image_config=image_config,
                progress=progress,
            )
        )

    deliver(ref, write, authfile=args.authfile, tls_verify=args.dest_tls_verify)
    result = written[0]
    if progress is not None:
        sys.stderr.write("\n")
    if args.compare_with_build:
        print(_compare(args.compare_with_build, result))
    if args.plan_json:
        with open(args.plan_json, "w", encoding="utf-8") as f:
            json.dump(plan.to_json(), f, indent=1)
    if args.json:
        print_json(
            {
                "manifest": result.manifest.digest,
                "config": result.config.digest,
                "layers": [
                    {
                        "digest": b.descriptor.digest,
                        "size": b.descriptor.size,
                        "diff_id": b.diff_id,
                        "uncompressed_size": b.tar_size,
                        "components": list(c),
                        "reused": b.reused,
                    }
                    for b, c in zip(result.layers, result.layer_components, strict=True)
                ],
            }
        )
    elif not args.quiet:
        total = sum(b.descriptor.size for b in result.layers)
        reused = sum(b.reused for b in result.layers)
        print(
            f"{args.imgref}: {result.manifest.digest}, {len(result.layers)} layers, {human_size(total)}"
            + (f" ({reused} already in the layout)" if reused else "")
        )
    return 0


def container_encapsulate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``container-encapsulate``."""
    parser = encapsulate_parser()
    return _run("container-encapsulate", parser, argv, lambda a: int(a.handler(a, a.parser)))


if __name__ == "__main__":
    sys.exit(debchunk_main())
