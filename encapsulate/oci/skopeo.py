"""skopeo, the one way to transports debchunk does not read or write itself.

In: ``ImageRef``s and their ``RegistryOptions`` (TLS verification, credentials).
Out: raw manifests and configs (``skopeo inspect``) and copies between
transports (``skopeo copy``), given the registry options (and
``--retry-times``, containers/image's own retries of transient faults).  A
missing skopeo, or a failing one, becomes one ``EncapsulateError`` line:
skopeo's ``level=fatal msg="..."`` reduced to its message.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

from ..errors import EncapsulateError
from .imgref import ImageRef, RegistryOptions
from .platform import Platform

# skopeo logs its last error as: time="..." level=fatal msg="what happened"
_FATAL = re.compile(r'level=fatal msg="(.*)"\s*$')


def registry_flags(ref: ImageRef, registry: RegistryOptions, side: str = "") -> list[str]:
    """skopeo's options for ``ref``: ``--tls-verify``, ``--authfile`` and ``--creds`` (with
    ``side`` ``src`` or ``dest``, ``--src-tls-verify`` and so on, as ``skopeo
    copy`` spells them).  None leaves skopeo's default; only registries take them."""
    if not ref.registry:
        return []
    prefix = f"--{side}-" if side else "--"
    flags = []
    if registry.tls_verify is not None:
        flags.append(f"{prefix}tls-verify={'true' if registry.tls_verify else 'false'}")
    if registry.authfile is not None:
        flags.append(f"{prefix}authfile={registry.authfile}")
    if registry.creds is not None:
        flags.append(f"{prefix}creds={registry.creds}")
    return flags


def retry_flags(*sides: tuple[ImageRef, RegistryOptions]) -> list[str]:
    """skopeo's ``--retry-times`` for a command reaching the registries of
    ``sides`` (the most any side's options ask); none without a registry."""
    times = [registry.retry.times for ref, registry in sides if ref.registry]
    return [f"--retry-times={max(times)}"] if times else []


_PLAIN_HTTP = "server gave HTTP response to HTTPS client"


def _reason(stderr: str, returncode: int) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    if not lines:
        return f"exit status {returncode}"
    match = _FATAL.search(lines[-1])
    return match.group(1).replace('\\"', '"') if match else lines[-1]


def run_skopeo(args: Sequence[str], where: ImageRef | str) -> bytes:
    """Run ``skopeo ARGS`` and return its stdout; an ``EncapsulateError``
    naming ``where`` when skopeo is missing or fails."""
    if shutil.which("skopeo") is None:
        raise EncapsulateError(
            f"{where}: this transport needs skopeo, which is not installed; install it "
            "(apt-get install skopeo) or use oci:DIR"
        )
    try:
        proc = subprocess.run(["skopeo", *args], capture_output=True, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise EncapsulateError(f"{where}: cannot run skopeo: {e.strerror}") from None
    if proc.returncode != 0:
        reason = _reason(proc.stderr.decode(errors="replace"), proc.returncode)
        # What Go's HTTP client says of a registry that speaks plain HTTP.
        hint = "give --tls-verify false for a plain-HTTP registry" if _PLAIN_HTTP in reason else None
        raise EncapsulateError(f"{where}: skopeo {args[0]} failed: {reason}", hint=hint)
    return proc.stdout


def skopeo_inspect(ref: ImageRef, registry: RegistryOptions, *, config: bool = False) -> bytes:
    """The manifest (or, with ``config``, the config) of ``ref``, as stored:
    the bytes its digest is of."""
    flags = registry_flags(ref, registry) + retry_flags((ref, registry))
    return run_skopeo(["inspect", *flags, "--raw", *(["--config"] if config else []), ref.skopeo], ref)


def skopeo_copy(
    source: ImageRef,
    destination: ImageRef,
    *,
    src: RegistryOptions,
    dest: RegistryOptions,
    platform: Platform | None = None,
) -> None:
    """Copy one image from ``source`` to ``destination``; ``platform`` chooses
    the image of a multi-platform source.  Errors name the side skopeo reaches
    through a transport debchunk does not handle itself."""
    args = ["copy", "--quiet"]
    if platform is not None:
        args.append(f"--override-arch={platform.architecture}")
        if platform.variant is not None:
            args.append(f"--override-variant={platform.variant}")
    args += registry_flags(source, src, "src")
    args += registry_flags(destination, dest, "dest")
    args += retry_flags((source, src), (destination, dest))
    run_skopeo([*args, source.skopeo, destination.skopeo], source if destination.direct else destination)
