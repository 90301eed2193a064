"""Signing keys in cosign's format: made (``debchunk keygen``), read and used.

In: a key file and, for a private key, its passphrase (a file's first line).
Out: a ``SigningKey`` that signs bytes, or a ``PublicKey`` that checks a
signature, as containers/image's sigstore code does (SHA-256 with ECDSA,
RSA PKCS#1 v1.5 or Ed25519).

The private key file is what ``cosign generate-key-pair`` writes, and what
skopeo's ``--sign-by-sigstore-private-key`` and podman's
``--sign-by-sigstore-private-key`` read: a PEM block ``ENCRYPTED SIGSTORE
PRIVATE KEY`` (cosign 1.x wrote ``ENCRYPTED COSIGN PRIVATE KEY``: both are
read) whose body is the JSON of go-securesystemslib's ``encrypted`` package,
``{"kdf": {"name": "scrypt", "params": {"N", "r", "p"}, "salt"}, "cipher":
{"name": "nacl/secretbox", "nonce"}, "ciphertext"}`` (byte strings in
base64), the ciphertext being the PKCS#8 DER of the key sealed with
XSalsa20-Poly1305 under ``scrypt(passphrase, salt, N, r, p, 32 bytes)``.
Facts from sigstore/cosign ``pkg/cosign/keys.go`` and
secure-systems-lab/go-securesystemslib ``encrypted/encrypted.go``.

Nothing secret is ever put into an error message: a message names the file
and what to do, never a key's bytes or a passphrase.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from mapping.errors import show

from .errors import EncapsulateError

# The PEM types of an encrypted private key: cosign 2.x writes the first,
# cosign 1.x wrote the second (cosign pkg/cosign/keys.go).
PRIVATE_KEY_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
PRIVATE_KEY_TYPES = (PRIVATE_KEY_TYPE, "ENCRYPTED COSIGN PRIVATE KEY")
PUBLIC_KEY_TYPE = "PUBLIC KEY"
# go-securesystemslib's scrypt parameters (N 2^15, r 8, p 1): the ones every
# version of its decrypter accepts (newer ones also take N 2^16 and 2^17).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
_ACCEPTED_N = (1 << 15, 1 << 16, 1 << 17)
_SALT_BYTES = 32
_NONCE_BYTES = SecretBox.NONCE_SIZE
_KEY_BYTES = SecretBox.KEY_SIZE
# The environment variable cosign reads a passphrase from.
PASSPHRASE_ENV = "COSIGN_PASSWORD"
# A key file is small; a larger one is not a key.
_KEY_FILE_LIMIT = 1 << 16

SignerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
VerifierKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class KeyFileError(EncapsulateError):
    """A key or passphrase cannot be used; the message names the file."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _read_small(path: str, option: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(_KEY_FILE_LIMIT + 1)
    except FileNotFoundError:
        raise KeyFileError("no such file", where=f"{option} {show(path)}", hint=f"give the {what}") from None
    except IsADirectoryError:
        raise KeyFileError(
            "is a directory", where=f"{option} {show(path)}", hint=f"give the {what}"
        ) from None
    except OSError as e:
        raise KeyFileError(
            f"cannot read it ({e.strerror})", where=f"{option} {show(path)}", hint=f"give a readable {what}"
        ) from None
    if len(data) > _KEY_FILE_LIMIT:
        raise KeyFileError("too large for a key", where=f"{option} {show(path)}", hint=f"give the {what}")
    return data


def read_passphrase(path: str | None, option: str = "--sign-passphrase-file") -> bytes:
    """The passphrase: the first line of the file ``path`` (its line end
    dropped, as skopeo reads ``--sign-passphrase-file``); without a file,
    ``COSIGN_PASSWORD`` when set (as cosign reads it), else empty."""
    if path is None:
        return os.environ.get(PASSPHRASE_ENV, "").encode()
    data = _read_small(path, option, "file holding the passphrase on its first line")
    line = data.split(b"\n", 1)[0]
    return line.removesuffix(b"\r")


