"""The pipeline: ``build_image(config)`` as named steps over one ``BuildContext``.

Open the previous build and the origin, map, plan, describe the image, write
it, deliver it, compare it with another build, write the side files.  Each
step takes the context, decides for itself whether it applies, and leaves
what it made there for the steps after it; ``build_image`` reads in one
screen.  The command line and compose tooling both call it; nothing else
strings the stages together.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from chunker import Plan, changes_per_year, pack
from mapping import Component, LayersOrigin, Mapping, Origin, above_base, build_mapping, read_tree
from mapping.space import SpaceAccount, SpaceLimits, accounted

from .config import DOCKER_LAYER_LIMIT, BuildConfig, Format, ImageOrigin, reference_date
from .describe import ImageDescription, describe_image, read_image_config_file
from .errors import ConfigError, EncapsulateError
from .keys import load_private_key
from .oci.deliver import DEFAULT_TAG, Destination
from .oci.layout import Layout, atomic_write, layout_state
from .oci.prior import image_layer_digests, plan_from_image, read_prior
from .oci.push import RegistryPush
from .oci.read import BlobStore, SourceImage, open_image
from .oci.reuse import ReachableLayers, image_records, layout_records
from .oci.sigstore import SignatureStore, Signer
from .progress import Progress, Step
from .rechunk import base_blobs_differ, commit_image, layers_origin, shared_base
from .sbom import attach_sbom, tree_sbom, write_sbom_file
from .tools.text import printable
from .write.image import BaseLayers, ImageResult, LayerSettings, fit_layers, write_image

log = logging.getLogger("debchunk.encapsulate")

# The names of the places layers are taken from (``ImageResult.taken``).
CACHE = "cache"
PRIOR = "prior"


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
    # The previous build, when no option gave one and the destination held it.
    prior_source: str | None = None
    # ``--sbom`` to a registry: the digest of the SBOM artifact's manifest attached to the image.
    sbom_artifact: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Digests and layers (``container-encapsulate --json``)."""
        out: dict[str, Any] = {"destination": str(self.config.destination), "plan": self.plan.to_json()}
        if self.prior_source is not None:
            out["prior_from_destination"] = self.prior_source
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
        if self.sbom_artifact is not None:
            out["sbom_artifact"] = self.sbom_artifact
        return out


@dataclass
class BuildContext:
    """What the steps of one build share: the config, and what each step made
    for the steps after it.  ``stack`` holds what stays open until the build
    ends (images read, the cache layout, temporary directories)."""

    config: BuildConfig
    stack: contextlib.ExitStack
    progress: Progress | None = None
    # The previous build's plan, and the layers the build can take.
    prior: Plan | None = None
    reachable: ReachableLayers = field(default_factory=ReachableLayers)
    cache: Layout | None = None
    # What is mapped: the origin as the mapping stage reads it, and an image origin opened.
    origin: Origin | None = None
    source: SourceImage | None = None
    # Where the build's temporary data goes (``open_workdir``); an image origin's layers.
    workdir: str | None = None
    layers: LayersOrigin | None = None
    image_config: dict[str, Any] | None = None
    # ``--keep-base``: the base's layers kept as they are, and the tree they hold.
    base: BaseLayers | None = None
    base_origin: LayersOrigin | None = None
    mapping: Mapping | None = None
    whiteouts: tuple[str, ...] = ()
    # The mapped entries a kept base holds as they are (``mapping.above_base``).
    kept: frozenset[int] = frozenset()
    plan: Plan | None = None
    description: ImageDescription | None = None
    image: ImageResult | None = None
    # Where the previous build's plan came from when no option gave it (the destination).
    prior_source: str | None = None
    # ``--compare-with-build``: that image's layer digests, read before anything is written.
    compared: frozenset[str] | None = None
    comparison: Comparison | None = None
    # ``--sbom``: the document, and the manifest digest of its artifact attached to the image.
    sbom: bytes | None = None
    sbom_artifact: str | None = None
    # ``--sign-by-sigstore``: the key, opened before anything is read or pushed.
    signer: Signer | None = None

    def notify(self, step: Step) -> None:
        """Tell the progress display how the build goes."""
        if self.progress is not None:
            self.progress(step)

    def result(self) -> BuildResult:
        """What the build made, once every step has run."""
        assert self.mapping is not None and self.plan is not None and self.description is not None
        return BuildResult(
            self.config,
            self.mapping,
            self.plan,
            self.description.epoch,
            self.image,
            self.comparison,
            self.prior_source,
            self.sbom_artifact,
        )


