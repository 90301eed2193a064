"""The pipeline: ``build_image(config)`` reads the origin and the previous
build, maps, plans, collects labels, writes and delivers the image.

Each step is a function of the config and what earlier steps made, so the
whole pipeline reads in one screen (``build_image``).  The command line and
compose tooling both call it; nothing else strings the stages together.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from chunker import ChunkerError, Plan, pack
from mapping import Component, Mapping, build_mapping, map_tree, read_tree

from .config import (
    DOCKER_LAYER_LIMIT,
    BuildConfig,
    CommitOrigin,
    Format,
    ImageOrigin,
    Origin,
)
from .errors import ConfigError, EncapsulateError
from .oci.deliver import deliver
from .oci.imgref import RegistryOptions, parse_imgref
from .oci.labels import BOOTC_LABEL, CONTAINER_CMD_KEY, OCI_VERSION_LABEL, VERSION_LABEL
from .oci.layout import Layout, atomic_write, read_json_object
from .oci.platform import Platform
from .oci.prior import image_layer_digests, plan_from_image, prior_from_manifest_file
from .oci.prior import prior_plan as prior_plan_of
from .oci.read import BlobStore, SourceImage, open_image
from .oci.reuse import Lender, ReachableLayers, image_records, layout_records
from .progress import Progress, Step
from .rechunk import above_base, kept_config, layer_archives, shared_base, source_architecture
from .write.image import BaseLayers, ImageResult, write_image

log = logging.getLogger("debchunk.encapsulate")

# The names of the places layers are taken from (``ImageResult.taken``).
CACHE = "cache"
PRIOR = "prior"

# Keys of a full OCI image config (image-spec, config.md "Properties"); a
# file holding none of them is the inner ``config`` object, as rpm-ostree's
# and ostree-ext's --image-config take it.
_IMAGE_CONFIG_TOP = frozenset(
    (
        "created",
        "author",
        "architecture",
        "os",
        "os.version",
        "os.features",
        "variant",
        "config",
        "rootfs",
        "history",
    )
)
# Keys of the inner object (image-spec, config.md "config").
_RUNTIME_KEYS = frozenset(
    (
        "User",
        "ExposedPorts",
        "Env",
        "Entrypoint",
        "Cmd",
        "Volumes",
        "WorkingDir",
        "Labels",
        "StopSignal",
        "ArgsEscaped",
        "Memory",
        "MemorySwap",
        "CpuShares",
        "Healthcheck",
        "OnBuild",
        "Shell",
    )
)


@dataclass(frozen=True)
class Comparison:
    """What a client holding another image downloads for the new one (``--compare-with-build``)."""

    imgref: str
    reused_layers: int
    layers: int
    download_bytes: int
    total_bytes: int

    def to_json(self) -> dict[str, Any]:
        """The comparison as JSON."""
        return asdict(self)


@dataclass(frozen=True)
class BuildResult:
    """What a build made: the mapping and plan, and (unless a dry run) the
    image written to ``destination`` and its comparison with another build."""

    config: BuildConfig
    mapping: Mapping
    plan: Plan
    epoch: int
    image: ImageResult | None
    comparison: Comparison | None = None

    def to_json(self) -> dict[str, Any]:
        """Digests and layers (``container-encapsulate --json``)."""
        out: dict[str, Any] = {"destination": self.config.destination, "plan": self.plan.to_json()}
        if self.image is not None:
            out["manifest"] = self.image.manifest.digest
            out["config"] = self.image.config.digest
            out["layers"] = [
                {
                    "digest": b.descriptor.digest,
                    "size": b.descriptor.size,
                    "diff_id": b.diff_id,
                    "uncompressed_size": b.tar_size,
                    "components": list(c),
                    "reused": b.reused,
                    "taken_from": t,
                }
                for b, c, t in zip(
                    self.image.layers, self.image.layer_components, self.image.taken, strict=True
                )
            ]
        if self.comparison is not None:
            out["comparison"] = self.comparison.to_json()
        return out


def read_prior(
    *,
    prior: str | None = None,
    prior_plan: str | None = None,
    previous_build_manifest: str | None = None,
    tls_verify: bool | None = None,
) -> Plan | None:
    """The previous build's plan: from a plan file (``prior_plan``), an image
    (``prior``, an IMGREF) or a raw OCI manifest file; None without one."""
    if prior_plan is not None:
        data = read_json_object(prior_plan, "plan", "pass the output of 'debchunk plan --json'")
        try:
            return Plan.from_json(data)
        except ChunkerError as e:
            raise ChunkerError(f"{prior_plan}: {e}") from None
    if prior is not None:
        return prior_plan_of(prior, RegistryOptions(tls_verify=tls_verify))
    if previous_build_manifest is not None:
        return prior_from_manifest_file(previous_build_manifest)
    return None


def read_image_config(config: BuildConfig, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The image config to build on: ``base`` (what an image origin's config
    passes on), then the ``image_config`` file as a full OCI image config (an
    inner ``config`` object is put in its place) over it, then ``cmd``."""
    document: dict[str, Any] = {}
    if config.image_config is not None:
        path = config.image_config
        document = read_json_object(path, "image config", "pass an OCI image config (JSON object)")
        top = set(document) & _IMAGE_CONFIG_TOP
        inner = set(document) & _RUNTIME_KEYS
        unknown = set(document) - _IMAGE_CONFIG_TOP - _RUNTIME_KEYS
        if top and inner:
            raise EncapsulateError(
                f"mixes top-level keys ({', '.join(sorted(top))}) "
                f"with runtime keys ({', '.join(sorted(inner))})",
                where=path,
                hint="give a full image config, or only its inner 'config' object",
            )
        if unknown:
            raise EncapsulateError(
                f"unknown key {sorted(unknown)[0]!r}",
                where=path,
                hint="give an OCI image config or its 'config' object (Env, Cmd, Labels, ...)",
            )
        if not top:
            document = {"config": document}
        if not isinstance(document.get("config", {}), dict):
            raise EncapsulateError("'config' is not an object", where=path)
    if base is not None:
        runtime = {**(base.get("config") or {}), **(document.get("config") or {})}
        labels = {
            **(base.get("config") or {}).get("Labels", {}),
            **(document.get("config") or {}).get("Labels", {}),
        }
        if labels:
            runtime["Labels"] = labels
        document = {**base, **document, "config": runtime}
    if config.cmd is not None:
        document = {**document, "config": {**(document.get("config") or {}), "Cmd": list(config.cmd)}}
    return document


