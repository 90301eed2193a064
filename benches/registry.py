"""A real docker-registry on 127.0.0.1, for the benches and the tests.

``docker_registry(root)`` starts Debian's ``docker-registry`` on a free port,
storing under ``root`` (deletes allowed), and yields ``HOST:PORT`` once its
``/v2/`` answers; ``manifest_digest(ref)`` is the digest of a pushed image's
manifest as the registry stores it (``skopeo inspect --raw``).
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def docker_registry(root: Path, htpasswd: Path | None = None, readonly: bool = False) -> Iterator[str]:
    """A docker-registry on 127.0.0.1, on a free port; HOST:PORT.  With
    ``htpasswd`` (bcrypt entries), it asks for those credentials (Basic);
    ``readonly``, it refuses every push (its storage's maintenance mode)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = root / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root}/data}}, delete: {{enabled: true}}"
        + (", maintenance: {readonly: {enabled: true}}" if readonly else "")
        + "}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
        + (f"auth: {{htpasswd: {{realm: debchunk, path: {htpasswd}}}}}\n" if htpasswd else "")
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError as e:
                if htpasswd and isinstance(e, urllib.error.HTTPError) and e.code == 401:
                    break  # up, and asking for the credentials
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("docker-registry did not start") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def manifest_digest(ref: str) -> str:
    """The digest of the manifest of ``HOST:PORT/REPO:TAG`` as stored (plain HTTP)."""
    raw = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()