def build_image(config: BuildConfig, *, progress: Progress | None = None) -> BuildResult:
    """Encapsulate ``config.origin`` as a chunked image at ``config.destination``
    (see ``BuildConfig``).  ``progress`` is given a ``Step`` as the build goes
    (mapping, planning, writing, delivery).  Raises ``DebchunkError`` subclasses
    naming what is at fault; a failed or interrupted build leaves the
    destination as it was."""
    config.check()
    with contextlib.ExitStack() as stack:
        context = BuildContext(config, stack, progress, workdir=open_workdir(config, stack))
        check_destination(context)
        open_previous_build(context)
        open_origin(context)
        open_base(context)
        open_comparison(context)
        map_origin(context)
        plan_layers(context)
        describe(context)
        make_sbom(context)
        write_contentmeta(context)
        write_and_deliver(context)
        deliver_sbom(context)
        compare(context)
    return context.result()


# What the errors of a full work directory say to do (docs/limits.md).
TMPDIR_HINT = "free space there, or give --tmpdir DIR (or TMPDIR) a directory with room"
TMP_BUDGET_HINT = "raise --tmp-budget, if the image is one you expect to be this large"


def open_workdir(config: BuildConfig, stack: contextlib.ExitStack) -> str:
    """The build's work directory, removed when the build ends: under
    ``tmpdir`` (else TMPDIR, else /tmp), its temporary data metered against
    ``tmp_reserve`` and ``tmp_budget`` (``mapping.space``)."""
    parent = config.tmpdir or tempfile.gettempdir()
    try:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="debchunk-", dir=parent))
    except OSError as e:
        raise EncapsulateError(
            f"cannot make the work directory: {e.strerror}", where=parent, hint=TMPDIR_HINT
        ) from None
    limits = SpaceLimits(config.tmp_reserve, config.tmp_budget, TMPDIR_HINT, TMP_BUDGET_HINT)
    stack.enter_context(accounted(workdir, SpaceAccount(limits, parent)))
    return workdir


def open_signer(context: BuildContext) -> None:
    """``--sign-by-sigstore``: the private key read and opened with its
    passphrase now, so a wrong key or passphrase stops the build before any
    long step and before anything is pushed (on a dry run too)."""
    config = context.config
    if config.sign_by_sigstore is not None:
        key = load_private_key(config.sign_by_sigstore, config.sign_passphrase_file)
        context.signer = Signer(key, config.sign_identity)
        # A --sign-identity that is no reference is refused now, not after the push.
        context.signer.identity_for(config.destination)


def check_destination(context: BuildContext) -> None:
    """Before any long step, that the destination can take the image: a
    registry answers, with the TLS setting given, and lets the credentials
    push (``RegistryPush.check_push``); a layout's or archive's directory
    (or the nearest one above it that exists) takes a new file.  Not on a
    dry run.  The signing key is opened first (``open_signer``)."""
    open_signer(context)
    config = context.config
    ref = config.destination
    if config.dry_run:
        return
    if ref.registry:
        RegistryPush(ref, config.dest_registry).check_push()
        return
    if ref.transport not in ("oci", "oci-archive", "docker-archive"):
        return
    place = os.path.abspath(ref.location)
    if ref.transport != "oci" or not os.path.isdir(place):
        place = os.path.dirname(place)
    while not os.path.exists(place):
        place = os.path.dirname(place)
    try:
        fd, probe = tempfile.mkstemp(prefix=".debchunk-probe-", dir=place)
    except OSError as e:
        raise EncapsulateError(
            f"cannot write the image there: {e.strerror}",
            where=printable(place),
            hint="give a destination in a directory you can write to",
        ) from None
    os.close(fd)
    os.unlink(probe)


