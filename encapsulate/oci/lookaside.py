"""GPG "simple signing" signatures in a lookaside store, for clients whose
containers/image has sigstore disabled (Debian 12's podman and skopeo).

In: a registry image, a GPG key (its fingerprint, in the user's keyring) and
a lookaside directory.  Out: the signature file where containers/image looks
for it: ``DIR/REPO@ALGORITHM=HEX/signature-N`` (REPO the repository's path
without the host; N the first number free, so signatures already there stay),
from containers/image ``docker/registries_d.go`` (``lookasideStorageURL``,
the repository path appended to the configured base).  The directory is
what ``registries.d``'s ``lookaside-staging:`` names on the signing side; a
web server publishes it, and clients name that address as ``lookaside:``.

The signature itself is made by ``skopeo standalone-sign`` from the manifest
as the registry serves it (gpgme and the GPG keyring are skopeo's): no image
is copied, so the digest signed is the one stored.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from mapping.errors import show

from ..errors import EncapsulateError
from .imgref import ImageRef, RegistryOptions
from .sigstore import DockerReference, SignatureStore
from .skopeo import run_skopeo

# Signatures a store holds for one manifest, at most (containers/image reads
# them in order until one is missing).
_MOST = 1000


@dataclass(frozen=True)
class LookasideResult:
    """The manifest digest signed, the reference named and the file written."""

    digest: str
    identity: str
    path: str


def signature_dir(lookaside: str, reference: DockerReference, digest: str) -> str:
    """The directory of ``digest``'s signatures in the store at ``lookaside``."""
    algorithm, _, hex_ = digest.partition(":")
    return os.path.join(lookaside, f"{reference.path}@{algorithm}={hex_}")


def gpg_sign_image(
    ref: ImageRef,
    registry: RegistryOptions,
    fingerprint: str,
    lookaside: str,
    identity: str | None = None,
    passphrase_file: str | None = None,
) -> LookasideResult:
    """Sign the manifest ``ref`` resolves to with the GPG key ``fingerprint``
    for ``identity`` (default: ``ref``), into the lookaside directory."""
    if not os.path.isdir(lookaside):
        raise EncapsulateError(
            "no such directory",
            where=f"--lookaside {show(lookaside)}",
            hint="create it (the lookaside-staging store)",
        )
    store = SignatureStore(ref, registry)
    reference = DockerReference.of(ref)
    asked = reference.digest or reference.tag or "latest"
    found = store.manifest(asked)
    if found is None:
        raise EncapsulateError(
            f"no manifest {asked} in {store.name}", where=show(str(ref)), hint="check the reference"
        )
    raw, _, digest = found
    signed = str(DockerReference.parse(identity, "--identity")) if identity is not None else str(reference)
    directory = signature_dir(lookaside, reference, digest)
    with tempfile.TemporaryDirectory(prefix="debchunk-sign-") as tmp:
        manifest = os.path.join(tmp, "manifest.json")
        with open(manifest, "wb") as f:
            f.write(raw)
        output = os.path.join(tmp, "signature")
        args = ["standalone-sign", manifest, signed, fingerprint, "--output", output]
        if passphrase_file is not None:
            args += ["--passphrase-file", passphrase_file]
        run_skopeo(args, f"--gpg-key {show(fingerprint)}")
        with open(output, "rb") as f:
            signature = f.read()
        try:
            os.makedirs(directory, exist_ok=True)
            for n in range(1, _MOST + 1):
                path = os.path.join(directory, f"signature-{n}")
                if not os.path.lexists(path):
                    break
            else:
                raise EncapsulateError(f"{_MOST} signatures already", where=show(directory))
            with open(path, "xb") as f:
                f.write(signature)
        except OSError as e:
            raise EncapsulateError(
                f"cannot write the signature ({e.strerror})",
                where=show(directory),
                hint="give a writable --lookaside",
            ) from None
    return LookasideResult(digest, signed, path)
