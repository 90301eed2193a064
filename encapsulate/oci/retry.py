"""When a registry request is tried again, and for how long it is waited on.

In: a failed request's exception.  Out: whether the fault is transient
(``transient``: 5xx but 501 and 507 "storage full", 408, 429, a connection reset, refused or
closed without an answer, a timeout), how long to wait before the next try
(``RetryPolicy.wait``: ``Retry-After`` when the registry gives one, else a
delay doubling from ``delay``), and the errors that say what the registry
answered: ``registry_errors`` reads the distribution-spec error body
(``{"errors": [{"code": ..., "message": ...}]}``, OCI distribution-spec
v1.1, "Error Codes") and ``refusal_hint`` says what to do about a permanent
refusal.  Only steps that give the same result when repeated are tried
again (``RegistrySession.send``, ``RegistryPush.push_blob``).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import ssl
import time
import urllib.error
from dataclasses import dataclass
from typing import Any

# Tries after the first, as skopeo's --retry-times counts them.
DEFAULT_RETRY_TIMES = 3
# Seconds before the first retry; each further retry waits twice as long.
DEFAULT_RETRY_DELAY = 1.0
# Seconds a registry may leave a request without a byte of answer.
DEFAULT_TIMEOUT = 60.0
# The longest single wait, whatever a Retry-After asks: a registry that
# wants more is reported, not waited on.
MAX_WAIT = 60.0

# HTTP statuses that say "not now" rather than "no" (RFC 9110: 408 Request
# Timeout; RFC 6585: 429 Too Many Requests), and the 5xx server errors that
# stay: 501 Not Implemented, 505 HTTP Version Not Supported (RFC 9110), 507
# Insufficient Storage, 508 Loop Detected (RFC 4918, RFC 5842), 510 Not
# Extended (RFC 2774), 511 Network Authentication Required (RFC 6585).
_TRANSIENT_STATUS = frozenset((408, 429))
_LASTING_STATUS = frozenset((501, 505, 507, 508, 510, 511))


@dataclass(frozen=True)
class RetryPolicy:
    """How requests to a registry are tried: ``times`` retries after the
    first try of a transient fault, waiting ``delay`` seconds before the
    first and twice as long before each next one (or what ``Retry-After``
    asks, up to ``MAX_WAIT``); ``timeout`` seconds without an answer make
    a try fail.  A request thus takes at most ``times + 1`` tries, and
    waits at most ``times * MAX_WAIT`` seconds in all between them."""

    times: int = DEFAULT_RETRY_TIMES
    delay: float = DEFAULT_RETRY_DELAY
    timeout: float = DEFAULT_TIMEOUT

    def wait(self, retry: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number ``retry`` (1 for the first);
        None when the registry asks for longer than ``MAX_WAIT``."""
        if retry_after is not None:
            return retry_after if retry_after <= MAX_WAIT else None
        return float(min(self.delay * 2 ** (retry - 1), MAX_WAIT))


DEFAULT_RETRY = RetryPolicy()


def transient(error: BaseException) -> str | None:
    """What went wrong, when ``error`` is a fault that may pass (a short
    phrase for messages); None when it is an answer that will not change."""
    if isinstance(error, urllib.error.HTTPError):
        if error.code in _TRANSIENT_STATUS or (500 <= error.code < 600 and error.code not in _LASTING_STATUS):
            return f"HTTP {error.code} {error.reason}"
        return None
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        return transient(error.reason)
    if isinstance(error, ssl.SSLError):
        # A certificate or protocol mismatch stays; only a cut connection passes.
        return "the connection was cut" if isinstance(error, ssl.SSLEOFError) else None
    if isinstance(error, http.client.RemoteDisconnected):
        return "the connection was closed without an answer"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionError):
        return "the connection was reset"
    if isinstance(error, TimeoutError | socket.timeout):
        return "no answer in time"
    if isinstance(error, http.client.IncompleteRead | http.client.BadStatusLine):
        return "the answer was cut short"
    return None


def refused(error: BaseException) -> bool:
    """Whether ``error`` is a refused connection (nothing listening)."""
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        return refused(error.reason)
    return isinstance(error, ConnectionRefusedError)


def retry_after(error: BaseException | None) -> float | None:
    """The seconds a ``Retry-After`` header asks for (a number or an HTTP
    date, RFC 9110 section 10.2.3), if ``error`` is an answer that has one."""
    headers: Any = getattr(error, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# What is read of a registry's answer whose body is not needed (drained
# before the connection is closed), or of an error body: at most what
# containers/image reads of an error body (internal/iolimits, 1 MiB).
MAX_ERROR_BODY = 1 << 20


def drain(response: Any) -> bytes:
    """Read a response's body, up to ``MAX_ERROR_BODY`` (a registry may send
    any length, or never end one)."""
    data: bytes = response.read(MAX_ERROR_BODY)
    return data


def registry_errors(body: bytes) -> str:
    """``CODE: message`` of each error of a distribution-spec error body,
    joined by ``; ``; empty when the body is not one."""
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        return ""
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors:
        if isinstance(error, dict):
            code, message = error.get("code"), error.get("message")
            parts.append(": ".join(str(x) for x in (code, message) if x))
    return "; ".join(p for p in parts if p)


def refusal_hint(status: int, codes: str, repository: str, creds_option: str) -> str:
    """What to do about a registry's permanent refusal ``status`` (with the
    error ``codes`` it gave) of a push to ``repository``."""
    if status == 401:
        return f"the registry did not accept the credentials; check {creds_option} or --authfile"
    if status == 403:
        return f"these credentials may not push to {repository}; ask for push access or check the name"
    if status == 404:
        return f"the registry has no repository {repository} and does not make one on push; create it first"
    if status == 413:
        return (
            "the registry (or a proxy in front of it) takes no blob that large; raise its upload "
            "limit, or give more --max-layers for smaller layers"
        )
    if status == 507:
        return "the registry's storage is full; free space there (delete images, collect garbage), run again"
    if status == 400 or codes:
        return "the registry refused what was sent; its error message says why"
    return f"check that the registry accepts pushes to {repository}"