def open_previous_build(context: BuildContext) -> None:
    """The previous build's plan, and the places the build can take layers
    from besides the destination layout: the ``--cache`` layout's, then the
    ``--prior`` image's, in any transport (its blobs are read only when taken)."""
    config = context.config
    if config.max_layers > DOCKER_LAYER_LIMIT:
        log.warning(
            "--max-layers %d: Docker's overlay2 driver cannot pull images of more than %d layers",
            config.max_layers,
            DOCKER_LAYER_LIMIT,
        )
    if config.cache is not None:
        context.cache = context.stack.enter_context(Layout(config.cache))
        context.reachable.add(CACHE, context.cache, layout_records(context.cache))
    if config.prior is None:
        context.prior = read_prior(
            config.registry,
            plan_file=config.prior_plan,
            previous_build_manifest=config.previous_build_manifest,
        )
        if context.prior is None and not config.no_prior:
            open_destination_prior(context)
        return
    # Of an image index, the platform the origin is read for (--arch, else this machine's).
    image = context.stack.enter_context(
        open_image(
            config.prior,
            config.registry,
            blobs=False,
            platform=config.requested_platform,
            tmpdir=context.workdir,
        )
    )
    if image.store is not None:
        context.reachable.add(PRIOR, image.store, image_records(image.manifest, image.config))
    context.prior = plan_from_image(image.manifest, image.config, image.ref)


# What skopeo and the registry say of a tag or repository that is not there.
_ABSENT = ("manifest unknown", "name unknown", "not found", "no image tagged", "does not resolve")


def open_destination_prior(context: BuildContext) -> None:
    """Without a previous build given: the image the destination's tag holds
    now, if any, is the previous build (a rebuild into the same tag keeps its
    layers where that pays).  A tag that is not there, or an image that records
    no plan, leaves none; a destination that cannot be read is an error now,
    before any long step."""
    config = context.config
    ref = config.destination
    if ref.transport == "oci":
        state = layout_state(ref.location, ref.tag or DEFAULT_TAG)
        if state is None or state.entry is None:
            return
        ref = replace(ref, tag=ref.tag or DEFAULT_TAG)
    elif ref.transport == "oci-archive":
        if not os.path.isfile(ref.location):
            return
    elif ref.transport not in ("registry", "docker"):
        return
    try:
        image = context.stack.enter_context(
            open_image(
                ref,
                config.dest_registry,
                blobs=False,
                platform=config.requested_platform,
                tmpdir=context.workdir,
            )
        )
    except EncapsulateError as e:
        if any(word in str(e).lower() for word in _ABSENT):
            return
        raise
    try:
        context.prior = plan_from_image(image.manifest, image.config, image.ref)
    except EncapsulateError:
        log.info("%s holds an image that records no plan: planned from scratch", printable(str(ref)))
        return
    if image.store is not None:
        context.reachable.add(PRIOR, image.store, image_records(image.manifest, image.config))
    context.prior_source = str(ref)


def open_origin(context: BuildContext) -> None:
    """What the mapping stage reads: a commit or a root tree as given; an
    image origin opened (of a multi-platform image, the ``--arch`` platform,
    default this machine's), its blobs on this machine until the build ends,
    as its layers or (``--format ostree``) as a commit of its tree.  The
    ``--image-config`` file is read here, before any long step."""
    config = context.config
    if config.image_config is not None:
        context.image_config = read_image_config_file(config.image_config)
    if not isinstance(config.origin, ImageOrigin):
        context.origin = config.origin
        return
    workdir = context.workdir
    assert workdir is not None
    source = open_image(
        config.origin.imgref, config.registry, platform=config.requested_platform, tmpdir=workdir
    )
    context.source = context.stack.enter_context(source)
    context.layers = layers_origin(context.source, workdir)
    context.origin = context.layers
    if config.layer_format is Format.OSTREE:
        context.origin = commit_image(context.source, context.layers, workdir, config.epoch, config.threads)


