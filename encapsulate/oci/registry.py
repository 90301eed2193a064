"""Single blobs from a registry, over the distribution API.

In: a registry ``ImageRef`` and its ``RegistryOptions`` (TLS verification
and credentials as skopeo takes them).  Out: one blob, streamed, by digest.  ``skopeo copy`` fetches a
whole image or nothing; a build that takes three layers of a previous image
needs those three blobs only, so they are fetched here:
``GET /v2/<name>/blobs/<digest>`` (OCI distribution-spec v1.1, "Pulling
blobs"), answering a ``401`` challenge as the token-auth spec says (Basic,
or a Bearer token from the challenge's realm for ``repository:<name>:pull``,
with the authfile's credentials).  The caller checks the bytes (digest and size).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..errors import EncapsulateError
from .imgref import ImageRef, RegistryOptions
from .retry import drain, refused, retry_after, transient

log = logging.getLogger("debchunk.encapsulate")

# Docker Hub's names (as containers/image's docker/reference normalises them).
_HUB = "docker.io"
_HUB_API = "registry-1.docker.io"
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def registry_name(ref: ImageRef) -> tuple[str, str]:
    """The registry host and repository name of a registry reference
    (``HOST/REPO[:TAG|@DIGEST]``; a name without a host is Docker Hub's)."""
    name = ref.location.lstrip("/").partition("@")[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name = name[:colon]
    host, _, path = name.partition("/")
    if not path or not ("." in host or ":" in host or host == "localhost"):
        host, path = _HUB, name
        if "/" not in path:
            path = f"library/{path}"
    return (_HUB_API if host == _HUB else host), path


def _credentials(host: str, authfile: str | None) -> str | None:
    """``user:password`` for ``host`` (base64 as stored) from the authfile:
    the one given, else ``REGISTRY_AUTH_FILE``, else podman's default
    ``$XDG_RUNTIME_DIR/containers/auth.json``, then
    ``$XDG_CONFIG_HOME/containers/auth.json`` and Docker's
    ``~/.docker/config.json``, where skopeo looks too (containers-auth.json(5))."""
    candidates: list[str | None] = [authfile] if authfile else []
    if not authfile:
        candidates.append(os.environ.get("REGISTRY_AUTH_FILE"))
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        candidates.append(os.path.join(runtime, "containers", "auth.json") if runtime else None)
        config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        candidates.append(os.path.join(config, "containers", "auth.json"))
        candidates.append(os.path.expanduser("~/.docker/config.json"))
    for path in filter(None, candidates):
        try:
            with open(path, encoding="utf-8") as f:
                auths = json.load(f).get("auths") or {}
        except FileNotFoundError:
            if path == authfile:
                raise EncapsulateError(f"--authfile {path}: no such file") from None
            continue
        except (OSError, ValueError, AttributeError) as e:
            raise EncapsulateError(f"{path}: not a readable authfile ({e}); fix or remove it") from None
        # Docker's own files name Docker Hub by its old index address.
        hub = (_HUB, "https://index.docker.io/v1/") if host == _HUB_API else ()
        names = (host, f"https://{host}", *hub)
        for name in names:
            entry = auths.get(name)
            if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
                return str(entry["auth"])
    return None


def _encoded(creds: str) -> str:
    """``USER[:PASSWORD]`` as an authfile stores it (base64 of ``user:password``)."""
    user, _, password = creds.partition(":")
    return base64.b64encode(f"{user}:{password}".encode()).decode()


class _NoAuthElsewhere(urllib.request.HTTPRedirectHandler):
    """Redirects (to a storage backend) keep the Authorization header only on the same host."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if (
            new is not None
            and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc
        ):
            new.remove_header("Authorization")
        return new


@dataclass
class RegistrySession:
    """Requests to one registry repository (``ref``'s), answering its ``401``
    challenges with the ``registry.authfile``'s credentials.
    ``registry.tls_verify=False``: HTTPS without certificate checks, then
    plain HTTP (as containers/image does for an insecure registry)."""

    ref: ImageRef
    registry: RegistryOptions
    # The option that sets ``tls_verify``, for messages.
    tls_option: str = field(default="--tls-verify", init=False, repr=False)
    # What a token is asked for (token-auth spec, ``repository:NAME:ACTIONS``):
    # ``actions`` on this repository, pull on the ``pull_from`` ones.
    actions: str = field(default="pull", init=False, repr=False)
    pull_from: set[str] = field(default_factory=set, init=False, repr=False)
    _authorization: str | None = field(default=None, init=False, repr=False)
    _base: str | None = field(default=None, init=False, repr=False)
    _built: urllib.request.OpenerDirector | None = field(default=None, init=False, repr=False)

    @property
    def host(self) -> str:
        """The registry's host (and port)."""
        return registry_name(self.ref)[0]

    @property
    def name(self) -> str:
        """The repository."""
        return registry_name(self.ref)[1]

    def _opener(self) -> urllib.request.OpenerDirector:
        # Made once: loading the system's certificates takes milliseconds.
        if self._built is None:
            context = ssl.create_default_context()
            if self.registry.tls_verify is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._built = urllib.request.build_opener(
                urllib.request.HTTPSHandler(context=context), _NoAuthElsewhere
            )
        return self._built

    def _get(self, url: str) -> BinaryIO:
        request = urllib.request.Request(url)
        if self._authorization:
            request.add_header("Authorization", self._authorization)
        response: BinaryIO = self._opener().open(request, timeout=self.registry.retry.timeout)
        return response

    def _wait(self, tries: int, error: BaseException | None) -> float | None:
        """Seconds to wait before try number ``tries + 1`` after ``error``;
        None when the tries are spent or the registry asks to wait too long."""
        policy = self.registry.retry
        return policy.wait(tries, retry_after(error)) if tries <= policy.times else None

    def pause(self, tries: int, error: BaseException | None, fault: str, what: str, started: float) -> None:
        """Wait before try number ``tries + 1`` of ``what`` after the transient
        ``fault`` (``error``), as the ``RetryPolicy`` says; when the tries are
        spent, or the registry asks to wait too long, an ``EncapsulateError``
        saying so, with the count."""
        policy = self.registry.retry
        host = registry_name(self.ref)[0]
        wait = self._wait(tries, error)
        if wait is None:
            asked = retry_after(error)
            if tries <= policy.times and asked is not None:
                raise EncapsulateError(
                    f"the registry {host} asks to wait {asked:.0f} s before {what} ({fault})",
                    str(self.ref),
                    hint="run again later",
                )
            raise EncapsulateError(
                f"the registry {host} failed {what} on each of {tries} tries in "
                f"{time.monotonic() - started:.0f} s (last: {fault}); a transient fault that lasted",
                str(self.ref),
                hint="run again later, or give more --retry-times, --retry-delay or --registry-timeout",
            )
        log.info(
            "%s: %s: %s; try %d of %d in %.1f s", self.ref, what, fault, tries + 1, policy.times + 1, wait
        )
        time.sleep(wait)

    def _authorize(self, challenge: str, host: str, name: str) -> None:
        """Answer a ``WWW-Authenticate`` challenge (Basic, or a Bearer token)."""
        creds = self.registry.creds
        secret = _credentials(host, self.registry.authfile) if creds is None else _encoded(creds)
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if secret is None:
                raise EncapsulateError(
                    f"{self.ref}: the registry wants credentials; give --authfile or --creds"
                )
            self._authorization = f"Basic {secret}"
            return
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.get("realm")
        if scheme != "bearer" or not realm:
            raise EncapsulateError(f"{self.ref}: unsupported registry authentication {challenge!r:.60}")
        scopes = [
            f"repository:{name}:{self.actions}",
            *(f"repository:{r}:pull" for r in sorted(self.pull_from)),
        ]
        query = [("scope", scope) for scope in scopes]
        if params.get("service"):
            query.append(("service", params["service"]))
        request = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(query)}")
        if secret is not None:
            request.add_header("Authorization", f"Basic {secret}")
        try:
            with self._opener().open(request, timeout=self.registry.retry.timeout) as f:
                answer = json.load(f)
            token = answer.get("token") or answer.get("access_token")
        except (OSError, ValueError, AttributeError) as e:
            raise EncapsulateError(
                f"{self.ref}: no registry token from {realm} ({e}); check --authfile"
            ) from None
        self._authorization = f"Bearer {token}"

    def _probe(self, url: str, again: bool) -> tuple[Exception | None, str]:
        """``GET url`` (``/v2/``): None when the registry answers (``401``
        included), else the last error, and the tries when there were
        several.  Transient faults are tried again when ``again``, HTTP
        ones always; a refused connection is not: nothing listens at the
        address given, which waiting does not mend (a registry that stops
        listening during a push is waited for: ``send``)."""
        started, tries = time.monotonic(), 0
        while True:
            try:
                with self._get(url):
                    return None, ""
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    return None, ""
                error: Exception = e
            except OSError as e:
                error = e
            fault = transient(error)
            if fault is None or refused(error) or not (again or isinstance(error, urllib.error.HTTPError)):
                return error, ""
            tries += 1
            wait = self._wait(tries, error)
            if wait is None:
                return error, f", {tries} tries in {time.monotonic() - started:.0f} s"
            time.sleep(wait)

    def _url(self, host: str) -> str:
        if self._base is not None:
            return self._base
        schemes = ["https"] if self.registry.tls_verify is not False else ["https", "http"]
        last: Exception | None = None
        tried = ""
        for scheme in schemes:
            # HTTPS tried before plain HTTP gives up on a connection fault at
            # once; the last scheme is tried again as any request is.
            last, tried = self._probe(f"{scheme}://{host}/v2/", scheme == schemes[-1])
            if last is None:
                self._base = f"{scheme}://{host}"
                return self._base
        hint = (
            "check its address and that it runs"
            if self.registry.tls_verify is False
            else f"give {self.tls_option} false for a plain-HTTP registry"
        )
        reason = getattr(last, "reason", last)
        if isinstance(reason, OSError) and reason.strerror:
            reason = reason.strerror.lower()
        raise EncapsulateError(f"{self.ref}: cannot reach the registry {host} ({reason}{tried}); {hint}")

    def send(
        self,
        method: str,
        path: str,
        body: bytes | Callable[[], Iterable[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        *,
        retry: bool | None = None,
    ) -> BinaryIO:
        """The response to ``METHOD path`` (a path from ``/v2/``, or a whole
        URL the registry gave), after answering one ``401`` challenge.  A
        streamed ``body`` is a function giving its chunks (called again for
        each try; give its ``Content-Length``).  A transient fault
        (``retry.transient``) is tried again as ``registry.retry`` says when
        ``retry`` (default: every method but ``PATCH``, whose effect depends
        on what came before), and is an ``EncapsulateError`` saying so once
        the tries are spent.  Other HTTP errors are raised
        (``urllib.error.HTTPError``), as are network errors (``OSError``)."""
        host, name = registry_name(self.ref)
        url = urllib.parse.urljoin(self._url(host), path)
        again = method != "PATCH" if retry is None else retry
        what = f"{method} {urllib.parse.urlsplit(url).path}"
        started, tries, challenged = time.monotonic(), 0, False
        while True:
            data = body() if callable(body) else body
            request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
            if self._authorization:
                request.add_header("Authorization", self._authorization)
            try:
                response: BinaryIO = self._opener().open(request, timeout=self.registry.retry.timeout)
                return response
            except urllib.error.HTTPError as e:
                challenge = e.headers.get("WWW-Authenticate") if e.headers else None
                if e.code == 401 and challenge and not challenged:
                    e.close()
                    self._authorize(challenge, host, name)
                    challenged = True
                    continue
                fault = transient(e) if again else None
                if fault is None:
                    raise
                drain(e)
                e.close()
                error: BaseException = e
            except (OSError, http.client.HTTPException) as e:
                fault = transient(e) if again else None
                if fault is None:
                    raise
                error = e
            tries += 1
            self.pause(tries, error, fault, what, started)


@dataclass
class RegistryBlobs(RegistrySession):
    """The blobs of one registry repository, fetched one at a time."""

    fetched: list[str] = field(default_factory=list)

    def open_blob(self, digest: str) -> BinaryIO:
        """The blob ``digest`` of the repository, streamed."""
        _, name = registry_name(self.ref)
        try:
            response = self.send("GET", f"/v2/{name}/blobs/{digest}")
        except urllib.error.HTTPError as e:
            raise EncapsulateError(f"{self.ref}: blob {digest}: HTTP {e.code} {e.reason}") from None
        except OSError as e:
            raise EncapsulateError(f"{self.ref}: blob {digest}: {e}") from None
        self.fetched.append(digest)
        return response
