"""A registry that answers with bodies that never end: a push reads at most
``MAX_ERROR_BODY`` of each answer it has no use for, then goes on (it used
to read each answer whole, so an endless one hung it and filled memory)."""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from encapsulate.oci.retry import MAX_ERROR_BODY
from tests.conftest import RunCli
from tests.images import EPOCH, packages_tree
from tests.test_sign import registry_tags

# What the front sends after each answer the registry gave a write: far more
# than a client should read.
ENDLESS = 256 << 20
_CHUNK = b"\0" * (64 << 10)


class _EndlessFront(http.server.BaseHTTPRequestHandler):
    """A front of the test registry: every request goes through, and every
    answer to a write (POST, PATCH, PUT) that has a body of no use to the
    client gets ``ENDLESS`` bytes of one, with no length (HTTP/1.0: the body
    ends when the connection does)."""

    upstream = ""
    sent: ClassVar[list[int]] = []

    def log_message(self, format: str, *args: Any) -> None:
        """No request log: the test reads the bytes sent, not the requests."""

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        connection = http.client.HTTPConnection(self.upstream, timeout=30)
        connection.request(self.command, self.path, body=data, headers=dict(self.headers.items()))
        response = connection.getresponse()
        content = response.read()
        connection.close()
        endless = self.command in ("POST", "PATCH", "PUT") and 200 <= response.status < 300
        self.send_response(response.status)
        # A HEAD answer's length is the blob's (it has no body).
        dropped = ("connection", "transfer-encoding") + (
            () if self.command == "HEAD" else ("content-length",)
        )
        for name, value in response.getheaders():
            if name.lower() not in dropped:
                self.send_header(name, value)
        if not endless and self.command != "HEAD":
            self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if not endless:
            self.wfile.write(content)
            return
        sent = 0
        try:
            while sent < ENDLESS:
                self.wfile.write(_CHUNK)
                sent += len(_CHUNK)
        except OSError:
            pass  # the client has read what it wanted and closed
        self.sent.append(sent)
        self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


@pytest.fixture
def endless(registry: str) -> Iterator[tuple[str, list[int]]]:
    """HOST:PORT of the front, and the bytes it sent after each write's answer."""
    sent: list[int] = []
    handler = type("Front", (_EndlessFront,), {"upstream": registry, "sent": sent})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", sent
    finally:
        server.shutdown()
        server.server_close()


def test_a_push_reads_only_so_much_of_answers_that_never_end(
    endless: tuple[str, list[int]], registry: str, run_cli: RunCli, tmp_path: Path
) -> None:
    front, sent = endless
    tree = packages_tree(tmp_path / "tree", 3, 2_000, 10)
    done = run_cli(
        "--rootfs", str(tree), f"registry:{front}/endless/app:1", "--dest-tls-verify", "false", "--quiet",
        prefix=("timeout", "300"), program="container-encapsulate", env={"SOURCE_DATE_EPOCH": str(EPOCH)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert registry_tags(registry, "endless/app") == ["1"]
    # Every write's answer was endless; each was cut short by the client (what
    # the kernel's socket buffers took beyond what it read is the rest).
    assert sent and all(n < MAX_ERROR_BODY + (16 << 20) for n in sent), sent
