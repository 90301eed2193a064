"""What the image says about itself: its config, built in one place.

In: the build's options, the ``--image-config`` file, the config of an image
origin, and the mapping (the commit's metadata, the tree's dpkg architecture,
its newest changelog date).  Out: an ``ImageDescription``: the image's time,
platform and labels and the runtime config it starts from; the writer turns
it into the OCI image config (``ImageDescription.config_document``) once the
layers' diff_ids and history are known.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mapping import Mapping

from .config import BuildConfig
from .errors import EncapsulateError
from .oci.labels import (
    BOOTC_LABEL,
    COMPONENTS_LABEL,
    CONTAINER_CMD_KEY,
    LAYERS_LABEL,
    OSTREE_COMMIT_LABEL,
    OSTREE_FINAL_DIFFID_LABEL,
    PLAN_LABEL,
)
from .oci.layout import read_json_object
from .oci.model import ImageConfig, check_schema
from .oci.platform import Platform

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
# The runtime settings a re-chunked image keeps (image-spec config.md, "config").
KEPT_SETTINGS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "StopSignal")
# Labels that describe the old image's layers, not its content: they would be
# wrong on the new one (the new build writes its own).
LAYER_LABELS = frozenset(
    (OSTREE_FINAL_DIFFID_LABEL, OSTREE_COMMIT_LABEL, PLAN_LABEL, COMPONENTS_LABEL, LAYERS_LABEL)
)
# The top-level keys of an image origin's config that the new image keeps.
_KEPT_TOP = ("variant", "os.version", "os.features", "author")


@dataclass(frozen=True)
class ImageDescription:
    """The image's time (``epoch``, seconds), its OCI platform, its labels and
    the OCI image config it starts from (``base``: runtime settings, author...)."""

    epoch: int
    platform: Platform
    labels: MappingABC[str, str] = field(default_factory=dict)
    base: MappingABC[str, Any] = field(default_factory=dict)

    @property
    def created(self) -> str:
        """The image's time as the config's ``created`` and history dates say it."""
        return dt.datetime.fromtimestamp(self.epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def index_platform(self) -> dict[str, str]:
        """The platform of the image's index entry."""
        variant = self.platform.variant
        return {
            "architecture": self.platform.architecture,
            "os": "linux",
            **({"variant": variant} if variant else {}),
        }

    def config_document(
        self, diff_ids: Sequence[str], history: Sequence[dict[str, Any]], layer_labels: MappingABC[str, str]
    ) -> dict[str, Any]:
        """The OCI image config: ``base`` under what debchunk sets (labels
        merged, the layers' own last)."""
        runtime = dict(self.base.get("config") or {})
        runtime["Labels"] = {**(runtime.get("Labels") or {}), **self.labels, **layer_labels}
        return {
            **{k: v for k, v in self.base.items() if k not in ("rootfs", "history", "config", "variant")},
            **({"variant": self.platform.variant} if self.platform.variant else {}),
            "architecture": self.platform.architecture,
            "os": "linux",
            "created": self.created,
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": list(history),
        }