def _pem_block(data: bytes, where: str, types: tuple[str, ...], hint: str) -> tuple[str, bytes]:
    """The type and body of the first PEM block of ``data`` (one of ``types``)."""
    text = data.decode("ascii", "replace")
    begin = text.find("-----BEGIN ")
    if begin < 0:
        raise KeyFileError("not a PEM file", where=where, hint=hint)
    line_end = text.find("-----", begin + 11)
    kind = text[begin + 11 : line_end] if line_end > 0 else ""
    end_marker = f"-----END {kind}-----"
    end = text.find(end_marker, line_end)
    if line_end < 0 or end < 0:
        raise KeyFileError("a PEM block without its end", where=where, hint=hint)
    if kind not in types:
        shown = show(kind[:40])
        raise KeyFileError(f"a PEM {shown} block, not {' or '.join(types)}", where=where, hint=hint)
    body = "".join(line.strip() for line in text[line_end + 5 : end].splitlines() if ":" not in line)
    try:
        return kind, base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError("its PEM body is not base64", where=where, hint=hint) from None


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=_KEY_BYTES, n=n, r=r, p=p).derive(passphrase)


@dataclass(frozen=True)
class PublicKey:
    """A public key: checks signatures made by its private key."""

    key: VerifierKey

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's over ``data`` (SHA-256, as
        containers/image checks a sigstore signature)."""
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            elif isinstance(self.key, rsa.RSAPublicKey):
                self.key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            else:
                self.key.verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True

    def pem(self) -> bytes:
        """The key as a PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo), as cosign writes ``cosign.pub``."""
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def same_as(self, other: PublicKey) -> bool:
        """Whether both are the same key."""
        return self.pem() == other.pem()


@dataclass(frozen=True, repr=False)
class SigningKey:
    """A private key, decrypted: signs bytes.  ``path`` is where it was read
    from, for messages.  Its ``repr`` shows the path only."""

    key: SignerKey
    path: str

    def __repr__(self) -> str:
        return f"SigningKey({self.path!r})"

    def sign(self, data: bytes) -> bytes:
        """The signature over ``data``: ECDSA (ASN.1 DER), RSA PKCS#1 v1.5 with
        SHA-256, or Ed25519, as containers/image's and cosign's signers make."""
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(data)

    @property
    def public(self) -> PublicKey:
        """Its public key."""
        return PublicKey(self.key.public_key())


def _field(value: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _b64_field(document: Any, *path: str) -> bytes:
    value = _field(document, *path)
    if not isinstance(value, str):
        raise ValueError(".".join(path))
    return base64.b64decode(value, validate=True)


def decrypt_private_key(data: bytes, passphrase: bytes, where: str, passphrase_hint: str) -> SigningKey:
    """The private key of a cosign key file's bytes ``data`` (read from ``where``)."""
    hint = "give a private key written by 'debchunk keygen' or 'cosign generate-key-pair'"
    _, body = _pem_block(data, where, PRIVATE_KEY_TYPES, hint)
    try:
        document = json.loads(body)
        n, r, p = (_field(document, "kdf", "params", k) for k in ("N", "r", "p"))
        names = (_field(document, "kdf", "name"), _field(document, "cipher", "name"))
        salt = _b64_field(document, "kdf", "salt")
        nonce = _b64_field(document, "cipher", "nonce")
        sealed = _b64_field(document, "ciphertext")
    except (ValueError, binascii.Error):
        raise KeyFileError(
            "not an encrypted cosign key (its JSON is damaged)", where=where, hint=hint
        ) from None
    if names != ("scrypt", "nacl/secretbox"):
        raise KeyFileError(
            "encrypted with something other than scrypt and nacl/secretbox", where=where, hint=hint
        )
    # Parameters bounded as go-securesystemslib bounds them: a file cannot make
    # the key derivation run for ever.
    if n not in _ACCEPTED_N or r != SCRYPT_R or p != SCRYPT_P or len(nonce) != _NONCE_BYTES:
        raise KeyFileError("unexpected scrypt or secretbox parameters", where=where, hint=hint)
    try:
        der = SecretBox(_scrypt(passphrase, salt, n, r, p)).decrypt(sealed, nonce)
    except CryptoError:
        raise KeyFileError(
            "the passphrase does not open this key", where=where, hint=passphrase_hint
        ) from None
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError("holds no PKCS#8 private key", where=where, hint=hint) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyFileError(
            "not an ECDSA, RSA or Ed25519 key, the kinds containers/image signs with", where=where, hint=hint
        )
    return SigningKey(key, where)


