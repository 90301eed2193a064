"""The ``debchunk`` and ``container-encapsulate`` commands: argparse, then one
library call per subcommand; errors become one line, exit status 1 (2 for
usage errors, as argparse does)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata

from chunker import ChunkerError, pack
from mapping import DebchunkError, Mapping, MappingError, build_mapping
from mapping import Origin as TreeOrigin
from mapping.errors import show

from ..build import build_image
from ..config import ImageOrigin, check_max_layers, epoch_from_environment, reference_date
from ..errors import ConfigError
from ..oci.layout import read_json_object
from ..oci.platform import Platform
from ..oci.prior import read_prior
from . import sbom as sbom_command
from . import signing, tools
from .progress import progress_line
from .render import build_output, mapping_output, plan_output
from .settings import add_command, add_settings, config_from_args, origin_from_args, reading_registry

# Failures exit 1; usage errors 2, argparse's convention (DESIGN.md, "Interfaces").
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace, argparse.ArgumentParser], int]


class _OneLine(logging.Formatter):
    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        # Warnings name what an image holds: escaped, one line, whatever it holds.
        return f"{self.prog}: {record.levelname.lower()}: {show(record.getMessage())}"


def _setup_logging(prog: str, quiet: bool, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine(prog))
    root = logging.getLogger("debchunk")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING)
    root.propagate = False


def _version() -> str:
    try:
        return metadata.version("debchunk")
    except metadata.PackageNotFoundError:
        return "unknown"


def _origin(args: argparse.Namespace) -> TreeOrigin:
    origin = origin_from_args(args, "give --repo REPO REF, or --rootfs DIR")
    assert not isinstance(origin, ImageOrigin)
    return origin


def _cmd_map(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    mapping = build_mapping(_origin(args), reference_date=reference_date(epoch_from_environment()))
    print(mapping_output(mapping, args.json))
    return 0


def _cmd_plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    check_max_layers(args.max_layers)
    if args.prior is not None and args.prior_plan is not None:
        raise ConfigError("--prior and --prior-plan: give only one previous build")
    # Of an image index, this machine's platform, as a build reads it without --arch.
    prior = read_prior(
        reading_registry(args), prior=args.prior, plan_file=args.prior_plan, platform=Platform.host()
    )
    if args.mapping is not None:
        if args.repo or args.ref or args.rootfs:
            raise ConfigError("--mapping FILE takes no --repo, REF or --rootfs")
        try:
            mapping = Mapping.from_json(
                read_json_object(args.mapping, "mapping", "pass the output of 'debchunk map --json'")
            )
        except MappingError as e:
            raise ChunkerError(f"{args.mapping}: {e}") from None
    else:
        names = None if prior is None else prior.layer_index().keys()
        epoch = epoch_from_environment()
        mapping = build_mapping(_origin(args), reference_date=reference_date(epoch), prior=names)
    plan = pack(mapping.components, args.max_layers, prior, gaps=args.update_gaps)
    print(plan_output(plan, args.json))
    return 0


def _cmd_encapsulate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = config_from_args(args, epoch_from_environment())
    progress = progress_line(sys.stderr, quiet=args.quiet or args.json)
    try:
        result = build_image(config, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    text = build_output(result, as_json=args.json, quiet=args.quiet)
    if text:
        print(text)
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, as Ctrl-C is: every
    ``finally`` and context manager runs, so temporary files, spools and
    unfinished blobs are removed and the destination is left as it was."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# Signals that end a run the way Ctrl-C does (systemd, CI runners and
# terminals send these), rather than killing it where it stands.
_TERMINATIONS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _terminations_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGHUP raise ``Terminated``; the handlers
    before it are put back after (in-process callers keep theirs).  Only the
    main thread can set handlers: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated(signum)

    before = {sig: signal.signal(sig, terminate) for sig in _TERMINATIONS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            # None: a handler not set from Python, which cannot be put back.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _run(
    prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None, intermixed: bool = False
) -> int:
    # container-encapsulate takes REF and IMGREF on either side of options
    # (``--repo R REF --rootfs DIR IMGREF`` must reach the rule refusing it);
    # argparse cannot intermix with subcommands.
    args = parser.parse_intermixed_args(argv) if intermixed else parser.parse_args(argv)
    _setup_logging(prog, getattr(args, "quiet", False), getattr(args, "debug", False))
    handler: Handler = args.handler
    try:
        with _terminations_interrupt():
            return handler(args, args.parser)
    except ConfigError as e:
        if args.debug:
            raise
        args.parser.print_usage(sys.stderr)
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except DebchunkError as e:
        if args.debug:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
    except KeyboardInterrupt as e:
        print(f"{prog}: error: interrupted; nothing was written", file=sys.stderr)
        # The shell's convention: 128 + the signal's number (130 for Ctrl-C).
        return 128 + e.signum if isinstance(e, Terminated) else EXIT_INTERRUPTED
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
        prog="debchunk",
        description="Chunked, reproducible OCI images of Debian OSTree systems and root trees.",
    )
    parser.add_argument("--version", action="version", version=f"debchunk {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_command(
        sub,
        "map",
        _cmd_map,
        help="show who owns every file of a tree and how often it changes",
        description="Map a commit or root tree to components.",
    )
    add_command(
        sub,
        "plan",
        _cmd_plan,
        help="group a tree's components into layers",
        description="Plan the layers of a commit, a root tree or a saved mapping.",
    )
    add_command(
        sub,
        "encapsulate",
        _cmd_encapsulate,
        help="write a commit or root tree as an OCI image (as container-encapsulate)",
        description="Write an OSTree commit or a root tree as a chunked, reproducible OCI image.",
    )
    add_command(
        sub,
        "rechunk",
        _cmd_encapsulate,
        help="re-chunk an existing container image (as container-encapsulate --from)",
        description="Re-chunk an existing container image: its layers applied in order, read from the "
        "blobs (no root, nothing extracted), mapped and planned like a root tree.",
    )
    tools.register(sub)
    sbom_command.register(sub)
    signing.register(sub)
    return parser


def debchunk_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``debchunk``."""
    parser = debchunk_parser()
    return _run("debchunk", parser, argv)


def encapsulate_parser(prog: str = "container-encapsulate") -> argparse.ArgumentParser:
    """The parser of ``container-encapsulate``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Write an OSTree commit or a root tree as a chunked, reproducible OCI image."
    )
    parser.add_argument("--version", action="version", version=f"{prog} {_version()}")
    add_settings(parser, "encapsulate")
    parser.set_defaults(handler=_cmd_encapsulate, parser=parser)
    return parser


def container_encapsulate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``container-encapsulate``."""
    return _run("container-encapsulate", encapsulate_parser(), argv, intermixed=True)


if __name__ == "__main__":
    sys.exit(debchunk_main())
