"""An HTTP proxy on 127.0.0.1 that injects faults between a client and a
real registry, for the tests of pushes through a flaky registry.

``FaultProxy(upstream)`` listens on a free port and passes each request to
``upstream`` (``HOST:PORT`` of a docker-registry), one request per
connection, unless a ``Fault`` matching it says otherwise: answer with an
HTTP status (a distribution-spec error body, ``Retry-After`` and other
headers), reset the connection before or after passing the request on,
stall without answering, acknowledge a blob upload that is never passed
on, or stop listening (the registry goes down: connections are refused).
A fault given a ``probability`` draws from a generator seeded by the
proxy's seed and the request (its method, its path with upload session ids
blanked out, and how many such requests came before), so the same pushes
meet the same faults whatever order parallel requests arrive in.
``log`` lists every request with what was done to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Upload session ids (docker-registry's are UUIDs) and digests differ
# between runs and images; the draws do not depend on them.
_SESSION = re.compile(r"/blobs/uploads/[^/?]+")
_HOP = frozenset(("connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"))


@dataclass
class Fault:
    """What to do to the requests whose method matches ``method`` and path
    (with its query) ``path`` (regular expressions, searched): ``action`` is
    ``status`` (answer ``status`` with ``code``/``message`` as a distribution-spec
    error body, or ``body`` as given, and ``headers``), ``reset`` (reset
    the connection before passing the request on), ``reset-after`` (pass
    it on, then reset instead of answering), ``stall`` (read the request,
    say nothing for ``seconds``, close), ``ack`` (answer ``201 Created``
    to a blob upload without passing it on) or ``down`` (stop listening,
    and reset this connection).  ``probability``: the share of
    matching requests it hits; ``times``: at most that many (None: no limit);
    ``first_per_path``: only the first request of each method and path."""

    action: str
    method: str = "."
    path: str = "."
    probability: float = 1.0
    times: int | None = None
    status: int = 503
    code: str = "UNAVAILABLE"
    message: str = "service unavailable"
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 30.0
    first_per_path: bool = False
    hits: int = 0


class FaultProxy:
    """The proxy (a context manager); ``address`` is its ``HOST:PORT``."""

    def __init__(self, upstream: str, faults: list[Fault] | None = None, seed: int = 25) -> None:
        self.upstream = upstream
        self.faults = list(faults or [])
        self.seed = seed
        # (method, path, what was done, time.monotonic() when it came)
        self.log: list[tuple[str, str, str, float]] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(timeout=5)

    def count(self, method: str, path: str, action: str | None = None) -> int:
        """The requests logged whose method is ``method``, whose path matches
        ``path`` (searched) and, given ``action``, that were so treated."""
        return sum(
            1
            for m, p, a, _ in self.log
            if m == method and re.search(path, p) and (action is None or a == action)
        )

    def _serve(self) -> None:
        # accept() is not woken by a close from another thread: it polls.
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _choose(self, method: str, path: str) -> Fault | None:
        key = f"{method} {_SESSION.sub('/blobs/uploads/-', path.partition('?')[0])}"
        with self._lock:
            self._seen[key] += 1
            draw = f"{self.seed} {key} {self._seen[key]}"
            for index, fault in enumerate(self.faults):
                if not (re.search(fault.method, method) and re.search(fault.path, path)):
                    continue
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                if fault.first_per_path and self._seen[key] > 1:
                    continue
                if fault.probability < 1:
                    text = f"{draw} {index}"
                    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
                    if random.Random(seed).random() >= fault.probability:
                        continue
                fault.hits += 1
                return fault
        return None

    def _handle(self, client: socket.socket) -> None:
        with client:
            client.settimeout(120)
            try:
                request = _read_request(client)
            except (OSError, ValueError):
                return
            if request is None:
                return
            method, target, headers, body = request
            fault = self._choose(method, target)
            action = fault.action if fault else "passed"
            with self._lock:
                self.log.append((method, target, action, time.monotonic()))
            with contextlib.suppress(OSError):
                self._answer(client, fault, method, target, headers, body)

    def _answer(
        self,
        client: socket.socket,
        fault: Fault | None,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        if fault is not None and fault.action in ("reset", "down"):
            if fault.action == "down":
                self._stop.set()
                self._server.close()
            _reset(client)
            return
        if fault is not None and fault.action == "stall":
            self._stop.wait(fault.seconds)
            return
        if fault is not None and fault.action == "status":
            payload = fault.body
            if payload is None:
                payload = json.dumps({"errors": [{"code": fault.code, "message": fault.message}]}).encode()
            extra = {"Content-Type": "application/json", **fault.headers}
            _respond(client, fault.status, http.client.responses.get(fault.status, "Error"), extra, payload)
            return
        if fault is not None and fault.action == "ack":
            digest = re.search(r"digest=([^&]+)", target)
            name = target.split("/blobs/")[0]
            given = digest.group(1).replace("%3A", ":") if digest else ""
            extra = {"Location": f"{name}/blobs/{given}", "Docker-Content-Digest": given}
            _respond(client, 201, "Created", extra, b"")
            return
        upstream = http.client.HTTPConnection(self.upstream, timeout=120)
        try:
            upstream.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in _HOP:
                    upstream.putheader(name, value)
            if body or method in ("PUT", "POST", "PATCH"):
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body or None)
            response = upstream.getresponse()
            data = response.read()
            answer = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP]
            length = response.getheader("Content-Length") if method == "HEAD" else None
        finally:
            upstream.close()
        if fault is not None and fault.action == "reset-after":
            _reset(client)
            return
        head = [f"HTTP/1.1 {response.status} {response.reason}"]
        head += [f"{k}: {v}" for k, v in answer]
        head += [f"Content-Length: {length if length is not None else len(data)}", "Connection: close"]
        client.sendall(
            ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (b"" if method == "HEAD" else data)
        )


def _reset(client: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER of zero), as a cut connection looks."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _respond(client: socket.socket, status: int, reason: str, headers: dict[str, str], body: bytes) -> None:
    head = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items())]
    head += [f"Content-Length: {len(body)}", "Connection: close"]
    client.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def _read_request(client: socket.socket) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    """Method, target, headers and body of the one request on ``client``;
    None for what is no HTTP request (a TLS handshake: the client tries
    HTTPS first)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk or (not data and chunk[:1] == b"\x16"):
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    fields: dict[str, Any] = {k.lower(): v for k, v in headers}
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(client, rest)
    else:
        length = int(fields.get("content-length") or 0)
        buffer = bytearray(rest)
        while len(buffer) < length:
            chunk = client.recv(min(1 << 20, length - len(buffer)))
            if not chunk:
                raise ValueError("the request was cut short")
            buffer += chunk
        body = bytes(buffer)
    return method, target, headers, body


def _dechunk(client: socket.socket, data: bytes) -> bytes:
    body = b""
    while True:
        while b"\r\n" not in data:
            data += client.recv(65536)
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(data) < size + 2:
            data += client.recv(65536)
        body += data[:size]
        data = data[size + 2 :]
        if size == 0:
            return body