def load_private_key(
    path: str,
    passphrase_file: str | None,
    option: str = "--sign-by-sigstore",
    pass_option: str = "--sign-passphrase-file",
) -> SigningKey:
    """The private key in the cosign key file ``path``, opened with the
    passphrase of ``passphrase_file`` (``read_passphrase``)."""
    passphrase = read_passphrase(passphrase_file, pass_option)
    data = _read_small(path, option, "private key file (PREFIX.key)")
    where = f"{option} {show(path)}"
    if passphrase_file is None:
        hint = f"give its passphrase with {pass_option} FILE (or {PASSPHRASE_ENV})"
    else:
        hint = f"check {pass_option} {show(passphrase_file)}"
    return decrypt_private_key(data, passphrase, where, hint)


def load_public_key(path: str, option: str = "--key") -> PublicKey:
    """The public key in the PEM file ``path`` (``PUBLIC KEY``, as cosign
    writes ``cosign.pub`` and containers-policy.json's ``keyPath`` names)."""
    where = f"{option} {show(path)}"
    hint = "give the public key (PREFIX.pub), a PEM PUBLIC KEY"
    data = _read_small(path, option, "public key file (PREFIX.pub)")
    _, body = _pem_block(data, where, (PUBLIC_KEY_TYPE,), hint)
    try:
        key = serialization.load_der_public_key(body)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError("holds no public key", where=where, hint=hint) from None
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise KeyFileError("not an ECDSA, RSA or Ed25519 key", where=where, hint=hint)
    return PublicKey(key)


def encrypt_private_key(key: SignerKey, passphrase: bytes) -> bytes:
    """The PEM file cosign writes for ``key`` under ``passphrase`` (see the module's docstring)."""
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt, nonce = os.urandom(_SALT_BYTES), os.urandom(_NONCE_BYTES)
    sealed = SecretBox(_scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(der, nonce).ciphertext
    document = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": _b64(salt),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(sealed),
    }
    body = base64.encodebytes(json.dumps(document, separators=(",", ":")).encode()).decode()
    # PEM lines of 64 characters (RFC 7468); encodebytes makes 76.
    flat = body.replace("\n", "")
    lines = "\n".join(flat[i : i + 64] for i in range(0, len(flat), 64))
    return f"-----BEGIN {PRIVATE_KEY_TYPE}-----\n{lines}\n-----END {PRIVATE_KEY_TYPE}-----\n".encode()


@dataclass(frozen=True)
class KeyPair:
    """The files ``generate_key_pair`` wrote."""

    private: str
    public: str


def generate_key_pair(prefix: str, passphrase: bytes) -> KeyPair:
    """A new ECDSA P-256 key pair (cosign's kind) written as ``PREFIX.key``
    (encrypted under ``passphrase``, mode 0600) and ``PREFIX.pub``; an
    existing file is never replaced."""
    key = ec.generate_private_key(ec.SECP256R1())
    pair = KeyPair(f"{prefix}.key", f"{prefix}.pub")
    contents = (
        (pair.private, encrypt_private_key(key, passphrase), 0o600),
        (pair.public, PublicKey(key.public_key()).pem(), 0o644),
    )
    written: list[str] = []
    try:
        for path, data, mode in contents:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            except FileExistsError:
                raise KeyFileError(
                    "already exists", where=show(path), hint="remove it or give another PREFIX"
                ) from None
            except OSError as e:
                raise KeyFileError(
                    f"cannot write it ({e.strerror})",
                    where=show(path),
                    hint="give a PREFIX in a writable directory",
                ) from None
            written.append(path)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    return pair
