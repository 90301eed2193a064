"""Key files in cosign's format: ``debchunk keygen`` writes them, debchunk
reads them (and cosign 1.x's), and a bad key or passphrase is one line that
shows nothing secret.  (That trixie's skopeo signs with these keys, and
checks what debchunk signs, is tests/test_sign.py's.)"""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from encapsulate.keys import (
    PRIVATE_KEY_TYPE,
    KeyFileError,
    PublicKey,
    SignerKey,
    SigningKey,
    encrypt_private_key,
    generate_key_pair,
    load_private_key,
    load_public_key,
    read_passphrase,
)
from tests.conftest import RunCli, printable_lines

PASSPHRASE = "s3cret passphrase"


def _pem_json(path: Path) -> dict[str, Any]:
    lines = path.read_text().splitlines()
    assert (
        lines[0] == f"-----BEGIN {PRIVATE_KEY_TYPE}-----" and lines[-1] == f"-----END {PRIVATE_KEY_TYPE}-----"
    )
    assert all(len(line) <= 64 for line in lines[1:-1])
    document = json.loads(base64.b64decode("".join(lines[1:-1])))
    assert isinstance(document, dict)
    return document


def test_keygen_writes_a_cosign_key_pair(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    done = run_cli("keygen", str(tmp_path / "release"), "--passphrase-file", str(tmp_path / "pass"))
    assert done.returncode == 0, done.stderr
    assert printable_lines(done.stdout.encode()) == [
        f"{tmp_path}/release.key: private key (keep it secret); {tmp_path}/release.pub: public key"
    ]
    key, pub = tmp_path / "release.key", tmp_path / "release.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # go-securesystemslib's JSON: scrypt N 32768 r 8 p 1, a 32-byte salt, a 24-byte nonce.
    document = _pem_json(key)
    assert document["kdf"] == {
        "name": "scrypt",
        "params": {"N": 32768, "r": 8, "p": 1},
        "salt": document["kdf"]["salt"],
    }
    assert len(base64.b64decode(document["kdf"]["salt"])) == 32
    assert document["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(document["cipher"]["nonce"])) == 24
    # The public key is PEM SubjectPublicKeyInfo of a P-256 key, the private key's.
    public = serialization.load_pem_public_key(pub.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    signing = load_private_key(str(key), str(tmp_path / "pass"))
    assert signing.public.same_as(load_public_key(str(pub)))
    signature = signing.sign(b"payload")
    assert load_public_key(str(pub)).verifies(signature, b"payload")
    assert not load_public_key(str(pub)).verifies(signature, b"payload!")
    # Nothing secret in what it says, nor in a repr.
    assert PASSPHRASE not in done.stdout + done.stderr and str(tmp_path) in repr(signing)
    # Never replaces a key: the first file found is named, nothing is changed.
    before = key.read_bytes()
    again = run_cli("keygen", str(tmp_path / "release"), "--passphrase-file", str(tmp_path / "pass"))
    assert again.returncode == 1
    assert again.stderr == (
        f"debchunk: error: {tmp_path}/release.key: already exists; remove it or give another PREFIX\n"
    )
    assert key.read_bytes() == before


def test_keygen_without_a_passphrase_warns(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = run_cli("keygen", str(tmp_path / "k"), env={"COSIGN_PASSWORD": ""})
    assert done.returncode == 0
    assert "warning: " in done.stderr and "no passphrase: anyone who reads the file can sign" in done.stderr
    assert load_private_key(str(tmp_path / "k.key"), None).public.same_as(
        load_public_key(str(tmp_path / "k.pub"))
    )
    # COSIGN_PASSWORD, as cosign reads it.
    done = run_cli("keygen", str(tmp_path / "e"), env={"COSIGN_PASSWORD": PASSPHRASE})
    assert done.returncode == 0 and not done.stderr
    monkeypatch.setenv("COSIGN_PASSWORD", PASSPHRASE)
    assert load_private_key(str(tmp_path / "e.key"), None).public.same_as(
        load_public_key(str(tmp_path / "e.pub"))
    )


def test_the_passphrase_is_the_files_first_line(tmp_path: Path) -> None:
    f = tmp_path / "p"
    for text, expected in ((b"pw\n", b"pw"), (b"pw\r\nsecond\n", b"pw"), (b"pw", b"pw"), (b"\n", b"")):
        f.write_bytes(text)
        assert read_passphrase(str(f)) == expected


@pytest.mark.parametrize("pem_type", ["ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"])
@pytest.mark.parametrize("kind", ["ecdsa-p256", "ecdsa-p384", "rsa", "ed25519"])
def test_keys_of_each_kind_and_pem_type_sign(pem_type: str, kind: str, tmp_path: Path) -> None:
    """The kinds containers/image signs with, in both PEM types cosign has written."""
    key: SignerKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = ec.generate_private_key(ec.SECP384R1() if kind == "ecdsa-p384" else ec.SECP256R1())
    path = tmp_path / "cosign.key"
    path.write_bytes(encrypt_private_key(key, b"pw").replace(PRIVATE_KEY_TYPE.encode(), pem_type.encode()))
    (tmp_path / "pass").write_text("pw\n")
    signing = load_private_key(str(path), str(tmp_path / "pass"))
    assert PublicKey(key.public_key()).verifies(signing.sign(b"data"), b"data")


def _fails(path: Path, passphrase_file: Path | None) -> str:
    with pytest.raises(KeyFileError) as e:
        load_private_key(str(path), None if passphrase_file is None else str(passphrase_file))
    return str(e.value)


def test_bad_keys_and_passphrases_name_the_file_and_show_nothing_secret(tmp_path: Path) -> None:
    pair = generate_key_pair(str(tmp_path / "k"), PASSPHRASE.encode())
    key = Path(pair.private)
    wrong = tmp_path / "wrong"
    wrong.write_text("guess\n")
    message = _fails(key, wrong)
    assert message == (
        f"--sign-by-sigstore {key}: the passphrase does not open this key; "
        f"check --sign-passphrase-file {wrong}"
    )
    body = "".join(key.read_text().splitlines()[1:-1])
    assert "guess" not in message and not any(
        body[i : i + 12] in message for i in range(0, len(body) - 12, 12)
    )
    assert "the passphrase does not open this key; give its passphrase with" in _fails(key, None)
    damaged = tmp_path / "damaged.key"
    lines = key.read_text().splitlines()
    damaged.write_text("\n".join([lines[0], "!!!!", *lines[2:]]) + "\n")
    assert "its PEM body is not base64" in _fails(damaged, wrong)
    # Scrypt parameters a file could use to make the derivation run for ever are refused at once.
    document = _pem_json(key)
    document["kdf"]["params"]["N"] = 1 << 30
    text = base64.b64encode(json.dumps(document).encode()).decode()
    costly = tmp_path / "costly.key"
    costly.write_text(f"-----BEGIN {PRIVATE_KEY_TYPE}-----\n{text}\n-----END {PRIVATE_KEY_TYPE}-----\n")
    start = time.monotonic()
    assert "unexpected scrypt or secretbox parameters" in _fails(costly, wrong)
    assert time.monotonic() - start < 1
    # A key of a kind containers/image does not sign with (X25519 in PKCS#8) is named as such.
    unsigned = tmp_path / "x25519.key"
    from cryptography.hazmat.primitives.asymmetric import x25519

    x = x25519.X25519PrivateKey.generate()
    unsigned.write_bytes(encrypt_private_key(x, b"guess"))  # type: ignore[arg-type]
    assert "not an ECDSA, RSA or Ed25519 key" in _fails(unsigned, wrong)
    # A public key file that is a private key, and one that is nothing.
    with pytest.raises(
        KeyFileError, match=r"--key .*: a PEM ENCRYPTED SIGSTORE PRIVATE KEY block, not PUBLIC KEY"
    ):
        load_public_key(str(key))
    (tmp_path / "empty.pub").write_text("")
    with pytest.raises(KeyFileError, match="not a PEM file"):
        load_public_key(str(tmp_path / "empty.pub"))
    right = tmp_path / "right"
    right.write_text(PASSPHRASE + "\n")
    assert isinstance(load_private_key(str(key), str(right)), SigningKey)
