"""Which registry faults are tried again, how long is waited, and what a
refusal's message quotes (``encapsulate.oci.retry``); the pushes through a
flaky registry are in test_flaky_registry.py."""

from __future__ import annotations

import email.utils
import http.client
import io
import time
import urllib.error
from email.message import Message

from encapsulate.oci.retry import (
    MAX_WAIT,
    RetryPolicy,
    refusal_hint,
    refused,
    registry_errors,
    retry_after,
    transient,
)


def _http(code: int, **headers: str) -> urllib.error.HTTPError:
    message = Message()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return urllib.error.HTTPError("http://registry.example/v2/", code, "x", message, io.BytesIO(b""))


def test_transient_statuses() -> None:
    statuses = (400, 401, 403, 404, 405, 408, 413, 429, 500, 501, 502, 503, 504, 505, 507, 511)
    assert [c for c in statuses if transient(_http(c))] == [408, 429, 500, 502, 503, 504]


def test_transient_connection_faults() -> None:
    for error in (
        ConnectionResetError(104, "reset"),
        ConnectionRefusedError(111, "refused"),
        BrokenPipeError(),
        TimeoutError("timed out"),
        http.client.RemoteDisconnected("closed"),
        http.client.IncompleteRead(b""),
        urllib.error.URLError(ConnectionRefusedError(111, "refused")),
    ):
        assert transient(error), error
    lasting: tuple[BaseException, ...] = (FileNotFoundError(), urllib.error.URLError("bad url"), ValueError())
    assert [transient(e) for e in lasting] == [None, None, None]
    assert refused(urllib.error.URLError(ConnectionRefusedError())) and not refused(ConnectionResetError())


def test_waits_double_and_are_bounded() -> None:
    policy = RetryPolicy(times=8, delay=0.5)
    assert [policy.wait(n, None) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 32, MAX_WAIT]
    assert policy.wait(1, 3.0) == 3.0
    assert policy.wait(1, MAX_WAIT + 1) is None


def test_retry_after() -> None:
    assert retry_after(_http(429, Retry_After="1")) == 1.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (retry_after(_http(503, Retry_After=later)) or 0) <= 30
    assert retry_after(_http(503)) is None and retry_after(_http(503, Retry_After="soon")) is None
    assert retry_after(None) is None and retry_after(ConnectionResetError()) is None


def test_registry_errors() -> None:
    body = b'{"errors":[{"code":"DENIED","message":"no","detail":{}},{"code":"UNKNOWN"}]}'
    assert registry_errors(body) == "DENIED: no; UNKNOWN"
    assert registry_errors(b"<html>413</html>") == "" and registry_errors(b'{"errors": 3}') == ""


def test_refusal_hints() -> None:
    assert "--dest-creds" in refusal_hint(401, "", "os", "--dest-creds")
    assert "push access" in refusal_hint(403, "DENIED: no", "os", "--dest-creds")
    assert "create it first" in refusal_hint(404, "NAME_UNKNOWN: x", "os", "--dest-creds")
    assert "upload limit" in refusal_hint(413, "", "os", "--dest-creds")
    assert "storage is full" in refusal_hint(507, "", "os", "--dest-creds")
    assert "message says why" in refusal_hint(400, "MANIFEST_INVALID: x", "os", "--dest-creds")
