"""What a build is asked to do: ``BuildConfig``, every option of
``container-encapsulate`` as one frozen value, and its one ``check()``.

The command line makes a ``BuildConfig`` from its settings table; compose
tooling makes one in Python.  Both then call ``encapsulate.build_image``.
The environment (``SOURCE_DATE_EPOCH``) is read once, by ``epoch_from_environment``,
where a config is made: never inside ``mapping`` or ``chunker``.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import overload

from chunker.cost import DEFAULT_GAPS, UpdateGaps
from mapping import CommitOrigin as CommitOrigin
from mapping import RootfsOrigin as RootfsOrigin

from .errors import ConfigError, EncapsulateError
from .oci.imgref import DEFAULT_REGISTRY, ImageRef, RegistryOptions, parse_imgref
from .oci.platform import Platform

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


def image_ref(value: ImageRef | str, option: str) -> ImageRef:
    """``value`` as an ``ImageRef``: parsed once, where a config is made; a
    bad IMGREF is a ``ConfigError`` naming ``option``."""
    if isinstance(value, ImageRef):
        return value
    try:
        return parse_imgref(value)
    except EncapsulateError as e:
        raise ConfigError(f"{option}{': ' if option else ''}{e}") from None


class _ImageRefField:
    """A config field holding a parsed ``ImageRef``: set from an ``ImageRef``
    or from IMGREF text, which is parsed as it is set (``image_ref``), so a
    config holds parsed references only, and a bad one is refused where the
    config is made, naming ``option``."""

    def __init__(self, option: str) -> None:
        self.option = option
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = "_" + name

    def _get(self, obj: object) -> ImageRef | None:
        value: ImageRef | None = getattr(obj, self.name)
        return value

    def _set(self, obj: object, value: ImageRef | str | None) -> None:
        object.__setattr__(obj, self.name, None if value is None else image_ref(value, self.option))


class OptionalImageRef(_ImageRefField):
    """An ``ImageRef`` field that may be left out (None)."""

    @overload
    def __get__(self, obj: None, objtype: type) -> None: ...

    @overload
    def __get__(self, obj: object, objtype: type) -> ImageRef | None: ...

    def __get__(self, obj: object | None, objtype: type | None = None) -> ImageRef | None:
        return None if obj is None else self._get(obj)

    def __set__(self, obj: object, value: ImageRef | str | None) -> None:
        self._set(obj, value)


class RequiredImageRef(_ImageRefField):
    """An ``ImageRef`` field that must be given."""

    @overload
    def __get__(self, obj: None, objtype: type) -> RequiredImageRef: ...

    @overload
    def __get__(self, obj: object, objtype: type) -> ImageRef: ...

    def __get__(self, obj: object | None, objtype: type | None = None) -> ImageRef | RequiredImageRef:
        if obj is None:
            # What dataclasses read as "no default".
            raise AttributeError(self.name)
        value = self._get(obj)
        if value is None:
            raise ConfigError(f"{self.option or 'IMGREF'}: give an image reference")
        return value

    def __set__(self, obj: object, value: ImageRef | str) -> None:
        self._set(obj, value)


@dataclass(frozen=True)
class ImageOrigin:
    """An existing container image (any IMGREF transport, given as an
    ``ImageRef`` or its text), re-chunked: its layers applied in order, read
    from their blobs, never extracted."""

    imgref: RequiredImageRef = RequiredImageRef("--from")


Origin = CommitOrigin | RootfsOrigin | ImageOrigin


def check_max_layers(max_layers: int) -> None:
    """The layer budget is one an image can have: 2 (metadata + content) to
    ``MAX_LAYERS_LIMIT``; ``ConfigError`` naming ``--max-layers`` otherwise."""
    if not 2 <= max_layers <= MAX_LAYERS_LIMIT:
        raise ConfigError(
            f"--max-layers {max_layers}: an image has 2 (metadata + content) to "
            f"{MAX_LAYERS_LIMIT} layers (containers-storage's limit)",
            hint="choose a number in that range",
        )


def reference_date(epoch: int | None) -> dt.datetime | None:
    """The date change probabilities are counted back from: ``epoch``
    (``SOURCE_DATE_EPOCH``) when set, else None (the tree's newest changelog date)."""
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)


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

    ``origin`` is what to encapsulate and ``destination`` the IMGREF to write,
    in at most ``max_layers`` layers planned for ``update_gaps`` (how long
    clients wait between updates, ``chunker.UpdateGaps``; docs/layers.md).
    The previous build is at most one of ``prior`` (an IMGREF), ``prior_plan``
    (a ``debchunk plan --json`` file) and ``previous_build_manifest`` (its raw
    OCI manifest); without one, the image the destination's tag holds, if
    any, unless ``no_prior``.  ``image_config`` is a file holding an OCI image config,
    whole or only its inner ``config`` object (rpm-ostree's form).  ``epoch``
    is the image's time (``SOURCE_DATE_EPOCH``); without it, the commit's
    timestamp, else the newest changelog date in the tree.  ``platform``:
    the image's (``Platform.of`` takes the Debian, kernel or OCI name;
    default: an image origin's own, else the tree's dpkg architecture, else
    this machine's); of a multi-platform image origin, the platform read
    (default: this machine's).  ``bootc`` labels the image
    ``containers.bootc=1``.  ``registry`` is how every image read is reached
    (the origin, ``prior``, ``keep_base``, ``compare_with_build``: TLS and
    credentials), ``dest_registry`` how the destination is.
    ``compression_level`` (gzip 1-9, zstd 1-19) or ``compression_fast`` (the
    fastest level, as ostree-ext's ``--compression-fast``) choose the level;
    every level gives the same bytes on every machine.  ``cache``: an OCI
    layout kept between builds; every build takes the layers it can from it
    and puts the layers of its image into it.  ``tmpdir`` is where temporary
    data goes (an image origin's spooled layers, copies of images read
    through skopeo, the layout written before a registry push; default
    ``TMPDIR``, else /tmp); ``tmp_reserve`` the bytes kept free on the file
    systems it is written on (default: the larger of 1 GiB and 5%), and
    ``tmp_budget`` the most it may hold in all (default: no limit); see
    docs/limits.md.  ``sbom``: a file to write the SBOM of the tree's dpkg
    packages to (SPDX 2.3 JSON), also attached to the image when the
    destination is a registry (docs/sbom.md).  ``retry_times``,
    ``retry_delay`` and ``registry_timeout`` (None: ``oci.retry``'s
    defaults) say how registry requests meeting a transient fault are tried
    again and how long one is waited on; they are put into ``registry`` and
    ``dest_registry`` (docs/push.md).
    ``sign_by_sigstore``: a cosign private key file; the
    image pushed to a registry is signed with it (sigstore, as cosign and
    containers/image store signatures), its passphrase the first line of
    ``sign_passphrase_file``, the reference signed ``sign_identity``
    (default: the destination's); docs/signing.md.
    """

    origin: Origin
    destination: RequiredImageRef = RequiredImageRef("")
    max_layers: int = 64
    update_gaps: UpdateGaps = DEFAULT_GAPS
    format: Format | None = None
    format_version: int = 1
    compression: Compression = Compression.GZIP
    compression_level: int | None = None
    compression_fast: bool = False
    prior: OptionalImageRef = OptionalImageRef("--prior")
    prior_plan: str | None = None
    previous_build_manifest: str | None = None
    no_prior: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    remove_labels: tuple[str, ...] = ()
    image_config: str | None = None
    cmd: tuple[str, ...] | None = None
    platform: Platform | None = None
    bootc: bool = False
    copymeta: tuple[str, ...] = ()
    copymeta_opt: tuple[str, ...] = ()
    epoch: int | None = None
    write_contentmeta_json: str | None = None
    plan_json: str | None = None
    compare_with_build: OptionalImageRef = OptionalImageRef("--compare-with-build")
    dry_run: bool = False
    registry: RegistryOptions = DEFAULT_REGISTRY
    dest_registry: RegistryOptions = DEFAULT_REGISTRY
    threads: int | None = None
    keep_base: OptionalImageRef = OptionalImageRef("--keep-base")
    cache: str | None = None
    tmpdir: str | None = None
    tmp_reserve: int | None = None
    tmp_budget: int | None = None
    sbom: str | None = None
    sign_by_sigstore: str | None = None
    sign_passphrase_file: str | None = None
    sign_identity: str | None = None
    retry_times: int | None = None
    retry_delay: float | None = None
    registry_timeout: float | None = None

    def __post_init__(self) -> None:
        # The retry settings reach every registry request and skopeo call
        # through the registry options (``RegistryOptions.retry``).
        given = {
            name: value
            for name, value in (
                ("times", self.retry_times),
                ("delay", self.retry_delay),
                ("timeout", self.registry_timeout),
            )
            if value is not None
        }
        if given:
            for name in ("registry", "dest_registry"):
                options = getattr(self, name)
                object.__setattr__(self, name, replace(options, retry=replace(options.retry, **given)))

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
        for rule in _RULES:
            rule(self)

    @property
    def requested_platform(self) -> Platform:
        """The platform read from a multi-platform image: ``platform``, else this machine's."""
        return self.platform if self.platform is not None else Platform.host()


def _check_origin(config: BuildConfig) -> None:
    origin = config.origin
    if isinstance(origin, CommitOrigin):
        if not origin.repo or not origin.ref:
            raise ConfigError("give the commit as --repo REPO REF")
    elif isinstance(origin, RootfsOrigin):
        if not origin.path:
            raise ConfigError("--rootfs: give a directory")
    elif not isinstance(origin, ImageOrigin):
        raise ConfigError(f"origin {origin!r}: give a CommitOrigin, a RootfsOrigin or an ImageOrigin")
    if config.layer_format is Format.OSTREE and isinstance(origin, RootfsOrigin):
        raise ConfigError(
            "--format ostree needs an OSTree commit (--repo REPO REF) or an image (--from IMGREF)",
            hint="a --rootfs tree is written --format plain",
        )
    if (config.copymeta or config.copymeta_opt) and not isinstance(origin, CommitOrigin):
        raise ConfigError("--copymeta needs an OSTree commit; a root tree or an image has no commit metadata")


def _check_layers(config: BuildConfig) -> None:
    check_max_layers(config.max_layers)
    if not isinstance(config.update_gaps, UpdateGaps):
        raise ConfigError("update_gaps is a chunker.UpdateGaps value (UpdateGaps.parse reads --update-gaps)")
    if not isinstance(config.format, Format | None) or not isinstance(config.compression, Compression):
        raise ConfigError("format and compression are encapsulate.Format and encapsulate.Compression values")
    if config.compression_level is not None:
        if config.compression_fast:
            raise ConfigError("--compression-level and --compression-fast: give one of them")
        low, high = COMPRESSION_LEVELS[config.compression]
        if not low <= config.compression_level <= high:
            raise ConfigError(
                f"--compression-level {config.compression_level}: "
                f"{config.compression} levels are {low} to {high}",
                hint="choose a level in that range",
            )
    if config.format_version not in (1, 2):
        raise ConfigError(
            f"--format-version {config.format_version}: versions 1 and 2 are written", hint="use 1 or 2"
        )
    if config.threads is not None and config.threads < 1:
        raise ConfigError(f"threads {config.threads}: give at least 1")


def _check_previous_build(config: BuildConfig) -> None:
    if config.keep_base is not None:
        if not isinstance(config.origin, ImageOrigin):
            raise ConfigError("--keep-base needs an image origin (--from IMGREF)")
        if config.layer_format is Format.OSTREE:
            # The base's layers are rootfs tarballs; an ostree-format image
            # is one commit whose objects all live in its own layers.
            raise ConfigError(
                "--keep-base keeps the base's plain layers, and --format ostree writes "
                "the whole tree as one commit",
                hint="drop one of --keep-base and --format ostree",
            )
    if config.cache is not None and (not config.cache or os.path.isfile(config.cache)):
        raise ConfigError(f"--cache {config.cache!r}: give a directory (an OCI layout, created if missing)")
    given = (
        ("--prior", config.prior),
        ("--prior-plan", config.prior_plan),
        ("--previous-build-manifest", config.previous_build_manifest),
    )
    priors = [name for name, value in given if value is not None]
    if len(priors) > 1:
        raise ConfigError(f"{' and '.join(priors)}: give only one previous build")
    if priors and config.no_prior:
        raise ConfigError(f"--no-prior and {priors[0]}: give one or the other")


def _check_image(config: BuildConfig) -> None:
    for key in (*config.labels, *config.remove_labels):
        if not key or "=" in key:
            raise ConfigError(f"--label {key!r}: give KEY=VALUE, or KEY- to remove a label")
    if config.cmd is not None and not config.cmd:
        raise ConfigError("--cmd: give the command and its arguments")
    if config.epoch is not None and config.epoch < 0:
        raise ConfigError(f"SOURCE_DATE_EPOCH {config.epoch}: before 1970", hint="fix or unset it")
    for option, path in (
        ("--plan-json", config.plan_json),
        ("--write-contentmeta-json", config.write_contentmeta_json),
        ("--sbom", config.sbom),
    ):
        if path is not None:
            _check_output_file(option, path)


def _check_temporary(config: BuildConfig) -> None:
    for option, size in (("--tmp-reserve", config.tmp_reserve), ("--tmp-budget", config.tmp_budget)):
        if size is not None and size < 0:
            raise ConfigError(f"{option} {size}: give a number of bytes, 0 or more")
    path = config.tmpdir
    if path is None:
        return
    if not path or not os.path.isdir(path):
        raise ConfigError(f"--tmpdir {path!r}: no such directory", hint="create it or choose another")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"--tmpdir {path}: not writable", hint="choose a directory you can write")


def _check_signing(config: BuildConfig) -> None:
    if config.sign_by_sigstore is None:
        for option, value in (
            ("--sign-passphrase-file", config.sign_passphrase_file),
            ("--sign-identity", config.sign_identity),
        ):
            if value is not None:
                raise ConfigError(f"{option} needs --sign-by-sigstore KEY")
        return
    if not config.destination.registry:
        raise ConfigError(
            f"--sign-by-sigstore: {config.destination} is not a registry; signatures are stored in one",
            hint="push to registry:HOST/REPO[:TAG], or sign later with 'debchunk sign'",
        )


def _check_retry(config: BuildConfig) -> None:
    if config.retry_times is not None and not 0 <= config.retry_times <= 100:
        raise ConfigError(f"--retry-times {config.retry_times}: give 0 to 100")
    if config.retry_delay is not None and not 0 <= config.retry_delay <= 60:
        raise ConfigError(f"--retry-delay {config.retry_delay:g}: give 0 to 60 seconds")
    if config.registry_timeout is not None and not 0 < config.registry_timeout <= 3600:
        raise ConfigError(f"--registry-timeout {config.registry_timeout:g}: give more than 0, up to 3600")


_RULES = (
    _check_origin,
    _check_layers,
    _check_previous_build,
    _check_image,
    _check_temporary,
    _check_signing,
    _check_retry,
)


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
