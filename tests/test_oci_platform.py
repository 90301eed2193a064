"""Platforms (``encapsulate.oci.platform``): one table from Debian's, the
kernel's and OCI's architecture names to OCI's (architecture, variant)."""

from __future__ import annotations

import platform

import pytest

from encapsulate.oci.platform import DEFAULT_PLATFORM, Platform


@pytest.mark.parametrize(
    ("name", "architecture", "variant"),
    [
        # Debian's names.
        ("amd64", "amd64", None),
        ("arm64", "arm64", None),
        ("armhf", "arm", "v7"),
        ("armel", "arm", "v5"),
        ("i386", "386", None),
        ("ppc64el", "ppc64le", None),
        ("mips64el", "mips64le", None),
        # The kernel's (uname -m).
        ("x86_64", "amd64", None),
        ("aarch64", "arm64", None),
        ("armv7l", "arm", "v7"),
        ("i686", "386", None),
        # OCI's own, and names the table does not know, kept.
        ("ppc64le", "ppc64le", None),
        ("s390x", "s390x", None),
        ("loong64", "loong64", None),
    ],
)
def test_of(name: str, architecture: str, variant: str | None) -> None:
    assert Platform.of(name) == Platform(architecture, variant)


def test_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert Platform.host() == Platform("arm64")
    monkeypatch.setattr(platform, "machine", lambda: "armv7l")
    assert Platform.host() == Platform("arm", "v7")


def test_matches_and_names() -> None:
    assert Platform("amd64") == DEFAULT_PLATFORM and str(DEFAULT_PLATFORM) == "linux/amd64"
    assert str(Platform("arm", "v7")) == "linux/arm/v7"
    arm7 = Platform("arm", "v7")
    assert arm7.matches("linux", "arm", "v7") and arm7.matches(None, "arm", None)
    assert not arm7.matches("linux", "arm", "v6")
    assert not arm7.matches("windows", "arm", "v7")
    assert Platform("arm").matches("linux", "arm", "v6")
    assert not Platform("amd64").matches("linux", "arm64", None)
