"""The CalDAV server, through the `caldav` library's client.

Writes are plain PUT/DELETE with explicit preconditions (`If-None-Match: *` to create,
`If-Match: <etag>` to update or delete) so that we never overwrite an edit we have not seen and
never create a second copy; reads use sync-collection (RFC 6578) and calendar-multiget. Every
failure that waiting may cure (no connection, a timeout, a 5xx) becomes `Unavailable`; the
caller leaves its work queued.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from caldav import DAVClient
from caldav.lib import error as dav_error

ICS = "text/calendar; charset=utf-8"


class Unavailable(Exception):
    """The server cannot be reached or failed (5xx): try again later."""


class ServerRefused(Exception):
    """The server answered with a status that waiting will not change (a 4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConfigError(ValueError):
    """The calendar configuration cannot be used (no password, unreadable file)."""


@dataclass
class Changes:
    """A collection's changes since a sync token: href name -> ETag, deleted names, new token."""

    token: str | None
    changed: dict[str, str] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    full: bool = False  # the token was refused (or there was none): this is the whole listing


def read_password(env: str | None, file: str | None) -> str | None:
    """The password from the environment variable or the file named in the settings."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"the calendar password variable {env} is not set")
        return value
    if file:
        try:
            return Path(file).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the calendar password file {file}: "
                              f"{exc.strerror}") from None
    return None


def name_of(url: str) -> str:
    """The last path segment of an object URL: our hrefs are `<sanitised uid>.ics`."""
    return unquote(urlsplit(str(url)).path.rstrip("/").rsplit("/", 1)[-1])


class Gateway:
    """One server, one set of credentials; collections are given by URL."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None,
                 *, timeout: int = 15) -> None:
        # Basic auth up front: negotiating costs a 401 round trip, and servers (Radicale) delay
        # answers to unauthenticated requests by about a second.
        self.client = DAVClient(  # type: ignore[operator]
            url=url, username=username, password=password, timeout=timeout,
            enable_rfc6764=False, auth_type="basic" if username else None)

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, url: str, body: str = "",
              headers: dict[str, str] | None = None) -> Any:
        try:
            response = self.client.request(url, method, body, headers or {})
        except dav_error.AuthorizationError as exc:
            raise ServerRefused(401, f"{method} {url}: not authorized ({exc.reason})") from None
        except dav_error.RateLimitError as exc:
            raise Unavailable(f"{method} {url}: rate limited") from exc
        except OSError as exc:  # niquests' ConnectionError and Timeout are OSErrors
            raise Unavailable(f"{method} {url}: {_short(exc)}") from None
        except Exception as exc:  # anything else from the HTTP stack: try later
            raise Unavailable(f"{method} {url}: {_short(exc)}") from None
        if response.status >= 500:
            raise Unavailable(f"{method} {url}: server error {response.status}")
        return response

    # ---- writes ---------------------------------------------------------------------------

    def put(self, url: str, body: bytes, etag: str | None) -> tuple[int, str | None]:
        """Create (`etag` None: If-None-Match *) or update (If-Match). Returns the status and
        the new ETag; 412 means the precondition failed (someone else was there first)."""
        headers = {"Content-Type": ICS}
        if etag is None:
            headers["If-None-Match"] = "*"
        else:
            headers["If-Match"] = etag
        response = self._call("PUT", url, body.decode(), headers)
        if response.status in (200, 201, 204):
            return response.status, response.headers.get("ETag")
        if response.status in (404, 409, 412):
            return response.status, None
        raise ServerRefused(response.status, f"PUT {url}: {response.status} {response.reason}")

    def delete(self, url: str, etag: str | None) -> int:
        """Delete if unchanged since `etag`: 2xx, 404 (gone already) or 412 (changed)."""
        headers = {"If-Match": etag} if etag else {}
        response = self._call("DELETE", url, "", headers)
        if response.status in (200, 204, 404, 412):
            return int(response.status)
        raise ServerRefused(response.status, f"DELETE {url}: {response.status} {response.reason}")

    # ---- reads ----------------------------------------------------------------------------

    def get(self, url: str) -> tuple[str | None, bytes] | None:
        """The object and its ETag, or None when it is not there."""
        response = self._call("GET", url)
        if response.status == 404:
            return None
        if response.status != 200:
            raise ServerRefused(response.status, f"GET {url}: {response.status}")
        return response.headers.get("ETag"), _raw(response)

    def changes(self, collection_url: str, token: str | None) -> Changes:
        """Changes since `token` by sync-collection; the full listing when there is no token or
        the server refuses it (RFC 6578 3.2: expired tokens get a full resync by ETag)."""
        cal = self.client.calendar(url=collection_url)
        full = token is None
        try:
            try:
                result = cal.get_objects_by_sync_token(token, load_objects=False,
                                                       disable_fallback=True)
            except (dav_error.AuthorizationError, dav_error.ReportError, dav_error.DAVError):
                if token is None:
                    raise
                full = True
                result = cal.get_objects_by_sync_token(None, load_objects=False,
                                                       disable_fallback=True)
        except OSError as exc:
            raise Unavailable(f"sync {collection_url}: {_short(exc)}") from None
        except dav_error.AuthorizationError as exc:
            raise ServerRefused(403, f"sync {collection_url}: not authorized ({exc.reason})"
                                ) from None
        except dav_error.NotFoundError:
            raise ServerRefused(404, f"sync {collection_url}: no such calendar") from None
        except dav_error.DAVError as exc:
            raise Unavailable(f"sync {collection_url}: {_short(exc)}") from None
        deleted = {name_of(str(u)) for u in getattr(result, "deleted_urls", set())}
        changed: dict[str, str] = {}
        for obj in result:
            name = name_of(str(obj.url))
            if name in deleted or not name:
                continue
            changed[name] = str(obj.props.get("{DAV:}getetag", ""))
        return Changes(token=result.sync_token, changed=changed, deleted=deleted, full=full)

    def fetch(self, collection_url: str, names: list[str]) -> dict[str, tuple[str, bytes]]:
        """name -> (ETag, data) for these objects, by one calendar-multiget."""
        if not names:
            return {}
        cal = self.client.calendar(url=collection_url)
        base = collection_url if collection_url.endswith("/") else collection_url + "/"
        try:
            objects = cal.multiget([cal.url.join(base + n) for n in names])
        except OSError as exc:
            raise Unavailable(f"multiget {collection_url}: {_short(exc)}") from None
        except dav_error.DAVError as exc:
            raise Unavailable(f"multiget {collection_url}: {_short(exc)}") from None
        out: dict[str, tuple[str, bytes]] = {}
        for obj in objects:
            data = obj.data
            raw = data.encode() if isinstance(data, str) else bytes(data or b"")
            out[name_of(str(obj.url))] = (str(obj.props.get("{DAV:}getetag", "")), raw)
        return out

    def check(self, collection_url: str) -> None:
        """Raise unless the collection answers a PROPFIND (used by `calendar setup --check`)."""
        response = self._call("PROPFIND", collection_url,
                              '<?xml version="1.0"?><propfind xmlns="DAV:"><prop><resourcetype/>'
                              "</prop></propfind>", {"Depth": "0"})
        if response.status == 404:
            raise ServerRefused(404, f"{collection_url}: no such calendar on the server")
        if response.status >= 400:
            raise ServerRefused(response.status, f"{collection_url}: {response.status}")


def _raw(response: Any) -> bytes:
    body = getattr(response, "_raw_body", None)
    if isinstance(body, bytes) and body:
        return body
    raw = getattr(response, "_raw", None)
    if isinstance(raw, bytes):
        return raw
    tree = getattr(response, "raw", b"")
    return tree.encode() if isinstance(tree, str) else bytes(tree or b"")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if "Connection refused" in first or "NewConnectionError" in first:
        return "connection refused"
    return first[:200]
