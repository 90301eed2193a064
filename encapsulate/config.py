"""What a build is asked to do: ``BuildConfig``, every option of
``container-encapsulate`` as one frozen value, and its one ``check()``.

The command line makes a ``BuildConfig`` from its settings table; compose
tooling makes one in Python.  Both then call ``encapsulate.build_image``.
The environment (``SOURCE_DATE_EPOCH``) is read once, by ``epoch_from_environment``,
where a config is made: never inside ``mapping`` or ``chunker``.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConfigError, EncapsulateError
from .oci.imgref import parse_imgref

# containers-storage refuses images of more layers (DESIGN.md, "Layer counts").
MAX_LAYERS_LIMIT = 500
# Docker's overlay2 driver cannot pull an image of more layers than this.
DOCKER_LAYER_LIMIT = 127


class Format(enum.StrEnum):
    """The layer format: ostree-ext's chunked ostree layers, or plain rootfs layers."""

    OSTREE = "ostree"
    PLAIN = "plain"


class Compression(enum.StrEnum):
    """How layers are compressed."""

    GZIP = "gzip"
    ZSTD = "zstd"


# Levels of each compression: the default, the fastest and the range taken
# (zstd's 20-22 need far more memory to unpack).  benches/compressors.py
# measured each level's speed, size and reproducibility.
COMPRESSION_DEFAULT = {Compression.GZIP: 6, Compression.ZSTD: 3}
COMPRESSION_FASTEST = {Compression.GZIP: 1, Compression.ZSTD: 1}
COMPRESSION_LEVELS = {Compression.GZIP: (1, 9), Compression.ZSTD: (1, 19)}


@dataclass(frozen=True)
class CommitOrigin:
    """An OSTree commit: ``ref`` (a ref or a checksum) in the repository ``repo``."""

    repo: str
    ref: str


@dataclass(frozen=True)
class RootfsOrigin:
    """A root directory, read with lstat (symlinks never followed)."""

    path: str


@dataclass(frozen=True)
class ImageOrigin:
    """An existing container image (any IMGREF transport), re-chunked: its
    layers applied in order, read from their blobs, never extracted."""

    imgref: str


Origin = CommitOrigin | RootfsOrigin | ImageOrigin


def epoch_from_environment(environ: Mapping[str, str] | None = None) -> int | None:
    """``SOURCE_DATE_EPOCH`` as seconds, or None when it is unset or empty."""
    value = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        epoch = int(value)
    except ValueError:
        raise EncapsulateError(
            f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds since 1970",
            hint="fix or unset it",
        ) from None
    if epoch < 0:
        raise EncapsulateError(f"SOURCE_DATE_EPOCH={value!r} is before 1970", hint="fix or unset it")
    return epoch


