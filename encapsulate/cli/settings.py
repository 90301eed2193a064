"""The command line as one table: each ``Setting`` names the commands that
take it, makes its argparse argument (with its converter), fills its
``BuildConfig`` field and writes its line of the README's option table, so a
new option is one entry here, whichever commands share it.
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chunker import ChunkerError
from chunker.cost import DEFAULT_GAPS, UpdateGaps
from mapping.space import parse_size

from ..config import (
    MAX_LAYERS_LIMIT,
    BuildConfig,
    CommitOrigin,
    Compression,
    Format,
    ImageOrigin,
    Origin,
    RootfsOrigin,
)
from ..errors import ConfigError
from ..oci.imgref import RegistryOptions
from ..oci.platform import Platform
from ..oci.retry import DEFAULT_RETRY_DELAY, DEFAULT_RETRY_TIMES, DEFAULT_TIMEOUT, RetryPolicy
from .options import boolean


class Kind(enum.Enum):
    """How a setting is given on the command line."""

    VALUE = "value"  # --opt VALUE
    FLAG = "flag"  # --opt
    REPEAT = "repeat"  # --opt VALUE, repeatable, collected in order
    ARGUMENT = "argument"  # a positional argument
    OPTIONAL_ARGUMENT = "optional argument"  # a positional argument that may be left out


# The commands of the table: ``container-encapsulate`` is ``encapsulate``.
ENCAPSULATE = frozenset(("encapsulate", "rechunk"))
TREE = frozenset(("encapsulate", "map", "plan"))
READERS = frozenset(("inspect", "diff", "report", "validate", "sbom"))
# The commands of sigstore signatures (``cli/signing.py``); the first two reach a registry.
SIGNING = frozenset(("sign", "verify"))
EVERY = ENCAPSULATE | TREE | READERS | SIGNING | {"keygen"}


@dataclass(frozen=True)
class Setting:
    """One option or argument: its flags (a positional argument's name), the
    ``BuildConfig`` field it fills (None: read by the command itself), what
    it means, how it is given, its converter, the commands that take it and
    its group in their help."""

    flags: tuple[str, ...]
    field: str | None
    help: str
    kind: Kind = Kind.VALUE
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    default: Any = None
    group: str = "image"
    commands: frozenset[str] = ENCAPSULATE
    required: bool = False

    @property
    def dest(self) -> str:
        """The argparse destination: the field's name, else the long flag's."""
        return self.field or self.flags[0].lstrip("-").replace("-", "_")

    @property
    def positional(self) -> bool:
        """Whether this is a positional argument."""
        return self.kind in (Kind.ARGUMENT, Kind.OPTIONAL_ARGUMENT)

    def add_to(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        """Add this option to ``parser``."""
        if self.positional:
            nargs = "?" if self.kind is Kind.OPTIONAL_ARGUMENT else None
            parser.add_argument(self.dest, metavar=self.metavar, nargs=nargs, help=self.help)
            return
        # --help says each default, as the README's option table does.
        shown = self.help if self.default is None else f"{self.help} (default {self.default})"
        kwargs: dict[str, Any] = {"dest": self.dest, "help": shown}
        if self.required:
            kwargs["required"] = True
        if self.kind is Kind.FLAG:
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = self.metavar
            if self.kind is Kind.REPEAT:
                kwargs["action"] = "append"
            if self.parse is not None:
                kwargs["type"] = self.parse
            if self.choices is not None:
                kwargs["choices"] = self.choices
            if self.default is not None:
                kwargs["default"] = self.default
        parser.add_argument(*self.flags, **kwargs)

    def markdown(self) -> str:
        """This option's row of the README's option table."""
        spelled = ", ".join(
            f"`{f}{'' if self.kind is Kind.FLAG else ' ' + (self.metavar or 'X')}`" for f in self.flags
        )
        default = "" if self.default is None else f" (default {self.default})"
        return f"| {spelled} | {self.help}{default} |"


def _whole_number(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    return number


def _in_range(
    convert: Callable[[str], Any], low: float, high: float, low_open: bool = False
) -> Callable[[str], Any]:
    """``convert``, then a check that the value is within ``low`` (excluded
    when ``low_open``) and ``high``: argparse's usage error otherwise."""

    def checked(value: str) -> Any:
        try:
            number = convert(value)
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if not (low < number if low_open else low <= number) or not number <= high:
            above = f"more than {low:g}" if low_open else f"{low:g}"
            raise argparse.ArgumentTypeError(f"{value!r}: give {above} to {high:g}")
        return number

    return checked


_retry_times = _in_range(int, 0, 100)
_retry_delay = _in_range(float, 0, 60)
_timeout = _in_range(float, 0, 3600, low_open=True)


def _size(value: str) -> int:
    try:
        return parse_size(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _update_gaps(value: str) -> UpdateGaps:
    try:
        return UpdateGaps.parse(value)
    except ChunkerError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _format_version(value: str) -> int:
    if value not in ("1", "2"):
        raise argparse.ArgumentTypeError(
            f"{value!r}: versions 1 and 2 of ostree-ext's chunked format are written"
        )
    return int(value)


_DESTINATION = (
    "destination: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE, registry:HOST/REPO[:TAG], "
    "docker://..., containers-storage:NAME"
)
_IMAGE = "the image: oci:DIR[:TAG], oci-archive:FILE[:TAG], registry:HOST/REPO[:TAG], ..."

SETTINGS: tuple[Setting, ...] = (
    Setting(
        ("ref",),
        None,
        "OSTree ref or commit checksum (with --repo)",
        Kind.OPTIONAL_ARGUMENT,
        metavar="REF",
        commands=TREE,
    ),
    Setting(
        ("source",),
        None,
        "the image to re-chunk (any IMGREF transport)",
        Kind.ARGUMENT,
        metavar="SOURCE",
        commands=frozenset(("rechunk",)),
    ),
    Setting(("imgref",), None, _DESTINATION, Kind.ARGUMENT, metavar="IMGREF"),
    Setting(
        ("imgref",),
        None,
        _IMAGE,
        Kind.ARGUMENT,
        metavar="IMGREF",
        commands=frozenset(("inspect", "report", "validate", "sbom")),
    ),
    Setting(
        ("old",),
        None,
        "the image the client holds",
        Kind.ARGUMENT,
        metavar="OLD",
        commands=frozenset(("diff",)),
    ),
    Setting(
        ("new",), None, "the image it updates to", Kind.ARGUMENT, metavar="NEW", commands=frozenset(("diff",))
    ),
    Setting(
        ("--repo",), None, "OSTree repository holding REF", metavar="REPO", group="origin", commands=TREE
    ),
    Setting(
        ("--rootfs",),
        None,
        "a root directory instead of a commit",
        metavar="DIR",
        group="origin",
        commands=TREE,
    ),
    Setting(
        ("--mapping",),
        None,
        "plan from 'debchunk map --json' output instead of a tree",
        metavar="FILE",
        group="origin",
        commands=frozenset(("plan",)),
    ),
    Setting(
        ("--from",),
        None,
        "re-chunk an existing image (any IMGREF transport) instead of a commit",
        metavar="IMGREF",
        group="origin",
        commands=frozenset(("encapsulate",)),
    ),
    Setting(
        ("--max-layers",),
        "max_layers",
        f"layers in the image, at most, the first (metadata) layer included; 2 to {MAX_LAYERS_LIMIT}",
        metavar="N",
        parse=_whole_number,
        default=64,
        commands=ENCAPSULATE | {"plan"},
    ),
    Setting(
        ("--update-gaps",),
        "update_gaps",
        "how long clients wait between updates, as GAP:WEIGHT,... (gaps in days, or weeks with 'w'; "
        "weights relative): the plan minimises the download expected over them (docs/layers.md)",
        metavar="GAPS",
        parse=_update_gaps,
        default=DEFAULT_GAPS.describe(),
        commands=ENCAPSULATE | {"plan"},
    ),
    Setting(
        ("--format",),
        "format",
        "layer format: ostree (ostree-ext chunked, for bootc/rpm-ostree) or plain rootfs layers "
        "(default: ostree for a commit, plain for --rootfs and for an image: --from, rechunk)",
        metavar="FORMAT",
        parse=Format,
        choices=tuple(Format),
    ),
    Setting(
        ("--format-version",),
        "format_version",
        "ostree-ext chunked format version: 1, or 2 (every layer also holds the parent directories of "
        "what it holds, with their metadata, as rpm-ostree's --format-version 2; plain layers always do)",
        metavar="N",
        parse=_format_version,
        default=1,
    ),
    Setting(
        ("--compression",),
        "compression",
        "layer compression: gzip, or zstd (smaller and faster; ostree-ext before 0.14 cannot pull it)",
        metavar="ALGO",
        parse=Compression,
        choices=tuple(Compression),
        default=Compression.GZIP,
    ),
    Setting(
        ("--compression-level",),
        "compression_level",
        "compression level: gzip 1 (fastest) to 9 (smallest), default 6; zstd 1 to 19, default 3; "
        "the same bytes on every machine at every level",
        metavar="N",
        parse=_whole_number,
    ),
    Setting(
        ("--compression-fast",),
        "compression_fast",
        "the fastest compression level (gzip 1, zstd 1), as ostree-ext's --compression-fast",
        Kind.FLAG,
    ),
    Setting(
        ("--label", "-l"),
        None,
        "set a config label KEY=VALUE, or remove one with KEY- (repeatable)",
        Kind.REPEAT,
        metavar="KEY=VALUE",
    ),
    Setting(
        ("--bootc",),
        "bootc",
        "label the image bootable by bootc (containers.bootc=1), as rpm-ostree's --bootc does; "
        "bootable commits get it already",
        Kind.FLAG,
    ),
    Setting(
        ("--arch",),
        "platform",
        "image architecture, Debian's or OCI's name (arm64, armhf, x86_64...; default: a --from image's "
        "own, else the tree's dpkg architecture, else this machine's); of a multi-platform --from "
        "image, the platform read (default: this machine's)",
        metavar="ARCH",
        parse=Platform.of,
    ),
    Setting(
        ("--image-config",),
        "image_config",
        "an OCI image config (JSON) to start from: the whole config, or its inner 'config' object as "
        "rpm-ostree takes it",
        metavar="FILE",
    ),
    Setting(("--cmd",), None, "the image's Cmd (repeat for each argument)", Kind.REPEAT, metavar="ARG"),
    Setting(
        ("--copymeta",),
        "copymeta",
        "copy this commit metadata key to a label; it must exist (repeatable)",
        Kind.REPEAT,
        metavar="KEY",
    ),
    Setting(
        ("--copymeta-opt",),
        "copymeta_opt",
        "copy this commit metadata key to a label if it exists (repeatable)",
        Kind.REPEAT,
        metavar="KEY",
    ),
    Setting(
        ("--keep-base",),
        "keep_base",
        "with --from: keep the layers the image shares with this base image as they are, and chunk "
        "only what was added above them",
        metavar="IMGREF",
        group="previous build",
    ),
    Setting(
        ("--prior",),
        "prior",
        "the previous build's image: keep its layers where that pays",
        metavar="IMGREF",
        group="previous build",
        commands=ENCAPSULATE | {"plan"},
    ),
    Setting(
        ("--prior",),
        None,
        "the image a client already holds: what it downloads for IMGREF",
        metavar="IMGREF",
        group="previous build",
        commands=frozenset(("report",)),
    ),
    Setting(
        ("--prior-plan",),
        "prior_plan",
        "the previous build's plan ('debchunk plan --json')",
        metavar="FILE",
        group="previous build",
        commands=ENCAPSULATE | {"plan"},
    ),
    Setting(
        ("--no-prior",),
        "no_prior",
        "plan from scratch: without a previous build given, the image the destination's tag holds "
        "is the previous build; this option ignores it",
        Kind.FLAG,
        group="previous build",
    ),
    Setting(
        ("--previous-build-manifest",),
        "previous_build_manifest",
        "the previous build's raw OCI manifest (JSON), as rpm-ostree takes it",
        metavar="FILE",
        group="previous build",
    ),
    Setting(
        ("--cache",),
        "cache",
        "an OCI layout kept between builds (created if missing): layers found in it are taken, "
        "not compressed again, and every build puts its layers into it",
        metavar="DIR",
        group="previous build",
    ),
    Setting(
        ("--compare-with-build",),
        "compare_with_build",
        "print what a client holding this image downloads for the new one",
        metavar="IMGREF",
        group="previous build",
    ),
    Setting(
        ("--tmpdir",),
        "tmpdir",
        "where temporary data goes: --from's layers spooled uncompressed, copies of images read "
        "through skopeo, the layout written before a push (default: TMPDIR, else /tmp; docs/limits.md)",
        metavar="DIR",
        group="temporary space",
        commands=ENCAPSULATE | {"sbom"},
    ),
    Setting(
        ("--tmp-reserve",),
        "tmp_reserve",
        "stop before the file system of temporary data has less than SIZE free (bytes, or 500M, 2G...; "
        "default: the larger of 1G and 5 percent of it)",
        metavar="SIZE",
        parse=_size,
        group="temporary space",
    ),
    Setting(
        ("--tmp-budget",),
        "tmp_budget",
        "stop once the run has written SIZE of temporary data (default: no limit)",
        metavar="SIZE",
        parse=_size,
        group="temporary space",
    ),
    Setting(
        ("--write-contentmeta-json",),
        "write_contentmeta_json",
        "also write the components as rpm-ostree's content metadata (JSON)",
        metavar="FILE",
        group="output",
    ),
    Setting(
        ("--plan-json",), "plan_json", "also write the plan used, as JSON", metavar="FILE", group="output"
    ),
    Setting(
        ("--sbom",),
        "sbom",
        "also write the SBOM of the tree's dpkg packages (SPDX 2.3 JSON); a registry destination also "
        "gets it attached to the image, as an OCI artifact whose subject is the image (docs/sbom.md)",
        metavar="FILE",
        group="output",
    ),
    Setting(
        ("--dry-run",), "dry_run", "map and plan, print the layers, write no image", Kind.FLAG, group="output"
    ),
    Setting(
        ("--output", "-o"),
        None,
        "the HTML file to write",
        metavar="FILE",
        group="output",
        commands=frozenset(("report",)),
        required=True,
    ),
    Setting(
        ("--output", "-o"),
        None,
        "write the document to FILE instead of standard output",
        metavar="FILE",
        group="output",
        commands=frozenset(("sbom",)),
    ),
    Setting(
        ("--attached",),
        None,
        "print the SBOM attached to the image in its registry (found through the referrers API, else "
        "its fallback tag) instead of making it from the image's dpkg database",
        Kind.FLAG,
        group="output",
        commands=frozenset(("sbom",)),
    ),
    Setting(
        ("--fetch",),
        None,
        "copy the layers of images read through skopeo (registry:, docker://, docker-archive:, "
        "containers-storage:) to a temporary directory, to read them",
        Kind.FLAG,
        group="output",
        commands=frozenset(("inspect", "diff")),
    ),
    Setting(
        ("--no-layers",),
        None,
        "read manifests and configs only, not the layers (no file counts, uncompressed sizes or ideal bytes)",
        Kind.FLAG,
        group="output",
        commands=frozenset(("inspect", "diff")),
    ),
    Setting(
        ("--json",),
        None,
        "print the result as JSON (encapsulate: digests and layers; map: the mapping; plan: the plan)",
        Kind.FLAG,
        group="output",
        commands=ENCAPSULATE | {"map", "plan", "inspect", "diff", "verify"},
    ),
    Setting(("--quiet", "-q"), None, "print errors only", Kind.FLAG, group="output", commands=EVERY),
    Setting(
        ("--debug",), None, "show tracebacks and debug messages", Kind.FLAG, group="output", commands=EVERY
    ),
    Setting(
        ("--authfile",),
        None,
        "registry credentials (containers-auth.json): for every image read and for the destination",
        metavar="FILE",
        group="registry",
        commands=ENCAPSULATE | READERS | SIGNING | {"plan"},
    ),
    Setting(
        ("--tls-verify",),
        None,
        "verify TLS certificates of registries images are read from (--from, --prior, --keep-base, "
        "--compare-with-build, the images inspected, signed or verified): true or false "
        "(default: skopeo's, true)",
        metavar="BOOL",
        parse=boolean,
        group="registry",
        commands=ENCAPSULATE | READERS | SIGNING | {"plan"},
    ),
    Setting(
        ("--creds",),
        None,
        "registry credentials USER[:PASSWORD] for every image read, as skopeo's --creds (they win "
        "over --authfile; a password here is seen by other users of the machine: prefer --authfile)",
        metavar="USER:PASSWORD",
        group="registry",
        commands=ENCAPSULATE | READERS | SIGNING | {"plan"},
    ),
    Setting(
        ("--dest-creds",),
        None,
        "registry credentials USER[:PASSWORD] for the destination, as skopeo's --dest-creds",
        metavar="USER:PASSWORD",
        group="registry",
    ),
    Setting(
        ("--dest-tls-verify",),
        None,
        "verify the destination registry's TLS certificate: true or false (default: skopeo's, true)",
        metavar="BOOL",
        parse=boolean,
        group="registry",
    ),
    Setting(
        ("--sign-by-sigstore",),
        "sign_by_sigstore",
        "sign the image pushed to a registry with this cosign private key (PREFIX.key of "
        "'debchunk keygen' or 'cosign generate-key-pair'), as sigstore signatures that podman, skopeo "
        "and bootc check (docs/signing.md)",
        metavar="KEY",
        group="signing",
    ),
    Setting(
        ("--sign-passphrase-file",),
        "sign_passphrase_file",
        "the file whose first line is the --sign-by-sigstore key's passphrase (default: COSIGN_PASSWORD, "
        "else none)",
        metavar="FILE",
        group="signing",
    ),
    Setting(
        ("--sign-identity",),
        "sign_identity",
        "the reference the signature names, HOST/REPO:TAG (default: the destination's)",
        metavar="REF",
        group="signing",
    ),
    Setting(
        ("imgref",),
        None,
        "the image in a registry: registry:HOST/REPO[:TAG|@DIGEST] or docker://HOST/REPO[:TAG|@DIGEST]",
        Kind.ARGUMENT,
        metavar="IMGREF",
        commands=SIGNING,
    ),
    Setting(
        ("prefix",),
        None,
        "the key pair written: PREFIX.key (the private key, encrypted) and PREFIX.pub",
        Kind.ARGUMENT,
        metavar="PREFIX",
        commands=frozenset(("keygen",)),
    ),
    Setting(
        ("--key",),
        None,
        "the cosign private key to sign with (PREFIX.key): a sigstore signature",
        metavar="KEY",
        group="signing",
        commands=frozenset(("sign",)),
    ),
    Setting(
        ("--gpg-key",),
        None,
        "instead of --key: the GPG key (fingerprint, in the GPG keyring) to sign with, a simple-signing "
        "signature in a lookaside store, for clients without sigstore (Debian 12's; docs/signing.md)",
        metavar="FINGERPRINT",
        group="signing",
        commands=frozenset(("sign",)),
    ),
    Setting(
        ("--lookaside",),
        None,
        "with --gpg-key: the lookaside store's directory (registries.d's lookaside-staging)",
        metavar="DIR",
        group="signing",
        commands=frozenset(("sign",)),
    ),
    Setting(
        ("--key",),
        None,
        "the public key signatures must be made by (PREFIX.pub; the keyPath of a sigstoreSigned policy)",
        metavar="PUB",
        group="signing",
        commands=frozenset(("verify",)),
        required=True,
    ),
    Setting(
        ("--passphrase-file",),
        None,
        "the file whose first line is the private key's passphrase (default: COSIGN_PASSWORD, else none)",
        metavar="FILE",
        group="signing",
        commands=frozenset(("sign", "keygen")),
    ),
    Setting(
        ("--identity",),
        None,
        "the reference signed, HOST/REPO:TAG (sign: default IMGREF's; verify: the one required, as an "
        "exactReference policy; default IMGREF's repository and tag, as matchRepoDigestOrExact)",
        metavar="REF",
        group="signing",
        commands=SIGNING,
    ),
    Setting(
        ("--retry-times",),
        "retry_times",
        "try a registry request that meets a transient fault (5xx but 501 and 507, 429, a connection "
        "reset, or refused mid-push, a timeout) N more times, waiting longer each time; passed to skopeo "
        "too (docs/push.md)",
        metavar="N",
        parse=_retry_times,
        default=DEFAULT_RETRY_TIMES,
        group="registry",
        commands=ENCAPSULATE | READERS | SIGNING | {"plan"},
    ),
    Setting(
        ("--retry-delay",),
        "retry_delay",
        "seconds before the first retry, doubled for each next one; a registry's Retry-After wins",
        metavar="SECONDS",
        parse=_retry_delay,
        default=DEFAULT_RETRY_DELAY,
        group="registry",
        commands=ENCAPSULATE | READERS | SIGNING | {"plan"},
    ),
    Setting(
        ("--registry-timeout",),
        "registry_timeout",
        "give up a registry request (then try it again) after SECONDS without a byte from the registry",
        metavar="SECONDS",
        parse=_timeout,
        default=DEFAULT_TIMEOUT,
        group="registry",
        commands=ENCAPSULATE | READERS | SIGNING | {"plan"},
    ),
)


def add_settings(parser: argparse.ArgumentParser, command: str) -> None:
    """Every argument and option ``command`` takes, grouped as in the README
    (``container-encapsulate`` is ``encapsulate``)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for setting in SETTINGS:
        if command not in setting.commands:
            continue
        if setting.positional:
            setting.add_to(parser)
            continue
        if setting.group not in groups:
            groups[setting.group] = parser.add_argument_group(setting.group)
        setting.add_to(groups[setting.group])


def add_command(
    sub: Any, name: str, handler: Callable[..., int], **parser_args: Any
) -> argparse.ArgumentParser:
    """The subcommand ``name`` of ``sub`` (argparse's subparsers), taking the
    settings of ``name`` and run by ``handler``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, **parser_args)
    add_settings(parser, name)
    parser.set_defaults(handler=handler, parser=parser)
    return parser


def _labels(items: Sequence[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    labels: dict[str, str] = {}
    removed: list[str] = []
    for item in items:
        key, eq, value = item.partition("=")
        if eq and key:
            labels[key] = value
            if key in removed:
                removed.remove(key)
        elif not eq and item.endswith("-") and len(item) > 1:
            removed.append(item[:-1])
            labels.pop(item[:-1], None)
        else:
            raise ConfigError(f"--label {item!r}: give KEY=VALUE, or KEY- to remove a label")
    return labels, tuple(removed)


def origin_from_args(args: argparse.Namespace, usage: str) -> Origin:
    """The one origin the command line names (``--repo REPO REF``,
    ``--rootfs DIR``, ``--from``/``SOURCE`` IMGREF); ``usage`` when it names none."""
    image = getattr(args, "source", None) or getattr(args, "from", None)
    repo, ref, rootfs = (getattr(args, name, None) for name in ("repo", "ref", "rootfs"))
    given = [
        name for name, value in (("--rootfs DIR", rootfs), ("--from IMGREF", image)) if value is not None
    ]
    if repo is not None or ref is not None:
        given.insert(0, "--repo REPO REF")
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)}: give one origin")
    if rootfs is not None:
        return RootfsOrigin(rootfs)
    if image is not None:
        return ImageOrigin(image)
    if repo is not None and ref is not None:
        return CommitOrigin(repo, ref)
    raise ConfigError(usage)


def reading_registry(args: argparse.Namespace) -> RegistryOptions:
    """How the images a command reads are reached: ``--authfile``, ``--tls-verify``, ``--creds``
    and the retry options."""
    retry = RetryPolicy(
        getattr(args, "retry_times", DEFAULT_RETRY_TIMES),
        getattr(args, "retry_delay", DEFAULT_RETRY_DELAY),
        getattr(args, "registry_timeout", DEFAULT_TIMEOUT),
    )
    authfile, creds = getattr(args, "authfile", None), getattr(args, "creds", None)
    return RegistryOptions(authfile, getattr(args, "tls_verify", None), creds, retry)


def config_from_args(args: argparse.Namespace, epoch: int | None) -> BuildConfig:
    """The ``BuildConfig`` the parsed command line asks for; ``epoch`` is
    ``SOURCE_DATE_EPOCH``, read by the caller."""
    origin = origin_from_args(
        args, "give --repo REPO REF IMGREF, --rootfs DIR IMGREF or --from IMGREF IMGREF"
    )
    labels, removed = _labels(args.label or ())
    fields: dict[str, Any] = {s.field: getattr(args, s.dest, None) for s in SETTINGS if s.field is not None}
    fields = {k: v for k, v in fields.items() if v is not None}
    for name in ("copymeta", "copymeta_opt"):
        fields[name] = tuple(fields.get(name, ()))
    return BuildConfig(
        origin=origin,
        destination=args.imgref,
        registry=reading_registry(args),
        dest_registry=RegistryOptions(args.authfile, args.dest_tls_verify, args.dest_creds),
        labels=labels,
        remove_labels=removed,
        cmd=None if args.cmd is None else tuple(args.cmd),
        epoch=epoch,
        **fields,
    )


def options_markdown() -> str:
    """The README's option table of ``container-encapsulate``."""
    lines = ["| option | meaning |", "|---|---|"]
    lines += [s.markdown() for s in SETTINGS if "encapsulate" in s.commands and not s.positional]
    return "\n".join(lines)