def read_image_config_file(path: str) -> dict[str, Any]:
    """``--image-config``: a full OCI image config, or only its inner
    ``config`` object (then put in its place)."""
    document = read_json_object(path, "image config", "pass an OCI image config (JSON object)")
    top = set(document) & _IMAGE_CONFIG_TOP
    inner = set(document) & _RUNTIME_KEYS
    unknown = set(document) - _IMAGE_CONFIG_TOP - _RUNTIME_KEYS
    if top and inner:
        raise EncapsulateError(
            f"mixes top-level keys ({', '.join(sorted(top))}) with runtime keys ({', '.join(sorted(inner))})",
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
    # Checked as a whole config would be: what the file leaves out
    # (architecture, os, rootfs), debchunk fills in.
    filled = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    check_schema(
        "config",
        {**filled, **document},
        path,
        "give an OCI image config or its 'config' object, each field of the type config.md gives",
    )
    return document


def kept_config(source: ImageConfig, remove_labels: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the new image keeps of ``source`` (an image origin's config), as a
    full image config to build on: its runtime settings, its labels less
    those of the old layers, and its os variant."""
    runtime = source.runtime
    kept: dict[str, Any] = {k: runtime[k] for k in KEPT_SETTINGS if runtime.get(k) is not None}
    if "Labels" in runtime:
        kept["Labels"] = {
            k: v for k, v in source.labels.items() if k not in LAYER_LABELS and k not in remove_labels
        }
    document: dict[str, Any] = {"config": kept}
    for key in _KEPT_TOP:
        if source.document.get(key) is not None:
            document[key] = source.document[key]
    return document


def _over(base: MappingABC[str, Any], document: MappingABC[str, Any]) -> dict[str, Any]:
    """``document`` over ``base``: top-level keys replaced, runtime settings
    and labels merged key by key."""
    below = base.get("config") or {}
    above = document.get("config") or {}
    runtime = {**below, **above}
    labels = {**below.get("Labels", {}), **above.get("Labels", {})}
    if labels:
        runtime["Labels"] = labels
    return {**base, **document, "config": runtime}


def _commit_cmd(config: BuildConfig, mapping: Mapping) -> list[str] | None:
    """The commit's ``ostree.container-cmd`` metadata, unless ``--cmd`` was
    given: ostree-ext takes the commit's over the image config's and the
    command line's over both (``container/encapsulate.rs``, ``build_oci``)."""
    metadata = mapping.tree.metadata if mapping.tree is not None else {}
    cmd = metadata.get(CONTAINER_CMD_KEY)
    if config.cmd is not None or not cmd:
        return None
    if not (isinstance(cmd, list) and all(isinstance(a, str) for a in cmd)):
        raise EncapsulateError(
            f"the commit's {CONTAINER_CMD_KEY} metadata is not a list of strings",
            where=mapping.source,
            hint="commit it as an 'as' variant, or give --cmd",
        )
    return list(cmd)


def base_config(
    config: BuildConfig,
    mapping: Mapping,
    file: MappingABC[str, Any] | None,
    source: ImageConfig | None,
) -> dict[str, Any]:
    """The config the image starts from: an image origin's (``source``, what
    of it is kept), the ``--image-config`` document (``file``) over it, then
    the commit's command, then ``--cmd``."""
    document: dict[str, Any] = dict(file or {})
    if source is not None:
        document = _over(kept_config(source, config.remove_labels), document)
    cmd = config.cmd if config.cmd is not None else _commit_cmd(config, mapping)
    if cmd is not None:
        document = {**document, "config": {**(document.get("config") or {}), "Cmd": list(cmd)}}
    return document


def labels_asked(config: BuildConfig, mapping: Mapping) -> dict[str, str]:
    """The labels asked for, with the commit metadata keys copied
    (``copymeta``; ``copymeta_opt`` when present), less ``remove_labels``."""
    metadata = mapping.tree.metadata if mapping.tree is not None else {}
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


def config_created(source: ImageConfig | None) -> int | None:
    """An image origin's ``created`` as whole seconds since 1970, or None
    when it has none, it does not read as an RFC 3339 time with a zone, or it
    is before 1970 (Go's zero time, 0001-01-01, is what some builders leave)."""
    if source is None or not source.created:
        return None
    try:
        created = dt.datetime.fromisoformat(source.created)
    except ValueError:
        return None
    if created.tzinfo is None:
        return None
    seconds = math.floor(created.timestamp())
    return seconds if seconds >= 0 else None


def image_epoch(config: BuildConfig, mapping: Mapping, source: ImageConfig | None = None) -> int:
    """The image's time: ``SOURCE_DATE_EPOCH``, else the commit's timestamp,
    else the newest changelog date in the tree, else an image origin's
    ``created``; never the wall clock."""
    if config.epoch is not None:
        return config.epoch
    timestamp = mapping.tree.timestamp if mapping.tree is not None else None
    if timestamp is not None:
        return timestamp
    if mapping.reference_date is not None:
        return int(mapping.reference_date.timestamp())
    created = config_created(source)
    if created is not None:
        return created
    raise EncapsulateError(
        "no timestamp for the image: the tree has no Debian changelogs"
        + ("" if source is None else " and the source image's config no created time"),
        hint="set SOURCE_DATE_EPOCH",
    )


def image_platform(config: BuildConfig, mapping: Mapping, source: ImageConfig | None) -> Platform:
    """The image's platform: ``--arch``, else an image origin's own, else the
    tree's dpkg architecture, else this machine's.  bootc refuses an image
    whose architecture is not the machine's, so a commit of an arm64 tree must
    not be labelled amd64."""
    if config.platform is not None:
        return config.platform
    if source is not None and source.architecture:
        return Platform(source.architecture, source.variant or None)
    return Platform.of(mapping.architecture) if mapping.architecture else Platform.host()


def describe_image(
    config: BuildConfig,
    mapping: Mapping,
    file: MappingABC[str, Any] | None,
    source: ImageConfig | None,
) -> ImageDescription:
    """The image's description from the options, the ``--image-config``
    document (``file``), an image origin's config (``source``) and the mapping.
    Its config (as yet without layers) is checked against the schema here,
    before any layer is written: a label with an empty name fails now."""
    description = ImageDescription(
        image_epoch(config, mapping, source),
        image_platform(config, mapping, source),
        labels_asked(config, mapping),
        base_config(config, mapping, file, source),
    )
    check_schema(
        "config",
        description.config_document([], [], {}),
        "the new image's config",
        "change the option, --image-config field or source image that gives this field",
    )
    return description
