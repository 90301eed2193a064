"""Sigstore signatures on the command line: ``debchunk keygen``, ``sign`` and
``verify``.  Each parses its arguments, makes one call into
``encapsulate.keys`` or ``encapsulate.oci.sigstore`` and prints one line.
No key, passphrase or key bytes are ever printed."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from mapping.errors import show

from ..errors import ConfigError, EncapsulateError
from ..keys import generate_key_pair, load_private_key, load_public_key, read_passphrase
from ..oci.lookaside import gpg_sign_image
from ..oci.sigstore import registry_imgref, sign_image, verify_image
from .render import json_text
from .settings import add_command, reading_registry

log = logging.getLogger("debchunk.encapsulate")


def _cmd_keygen(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    passphrase = read_passphrase(args.passphrase_file, "--passphrase-file")
    if not passphrase:
        log.warning("%s.key: no passphrase: anyone who reads the file can sign", args.prefix)
    pair = generate_key_pair(args.prefix, passphrase)
    if not args.quiet:
        print(f"{show(pair.private)}: private key (keep it secret); {show(pair.public)}: public key")
    return 0


def _cmd_sign(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if (args.key is None) == (args.gpg_key is None):
        raise ConfigError("give --key KEY (sigstore) or --gpg-key FINGERPRINT --lookaside DIR")
    if (args.gpg_key is None) != (args.lookaside is None):
        raise ConfigError("--gpg-key and --lookaside go together")
    ref = registry_imgref(args.imgref)
    if args.gpg_key is not None:
        stored = gpg_sign_image(
            ref, reading_registry(args), args.gpg_key, args.lookaside, args.identity, args.passphrase_file
        )
        if not args.quiet:
            print(
                f"{show(str(ref))}: signed: {stored.digest} as {show(stored.identity)}: {show(stored.path)}"
            )
        return 0
    key = load_private_key(args.key, args.passphrase_file, "--key", "--passphrase-file")
    result = sign_image(ref, reading_registry(args), key, args.identity)
    if not args.quiet:
        done = "signed" if result.added else "already signed by this key"
        print(f"{show(str(ref))}: {done}: {result.digest} as {show(result.identity)}")
    return 0


def _cmd_verify(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    ref = registry_imgref(args.imgref)
    key = load_public_key(args.key)
    verdict = verify_image(ref, reading_registry(args), key, args.identity)
    if args.json:
        print(json_text(_verdict_json(verdict)))
    if not verdict.valid:
        if not verdict.signatures:
            why = "no sigstore signature is attached"
        else:
            why = (
                f"none of its {verdict.signatures} signatures is accepted: {'; '.join(verdict.problems[:3])}"
            )
        raise EncapsulateError(
            f"{verdict.digest}: {why}",
            where=show(str(ref)),
            hint=f"sign it with 'debchunk sign --key PREFIX.key' (the key of {show(args.key)})",
        )
    if not args.quiet and not args.json:
        print(f"{show(str(ref))}: verified: {verdict.digest} signed as {show(verdict.identity or '')}")
    return 0


def _verdict_json(verdict: Any) -> dict[str, Any]:
    return {
        "imgref": verdict.ref,
        "digest": verdict.digest,
        "valid": verdict.valid,
        "identity": verdict.identity,
        "signatures": verdict.signatures,
        "problems": list(verdict.problems),
    }


def register(sub: Any) -> None:
    """Add ``keygen``, ``sign`` and ``verify`` to the ``debchunk`` subcommands."""
    add_command(
        sub,
        "keygen",
        _cmd_keygen,
        help="write a cosign-compatible key pair for signing images",
        description="Write an ECDSA P-256 key pair as cosign does: PREFIX.key (encrypted with the "
        "passphrase, mode 0600) and PREFIX.pub. skopeo, podman and cosign sign with PREFIX.key; "
        "containers-policy.json names PREFIX.pub. Existing files are never replaced.",
    )
    add_command(
        sub,
        "sign",
        _cmd_sign,
        help="sign an image already in a registry (sigstore, as cosign and containers/image store it)",
        description="Sign the manifest an IMGREF resolves to, storing the signature where podman, skopeo, "
        "bootc and cosign find it (the tag sha256-HEX.sig; signatures already there are kept).",
    )
    add_command(
        sub,
        "verify",
        _cmd_verify,
        help="check an image's sigstore signatures as podman and skopeo do",
        description="Check that a signature by the key covers the manifest IMGREF resolves to and names "
        "IMGREF's repository and tag, as a sigstoreSigned policy does. Exit 1 when none does.",
    )
