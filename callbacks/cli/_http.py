"""One POST with the standard library's client, for the commands that send (``simulate``,
``events forward``): the base install needs no HTTP library for them."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from callbacks.errors import CallbacksError


class PostFailed(CallbacksError):
    """No HTTP answer: refused, unreachable or too slow. The message never holds the query."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass
class Answer:
    status: int
    content: Any


def without_query(url: str) -> str:
    """``url`` without its query and fragment, which may carry a signature or a token."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> Answer:
    """POST ``body``; any HTTP status is an :class:`Answer`, no answer is :class:`PostFailed`."""
    if not is_http_url(url):
        raise PostFailed(f"{without_query(url)!r} is not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    plain = without_query(url)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            return Answer(resp.status, decode_answer(resp.read()))
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, decode_answer(exc.read()))
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            raise PostFailed(f"nothing listens at {plain}", refused=True) from None
        if isinstance(exc.reason, TimeoutError):
            raise PostFailed(f"{plain} did not answer within {timeout:g}s") from None
        raise PostFailed(f"cannot reach {plain}: {exc.reason}") from None
    except TimeoutError:
        raise PostFailed(f"{plain} did not answer within {timeout:g}s") from None
    except (ConnectionError, OSError) as exc:  # reset mid-answer, and the like
        raise PostFailed(f"{plain}: {type(exc).__name__}") from None


def decode_answer(data: bytes) -> Any:
    """A JSON answer parsed, else the first 200 characters of its text."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")[:200]
