"""Platforms: the one place an architecture name becomes OCI's.

In: an architecture named the Debian way (``armhf``, ``ppc64el``), the
kernel's way (``uname -m``: ``x86_64``, ``aarch64``) or OCI's (``amd64``).
Out: a ``Platform``, OCI's (architecture, variant) pair (image-spec
image-index.md "platform" and config.md "architecture": Go's GOARCH values,
with arm's variants ``v5``/``v7``), used to label an image and to choose
one image of an image index.
"""

from __future__ import annotations

import platform as _machine
from dataclasses import dataclass

# Debian and kernel names -> OCI (architecture, variant).  A name not here is
# taken to be OCI's own already.
_PLATFORMS: dict[str, tuple[str, str | None]] = {
    # Debian architectures.
    "amd64": ("amd64", None),
    "arm64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v5"),
    "i386": ("386", None),
    "ppc64el": ("ppc64le", None),
    "mips64el": ("mips64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    # Kernel machine names (uname -m).
    "x86_64": ("amd64", None),
    "aarch64": ("arm64", None),
    "armv7l": ("arm", "v7"),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
}


@dataclass(frozen=True)
class Platform:
    """An OCI platform's architecture and variant (the os is always linux here)."""

    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return f"linux/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    @classmethod
    def of(cls, name: str) -> Platform:
        """The platform an architecture name means, whichever way it is spelt."""
        architecture, variant = _PLATFORMS.get(name, (name, None))
        return cls(architecture, variant)

    @classmethod
    def host(cls) -> Platform:
        """This machine's platform (from ``uname -m``)."""
        return cls.of(_machine.machine())

    def matches(self, os: str | None, architecture: str | None, variant: str | None) -> bool:
        """Whether an image index entry's platform is this one: an entry that
        names no os counts as linux, and a variant missing on either side
        matches any."""
        return (
            os in (None, "linux")
            and architecture == self.architecture
            and (self.variant is None or variant is None or variant == self.variant)
        )


# The platform read from an image index unless another is asked for.
DEFAULT_PLATFORM = Platform("amd64")