def with_commit_cmd(document: dict[str, Any], config: BuildConfig, mapping: Mapping) -> dict[str, Any]:
    """The image config with the commit's ``ostree.container-cmd`` metadata
    as its ``Cmd``, unless ``--cmd`` was given: ostree-ext takes the commit's
    over the image config's and the command line's over both
    (``container/encapsulate.rs``, ``build_oci``)."""
    metadata = getattr(mapping.tree, "metadata", None) or {}
    cmd = metadata.get(CONTAINER_CMD_KEY)
    if config.cmd is not None or not cmd:
        return document
    if not (isinstance(cmd, list) and all(isinstance(a, str) for a in cmd)):
        raise EncapsulateError(
            f"the commit's {CONTAINER_CMD_KEY} metadata is not a list of strings",
            where=mapping.source,
            hint="commit it as an 'as' variant, or give --cmd",
        )
    return {**document, "config": {**(document.get("config") or {}), "Cmd": list(cmd)}}


def map_origin(
    origin: Origin,
    *,
    epoch: int | None = None,
    prior: Plan | None = None,
    threads: int | None = None,
    image: SourceImage | None = None,
    workdir: str | None = None,
) -> Mapping:
    """The origin mapped, its packages split as the plan will see them (as the
    previous build split them, when there is one).  ``epoch``
    (``SOURCE_DATE_EPOCH``) pins the date change probabilities are computed at.
    An ``ImageOrigin`` is read from ``image`` (opened by ``open_origin_image``),
    its layers spooled under ``workdir``."""
    reference = None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)
    names = None if prior is None else prior.layer_index().keys()
    if isinstance(origin, ImageOrigin):
        if image is None or workdir is None:
            raise EncapsulateError("an image origin is read from an opened image", where=origin.imgref)
        return build_mapping(
            layers=layer_archives(image),
            workdir=workdir,
            description=origin.imgref,
            reference_date=reference,
            threads=threads,
            prior=names,
        )
    if isinstance(origin, CommitOrigin):
        return build_mapping(
            repo=origin.repo, ref=origin.ref, reference_date=reference, threads=threads, prior=names
        )
    return build_mapping(rootfs=origin.path, reference_date=reference, threads=threads, prior=names)