def open_base(context: BuildContext) -> None:
    """``--keep-base``: the layers the image origin shares with the base, kept
    as they are, and the tree they hold (what the mapping leaves out)."""
    config, source, layers, workdir = context.config, context.source, context.layers, context.workdir
    if config.keep_base is None or source is None or layers is None or workdir is None:
        return
    with open_image(
        config.keep_base, config.registry, blobs=False, platform=config.requested_platform, tmpdir=workdir
    ) as base_image:
        differ = base_blobs_differ(source, base_image)
        if not differ:
            base = shared_base(source, base_image)
    if differ:
        # Other blobs than the source's (another compression or transport):
        # the base's own are read, kept open until the image is written.
        base_image = context.stack.enter_context(
            open_image(config.keep_base, config.registry, platform=config.requested_platform, tmpdir=workdir)
        )
        base = shared_base(source, base_image)
    count = len(base.descriptors)
    if config.max_layers - count < 2:
        raise ConfigError(
            f"--max-layers {config.max_layers}: the base keeps {count} layers, "
            "and what was added needs 2 more at least",
            hint=f"give --max-layers {count + 2} or more",
        )
    context.base = base
    context.base_origin = layers.below(count, os.path.join(workdir, "base"), str(config.keep_base))


def map_origin(context: BuildContext) -> None:
    """The origin mapped once, its packages split as the previous build split
    them; with a base, only what the layers above it add stays owned."""
    config = context.config
    assert context.origin is not None
    context.notify(Step("mapping"))
    names = None if context.prior is None else context.prior.layer_index().keys()
    mapping = build_mapping(
        context.origin, reference_date=reference_date(config.epoch), threads=config.threads, prior=names
    )
    entries = mapping.tree.entries if mapping.tree is not None else ()
    context.notify(Step("mapping", len(entries), len(entries), sum(e.size for e in entries), finished=True))
    if context.base_origin is not None and context.base is not None:
        above = above_base(mapping, read_tree(context.base_origin, config.threads))
        mapping, context.whiteouts, context.kept = above.mapping, above.whiteouts, above.kept
    context.mapping = mapping


def plan_layers(context: BuildContext) -> None:
    """The components packed into the layers left beside the base's, keeping
    the previous build's grouping where that pays."""
    assert context.mapping is not None
    budget = context.config.max_layers - (len(context.base.descriptors) if context.base else 0)
    context.notify(Step("planning"))
    context.plan = pack(context.mapping.components, budget, context.prior, gaps=context.config.update_gaps)
    layers = len(context.plan.layers)
    context.notify(Step("planning", layers, layers, finished=True))


def describe(context: BuildContext) -> None:
    """The image's time, platform, labels and the config it starts from."""
    assert context.mapping is not None
    source = None if context.source is None else context.source.config
    context.description = describe_image(context.config, context.mapping, context.image_config, source)


def make_sbom(context: BuildContext) -> None:
    """``--sbom``: the SBOM of the mapped tree's dpkg packages, dated as the
    image is, made before the image is written (a tree without a dpkg
    database stops the build here)."""
    config, mapping, description = context.config, context.mapping, context.description
    if config.sbom is None or mapping is None or mapping.tree is None or description is None:
        return
    context.sbom = tree_sbom(
        mapping.tree, description.epoch, mapping.source or str(config.origin), quiet=True
    )


def deliver_sbom(context: BuildContext) -> None:
    """``--sbom FILE``: the SBOM written to FILE and, once the image is in a
    registry, attached to it (``sbom.attach_sbom``) and, with a signing key,
    its artifact signed."""
    config, data, description = context.config, context.sbom, context.description
    if config.sbom is None or data is None or description is None:
        return
    write_sbom_file(config.sbom, data)
    if context.image is not None and config.destination.registry:
        context.sbom_artifact = attach_sbom(
            config.destination, config.dest_registry, context.image.manifest, data, description.epoch
        )
        if context.signer is not None:
            # Signed with the image's key, as the image's signature names it
            # (docs/signing.md, "The SBOM").
            context.signer.sign_pushed(
                SignatureStore(config.destination, config.dest_registry, push=True), context.sbom_artifact
            )