@dataclass(frozen=True)
class BuildConfig:
    """Everything one build needs to know (see ``container-encapsulate --help``).

    ``origin`` is what to encapsulate and ``destination`` the IMGREF to write.
    The previous build is at most one of ``prior`` (an IMGREF), ``prior_plan``
    (a ``debchunk plan --json`` file) and ``previous_build_manifest`` (its raw
    OCI manifest).  ``image_config`` is a file holding an OCI image config,
    whole or only its inner ``config`` object (rpm-ostree's form).  ``epoch``
    is the image's time (``SOURCE_DATE_EPOCH``); without it, the commit's
    timestamp, else the newest changelog date in the tree.  ``arch``: the
    image's architecture, named as Debian, the kernel or OCI names it
    (default: an image origin's own, else the tree's dpkg architecture, else
    this machine's); of a multi-platform image origin, the platform read
    (default: this machine's).  ``bootc`` labels the image
    ``containers.bootc=1``.  ``tls_verify``
    applies to every image read (``prior``, ``compare_with_build``,
    ``keep_base``),
    ``dest_tls_verify`` to the destination; None keeps skopeo's default.
    ``compression_level`` (gzip 1-9, zstd 1-19) or ``compression_fast`` (the
    fastest level, as ostree-ext's ``--compression-fast``) choose the level;
    every level gives the same bytes on every machine.  ``cache``: an OCI
    layout kept between builds; every build takes the layers it can from it
    and puts the layers of its image into it.
    """

    origin: Origin
    destination: str
    max_layers: int = 64
    format: Format | None = None
    format_version: int = 1
    compression: Compression = Compression.GZIP
    compression_level: int | None = None
    compression_fast: bool = False
    prior: str | None = None
    prior_plan: str | None = None
    previous_build_manifest: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    remove_labels: tuple[str, ...] = ()
    image_config: str | None = None
    cmd: tuple[str, ...] | None = None
    arch: str | None = None
    bootc: bool = False
    copymeta: tuple[str, ...] = ()
    copymeta_opt: tuple[str, ...] = ()
    epoch: int | None = None
    write_contentmeta_json: str | None = None
    plan_json: str | None = None
    compare_with_build: str | None = None
    dry_run: bool = False
    authfile: str | None = None
    tls_verify: bool | None = None
    dest_tls_verify: bool | None = None
    threads: int | None = None
    keep_base: str | None = None
    cache: str | None = None

    @property
    def level(self) -> int:
        """The compression level used: as asked, the fastest, or the compression's default."""
        if self.compression_level is not None:
            return self.compression_level
        table = COMPRESSION_FASTEST if self.compression_fast else COMPRESSION_DEFAULT
        return table[self.compression]

    @property
    def layer_format(self) -> Format:
        """The format written: as asked, else ostree for a commit and plain for a root tree or an image."""
        if self.format is not None:
            return self.format
        return Format.OSTREE if isinstance(self.origin, CommitOrigin) else Format.PLAIN

    def check(self) -> None:
        """Every rule between options; raises ``ConfigError`` (a usage error)
        naming the option at fault.  Nothing is read or written."""
        origin = self.origin
        if isinstance(origin, CommitOrigin):
            if not origin.repo or not origin.ref:
                raise ConfigError("give the commit as --repo REPO REF")
        elif isinstance(origin, RootfsOrigin):
            if not origin.path:
                raise ConfigError("--rootfs: give a directory")
        elif isinstance(origin, ImageOrigin):
            try:
                parse_imgref(origin.imgref)
            except EncapsulateError as e:
                raise ConfigError(f"--from: {e}") from None
        else:
            raise ConfigError(f"origin {origin!r}: give a CommitOrigin, a RootfsOrigin or an ImageOrigin")
        try:
            parse_imgref(self.destination)
        except EncapsulateError as e:
            raise ConfigError(str(e)) from None
        if not 2 <= self.max_layers <= MAX_LAYERS_LIMIT:
            raise ConfigError(
                f"--max-layers {self.max_layers}: an image has 2 (metadata + content) to "
                f"{MAX_LAYERS_LIMIT} layers (containers-storage's limit)",
                hint="choose a number in that range",
            )
        if not isinstance(self.format, Format | None) or not isinstance(self.compression, Compression):
            raise ConfigError(
                "format and compression are encapsulate.Format and encapsulate.Compression values"
            )
        if self.compression_level is not None:
            if self.compression_fast:
                raise ConfigError("--compression-level and --compression-fast: give one of them")
            low, high = COMPRESSION_LEVELS[self.compression]
            if not low <= self.compression_level <= high:
                raise ConfigError(
                    f"--compression-level {self.compression_level}: {self.compression} levels are "
                    f"{low} to {high}",
                    hint="choose a level in that range",
                )
        if self.layer_format is Format.OSTREE and isinstance(origin, RootfsOrigin):
            raise ConfigError(
                "--format ostree needs an OSTree commit (--repo REPO REF) or an image (--from IMGREF)",
                hint="a --rootfs tree is written --format plain",
            )
        if self.keep_base is not None:
            if not isinstance(origin, ImageOrigin):
                raise ConfigError("--keep-base needs an image origin (--from IMGREF)")
            if self.layer_format is Format.OSTREE:
                # The base's layers are rootfs tarballs; an ostree-format image
                # is one commit whose objects all live in its own layers.
                raise ConfigError(
                    "--keep-base keeps the base's plain layers, and --format ostree writes "
                    "the whole tree as one commit",
                    hint="drop one of --keep-base and --format ostree",
                )
            try:
                parse_imgref(self.keep_base)
            except EncapsulateError as e:
                raise ConfigError(f"--keep-base: {e}") from None
        if self.cache is not None and (not self.cache or os.path.isfile(self.cache)):
            raise ConfigError(f"--cache {self.cache!r}: give a directory (an OCI layout, created if missing)")
        if self.format_version not in (1, 2):
            raise ConfigError(
                f"--format-version {self.format_version}: versions 1 and 2 are written", hint="use 1 or 2"
            )
        if (self.copymeta or self.copymeta_opt) and not isinstance(origin, CommitOrigin):
            raise ConfigError(
                "--copymeta needs an OSTree commit; a root tree or an image has no commit metadata"
            )
        priors = [
            name
            for name, value in (
                ("--prior", self.prior),
                ("--prior-plan", self.prior_plan),
                ("--previous-build-manifest", self.previous_build_manifest),
            )
            if value is not None
        ]
        if len(priors) > 1:
            raise ConfigError(f"{' and '.join(priors)}: give only one previous build")
        for key in (*self.labels, *self.remove_labels):
            if not key or "=" in key:
                raise ConfigError(f"--label {key!r}: give KEY=VALUE, or KEY- to remove a label")
        if self.cmd is not None and not self.cmd:
            raise ConfigError("--cmd: give the command and its arguments")
        if self.epoch is not None and self.epoch < 0:
            raise ConfigError(f"SOURCE_DATE_EPOCH {self.epoch}: before 1970", hint="fix or unset it")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads {self.threads}: give at least 1")
        for option, path in (
            ("--plan-json", self.plan_json),
            ("--write-contentmeta-json", self.write_contentmeta_json),
        ):
            if path is not None:
                _check_output_file(option, path)


def _check_output_file(option: str, path: str) -> None:
    """An output file can be written: its directory exists and is writable, and
    it is not itself a directory.  Checked before anything is written."""
    if not path:
        raise ConfigError(f"{option}: give a file name")
    if os.path.isdir(path):
        raise ConfigError(f"{option} {path}: is a directory", hint="give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigError(f"{option} {path}: no directory {parent}", hint="create it or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: {parent} is not writable", hint="choose another path")