# The branch the commit of an image origin is on, in its scratch repository.
IMAGE_REF = "debchunk/image"
# The commit's metadata keys taken from the image's labels (``ostree.commit``'s
# ``version`` is what ``bootc status`` and rpm-ostree show).
_VERSION_LABELS = (OCI_VERSION_LABEL, VERSION_LABEL)


def commit_image(config: BuildConfig, image: SourceImage, workdir: str) -> CommitOrigin:
    """``--from IMGREF --format ostree``: the image's flattened tree laid out
    as an OSTree image builder lays a tree out (``ostree_layout``) and
    committed to a scratch repository under ``workdir``, which the build then
    reads as it reads any commit.  The commit's time is the build's epoch
    (``SOURCE_DATE_EPOCH``, else the newest changelog date in the tree, as for
    any image origin), so the same image gives the same commit."""
    # Only this step and the ostree writer need libostree (gi).
    from .write.ostree_commit import commit_tree, ostree_layout

    assert isinstance(config.origin, ImageOrigin)
    tree = read_tree(
        layers=layer_archives(image),
        workdir=os.path.join(workdir, "layers"),
        description=config.origin.imgref,
        threads=config.threads,
    )
    laid_out = ostree_layout(tree)
    timestamp = config.epoch
    if timestamp is None:
        # The date comes from the mapping of the same tree; its warnings are
        # given once, by the mapping of the commit that follows.
        with _quiet(logging.getLogger("debchunk.mapping")):
            reference = map_tree(laid_out).reference_date
        if reference is None:
            raise EncapsulateError(
                "no timestamp for the commit: the tree has no changelogs",
                where=config.origin.imgref,
                hint="set SOURCE_DATE_EPOCH",
            )
        timestamp = int(reference.timestamp())
    labels = image.config.labels
    version = next((labels[k] for k in _VERSION_LABELS if labels.get(k)), None)
    repo = os.path.join(workdir, "ostree")
    commit_tree(
        laid_out,
        repo,
        IMAGE_REF,
        timestamp=timestamp,
        metadata={} if version is None else {VERSION_LABEL: version},
        threads=config.threads,
    )
    return CommitOrigin(repo, IMAGE_REF)


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """``logger`` says nothing inside the block."""
    disabled = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = disabled


def image_epoch(config: BuildConfig, mapping: Mapping) -> int:
    """The image's time: ``SOURCE_DATE_EPOCH``, else the commit's timestamp,
    else the newest changelog date in the tree; never the wall clock."""
    if config.epoch is not None:
        return config.epoch
    timestamp = getattr(mapping.tree, "timestamp", None)
    if isinstance(timestamp, int):
        return timestamp
    if mapping.reference_date is not None:
        return int(mapping.reference_date.timestamp())
    raise EncapsulateError(
        "no timestamp for the image: the tree has no changelogs", hint="set SOURCE_DATE_EPOCH"
    )


def tree_architecture(mapping: Mapping) -> str | None:
    """The tree's native architecture as dpkg records it: ``arch-native`` in
    its admindir (dpkg 1.21+), else the first line of ``arch``, else the
    architecture of the installed ``dpkg`` package (always native)."""
    tree, admindir = mapping.tree, mapping.admindir
    if tree is None or admindir is None:
        return None
    for name in ("arch-native", "arch"):
        data = tree.read_bytes(f"{admindir}/{name}", 4096)
        first = (data or b"").decode("ascii", "replace").strip().split("\n")[0].strip()
        if first:
            return first
    status = tree.read_bytes(f"{admindir}/status") or b""
    for paragraph in status.decode("utf-8", "replace").split("\n\n"):
        fields = dict(
            line.split(":", 1) for line in paragraph.splitlines() if ":" in line and not line.startswith(" ")
        )
        if fields.get("Package", "").strip() == "dpkg" and fields.get("Architecture", "").strip():
            return fields["Architecture"].strip()
    return None