def contentmeta(components: Sequence[Component]) -> list[dict[str, Any]]:
    """The components as rpm-ostree's ``--write-contentmeta-json`` writes them:
    ostree-ext's ``ObjectSourceMetaSized`` (identifier, name, srcid,
    change_time_offset, change_frequency: expected changes per year, and the
    size of the component's content), one per component."""
    return [
        {
            "identifier": c.name,
            "name": c.name,
            "srcid": c.name,
            "change_time_offset": 0,
            "change_frequency": round(changes_per_year(c.change_probability)),
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


def write_contentmeta(context: BuildContext) -> None:
    """``--write-contentmeta-json``: the components, as rpm-ostree writes them."""
    path = context.config.write_contentmeta_json
    if path is not None and context.mapping is not None:
        write_json_file(path, contentmeta(context.mapping.components), "content metadata")


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
    # Tagged by digest as cosign names its attachments: ALGORITHM-HEX.
    cache.tag(image.manifest, f"{image.manifest.digest.algorithm}-{image.manifest.digest.hex}")


def write_and_deliver(context: BuildContext) -> None:
    """The image written (taking the layers it can reach), put into the
    ``--cache`` layout, and delivered to the destination; not on a dry run."""
    config = context.config
    if config.dry_run:
        return
    assert context.mapping is not None and context.plan is not None and context.description is not None
    settings = LayerSettings(
        config.layer_format, config.format_version, config.compression, config.level, config.threads
    )
    layers = fit_layers(
        context.mapping, context.plan, settings, context.description.epoch, context.whiteouts, context.kept
    )
    # ``--plan-json`` is written first and put in place once the image is
    # delivered: a failure at either leaves both as they were.
    plan_json = None if config.plan_json is None else layers.plan.to_json()
    with (
        staged_json(config.plan_json, plan_json, "plan"),
        Destination(config.destination, config.dest_registry, context.workdir, context.signer) as destination,
    ):
        places = context.reachable.lending(destination.lender)
        image = write_image(
            layers,
            destination.target,
            context.description,
            settings,
            base=context.base,
            reachable=places,
            progress=context.progress,
        )
        if context.cache is not None:
            fill_cache(context.cache, destination.target.path, image, places.lent)
        if destination.copies:
            context.notify(Step("delivery"))
        destination.deliver(places.lent)
        if destination.copies:
            context.notify(Step("delivery", finished=True))
    context.image, context.plan = image, layers.plan


def open_comparison(context: BuildContext) -> None:
    """``--compare-with-build``: that image's layer digests, read before
    anything is written (a failure to read it leaves the destination as it
    was, and the image there may be the one this build replaces)."""
    imgref = context.config.compare_with_build
    if imgref is not None and not context.config.dry_run:
        context.compared = frozenset(
            image_layer_digests(imgref, context.config.registry, context.config.requested_platform)
        )


def compare(context: BuildContext) -> None:
    """``--compare-with-build``: which layers a client holding that image downloads."""
    imgref, image, have = context.config.compare_with_build, context.image, context.compared
    if imgref is None or image is None or have is None:
        return
    fresh = [b for b in image.layers if b.descriptor.digest not in have]
    context.comparison = Comparison(
        str(imgref),
        len(image.layers) - len(fresh),
        len(image.layers),
        sum(b.descriptor.size for b in fresh),
        sum(b.descriptor.size for b in image.layers),
    )


@contextlib.contextmanager
def staged_json(path: str | None, value: Any, what: str) -> Iterator[None]:
    """``value`` as JSON at ``path`` (when given): written beside it now, a
    failure to write it an ``EncapsulateError``; renamed over it when the
    block ends without an error, else removed, ``path`` left as it was."""
    if path is None:
        yield
        return
    staged = None
    try:
        fd, staged = tempfile.mkstemp(
            prefix=".tmp-debchunk-", suffix=".json", dir=os.path.dirname(os.path.abspath(path))
        )
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(value, indent=1).encode() + b"\n")
        os.chmod(staged, 0o644)
    except OSError as e:
        if staged is not None:
            with contextlib.suppress(OSError):
                os.unlink(staged)
        raise EncapsulateError(f"cannot write the {what}: {e.strerror}", where=path) from None
    try:
        yield
        try:
            os.replace(staged, path)
        except OSError as e:
            raise EncapsulateError(f"cannot write the {what}: {e.strerror}", where=path) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(staged)
