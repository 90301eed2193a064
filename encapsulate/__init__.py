"""Stage 3: layers -> a reproducible OCI image.

In: a ``BuildConfig`` (an OSTree commit, a root tree or an existing image, a destination IMGREF,
the layer budget and the image's options).  Out: the image, written by
``build_image``, which maps the origin (stage 1), plans its layers (stage 2),
writes them and delivers the image.  Inside: ``oci`` (layouts, IMGREF,
reading images back), ``write`` (tar, plain and ostree layers, the image),
``tools`` (inspect, diff, validate, prior, report) and ``cli``.
"""

from mapping import DebchunkError

from .build import BuildResult, Comparison, build_image
from .config import (
    BuildConfig,
    CommitOrigin,
    Compression,
    Format,
    ImageOrigin,
    RootfsOrigin,
    epoch_from_environment,
)
from .errors import ConfigError, EncapsulateError
from .oci.imgref import ImageRef, RegistryOptions
from .oci.platform import Platform

__all__ = [
    "BuildConfig",
    "BuildResult",
    "CommitOrigin",
    "Comparison",
    "Compression",
    "ConfigError",
    "DebchunkError",
    "EncapsulateError",
    "Format",
    "ImageOrigin",
    "ImageRef",
    "Platform",
    "RegistryOptions",
    "RootfsOrigin",
    "build_image",
    "epoch_from_environment",
]