def image_architecture(
    config: BuildConfig, mapping: Mapping, source_config: dict[str, Any] | None
) -> tuple[str, str | None]:
    """The image's OCI (architecture, variant): ``--arch``, else an image
    origin's own, else the tree's dpkg architecture, else this machine's.
    bootc refuses an image whose architecture is not the machine's, so a
    commit of an arm64 tree must not be labelled amd64."""
    if config.arch:
        platform = Platform.of(config.arch)
        return platform.architecture, platform.variant
    own = None if source_config is None else source_architecture(source_config)
    if own is not None:
        variant = source_config.get("variant") if source_config is not None else None
        return own, variant if isinstance(variant, str) and variant else None
    platform = Platform.of(tree_architecture(mapping) or Platform.host().architecture)
    return platform.architecture, platform.variant


def collect_labels(config: BuildConfig, mapping: Mapping) -> dict[str, str]:
    """The labels asked for, with the commit metadata keys copied
    (``copymeta``; ``copymeta_opt`` when present), less ``remove_labels``."""
    metadata = getattr(mapping.tree, "metadata", None) or {}
    labels = dict(config.labels)
    for key in (*config.copymeta, *config.copymeta_opt):
        if key not in metadata:
            if key in config.copymeta:
                raise EncapsulateError(
                    f"--copymeta {key}: the commit has no such metadata key",
                    hint="use --copymeta-opt to make it optional",
                )
            continue
        value = metadata[key]
        labels[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if config.bootc:
        # bootc's own label for an image it can boot (bootc's docs, "bootc images").
        labels[BOOTC_LABEL] = "1"
    for key in config.remove_labels:
        labels.pop(key, None)
    return labels


def contentmeta(components: Sequence[Component]) -> list[dict[str, Any]]:
    """The components as rpm-ostree's ``--write-contentmeta-json`` writes them:
    ostree-ext's ``ObjectSourceMetaSized`` (identifier, name, srcid,
    change_time_offset, change_frequency, and the size of the component's
    content), one per component."""
    return [
        {
            "identifier": c.name,
            "name": c.name,
            "srcid": c.name,
            "change_time_offset": 0,
            # Expected changes per year, from the weekly probability.
            "change_frequency": round(-52.0 * math.log1p(-min(c.change_probability, 0.999999))),
            "size": c.size,
        }
        for c in sorted(components, key=lambda c: c.name)
    ]


def write_json_file(path: str, value: Any, what: str) -> None:
    """``value`` as JSON at ``path``, replaced whole or not at all."""
    try:
        with atomic_write(path, ".tmp-debchunk-", ".json") as f:
            f.write(json.dumps(value, indent=1).encode() + b"\n")
    except OSError as e:
        raise EncapsulateError(f"cannot write the {what}: {e.strerror}", where=path) from None


def compare_with(imgref: str, image: ImageResult, tls_verify: bool | None = None) -> Comparison:
    """Which layers a client holding ``imgref`` would download for ``image``."""
    have = set(image_layer_digests(imgref, RegistryOptions(tls_verify=tls_verify)))
    fresh = [b for b in image.layers if b.descriptor.digest not in have]
    return Comparison(
        imgref,
        len(image.layers) - len(fresh),
        len(image.layers),
        sum(b.descriptor.size for b in fresh),
        sum(b.descriptor.size for b in image.layers),
    )


def _notify(progress: Progress | None, step: Step) -> None:
    if progress is not None:
        progress(step)


def fill_cache(
    cache: Layout, layout_path: str, image: ImageResult, lent: dict[str, BlobStore] | None = None
) -> None:
    """Put the image (its layers, config and manifest) into the ``--cache``
    layout, tagged by its manifest digest, so later builds can take its
    layers; a blob ``lent`` is read from its store.  A blob just taken from
    the cache was checked as it was read, and is not hashed again."""
    written = Layout(layout_path, create=False)
    for blob, taken in zip(image.layers, image.taken, strict=True):
        if taken == CACHE:
            cache.verified(blob.descriptor)
    for d in (*(b.descriptor for b in image.layers), image.config, image.manifest):
        if cache.has_blob(d):
            continue
        store: BlobStore = (lent or {}).get(d.digest) or written
        with store.open_blob(d.digest) as f:
            cache.import_blob(f, d)
    cache.tag(image.manifest, "sha256-" + image.manifest.digest.removeprefix("sha256:"))


def write_and_deliver(
    config: BuildConfig,
    mapping: Mapping,
    plan: Plan,
    epoch: int,
    labels: dict[str, str],
    image_config: dict[str, Any],
    architecture: tuple[str, str | None],
    progress: Progress | None,
    base: BaseLayers | None = None,
    whiteouts: Sequence[str] = (),
    reachable: ReachableLayers | None = None,
    cache: Layout | None = None,
) -> ImageResult:
    """Write the image into an OCI layout (taking the ``reachable`` layers),
    put it into the ``cache`` layout, and put it at ``config.destination``."""
    written: list[ImageResult] = []
    destination = parse_imgref(config.destination)

    def write(layout_path: str, tag: str, lender: Lender | None) -> dict[str, BlobStore]:
        places = None if reachable is None else reachable.lending(lender)
        image = write_image(
            mapping,
            plan,
            layout_path,
            tag,
            epoch=epoch,
            labels=labels,
            architecture=architecture[0],
            variant=architecture[1],
            compression=config.compression,
            compression_level=config.level,
            layer_format=config.layer_format,
            format_version=config.format_version,
            threads=config.threads,
            image_config=image_config,
            progress=progress,
            base=base,
            whiteouts=whiteouts,
            reachable=places,
        )
        written.append(image)
        lent = {} if places is None else places.lent
        if cache is not None:
            fill_cache(cache, layout_path, image, lent)
        if destination.transport != "oci":
            _notify(progress, Step("delivery"))
        return lent

    deliver(destination, write, authfile=config.authfile, tls_verify=config.dest_tls_verify)
    if destination.transport != "oci":
        _notify(progress, Step("delivery", finished=True))
    return written[0]


def reachable_layers(
    config: BuildConfig, stack: contextlib.ExitStack
) -> tuple[Plan | None, ReachableLayers, Layout | None]:
    """The previous build's plan, the layers the build can take besides
    those in the destination layout (the ``--cache`` layout's, then the
    ``--prior`` image's, in any transport: its blobs are read only when
    taken), and the cache layout, open for writing until ``stack`` closes."""
    reachable = ReachableLayers()
    cache = None
    if config.cache is not None:
        cache = stack.enter_context(Layout(config.cache))
        reachable.add(CACHE, cache, layout_records(cache))
    if config.prior is None:
        prior = read_prior(
            prior_plan=config.prior_plan,
            previous_build_manifest=config.previous_build_manifest,
        )
        return prior, reachable, cache
    image = stack.enter_context(
        open_image(config.prior, RegistryOptions(config.authfile, config.tls_verify), blobs=False)
    )
    if image.store is not None:
        reachable.add(PRIOR, image.store, image_records(image.manifest, image.config))
    return plan_from_image(image.manifest, image.config, image.ref), reachable, cache


def build_image(config: BuildConfig, *, progress: Progress | None = None) -> BuildResult:
    """Encapsulate ``config.origin`` as a chunked image at ``config.destination``
    (see ``BuildConfig``).  ``progress`` is given a ``Step`` as the build goes
    (mapping, planning, writing, delivery).  Raises ``DebchunkError`` subclasses naming what is at fault; a
    failed or interrupted build leaves the destination as it was."""
    config.check()
    if config.max_layers > DOCKER_LAYER_LIMIT:
        log.warning(
            "--max-layers %d: Docker's overlay2 driver cannot pull images of more than %d layers",
            config.max_layers,
            DOCKER_LAYER_LIMIT,
        )
    with contextlib.ExitStack() as stack:
        prior, reachable, cache = reachable_layers(config, stack)
        source = open_origin_image(config, stack)
        image_config = read_image_config(
            config, None if source is None else kept_config(source.config.document, config.remove_labels)
        )
        workdir = None if source is None else stack.enter_context(_workdir())
        origin = config.origin
        if source is not None and workdir is not None and config.layer_format is Format.OSTREE:
            origin = commit_image(config, source, workdir)
        _notify(progress, Step("mapping"))
        mapping = map_origin(
            origin,
            epoch=config.epoch,
            prior=prior,
            threads=config.threads,
            image=source,
            workdir=workdir,
        )
        _notify(progress, mapped(mapping))
        labels = collect_labels(config, mapping)
        image_config = with_commit_cmd(image_config, config, mapping)
        epoch = image_epoch(config, mapping)
        arch = image_architecture(config, mapping, None if source is None else source.config.document)
        base: BaseLayers | None = None
        whiteouts: list[str] = []
        budget = config.max_layers
        if config.keep_base is not None and source is not None and workdir is not None:
            base, mapping, whiteouts = keep_base_layers(config, source, mapping, workdir)
            budget = config.max_layers - len(base.descriptors)
        _notify(progress, Step("planning"))
        plan = pack(mapping.components, budget, prior)
        _notify(progress, Step("planning", len(plan.layers), len(plan.layers), finished=True))
        if config.write_contentmeta_json is not None:
            write_json_file(
                config.write_contentmeta_json, contentmeta(mapping.components), "content metadata"
            )
        if config.dry_run:
            return BuildResult(config, mapping, plan, epoch, None)
        image = write_and_deliver(
            config,
            mapping,
            plan,
            epoch,
            labels,
            image_config,
            arch,
            progress,
            base,
            whiteouts,
            reachable,
            cache,
        )
        plan = image.plan or plan
    comparison = (
        None
        if config.compare_with_build is None
        else compare_with(config.compare_with_build, image, config.tls_verify)
    )
    if config.plan_json is not None:
        write_json_file(config.plan_json, plan.to_json(), "plan")
    return BuildResult(config, mapping, plan, epoch, image, comparison)


def mapped(mapping: Mapping) -> Step:
    """The finished mapping step: entries read and the bytes of their content."""
    entries = mapping.tree.entries if mapping.tree is not None else ()
    return Step("mapping", len(entries), len(entries), sum(e.size for e in entries), finished=True)


def keep_base_layers(
    config: BuildConfig, image: SourceImage, mapping: Mapping, workdir: str
) -> tuple[BaseLayers, Mapping, list[str]]:
    """``--keep-base``: the layers ``image`` shares with the base, kept as they
    are; the mapping of what the layers above them add (the rest of the tree
    is in the base); and the base paths they remove, as whiteouts."""
    assert config.keep_base is not None
    with open_image(
        config.keep_base,
        RegistryOptions(tls_verify=config.tls_verify),
        blobs=False,
        platform=Platform.of(config.arch) if config.arch else Platform.host(),
    ) as base_image:
        base = shared_base(image, base_image)
    room = config.max_layers - len(base.descriptors)
    if room < 2:
        raise ConfigError(
            f"--max-layers {config.max_layers}: the base keeps {len(base.descriptors)} layers, "
            "and what was added needs 2 more at least",
            hint=f"give --max-layers {len(base.descriptors) + 2} or more",
        )
    archives = layer_archives(image)[: len(base.descriptors)]
    base_tree = read_tree(
        layers=archives,
        workdir=os.path.join(workdir, "base"),
        description=config.keep_base,
        threads=config.threads,
    )
    above, whiteouts = above_base(mapping, base_tree)
    return base, above, whiteouts


def open_origin_image(config: BuildConfig, stack: contextlib.ExitStack) -> SourceImage | None:
    """The image of an ``ImageOrigin``, its blobs on this machine until
    ``stack`` closes (None for other origins).  Of a multi-platform image, the
    ``arch`` platform is read (default: this machine's)."""
    if not isinstance(config.origin, ImageOrigin):
        return None
    platform = Platform.of(config.arch) if config.arch else Platform.host()
    return stack.enter_context(
        open_image(config.origin.imgref, RegistryOptions(tls_verify=config.tls_verify), platform=platform)
    )


@contextlib.contextmanager
def _workdir() -> Iterator[str]:
    """A temporary directory for the spooled layers of an image origin."""
    with tempfile.TemporaryDirectory(prefix="debchunk-layers-") as path:
        yield path
