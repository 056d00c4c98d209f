"""An async client for MetaStudio's job queries (``pip install avatar-callbacks[metastudio]``).

Why not the official SDK: its "async" client runs the blocking ``requests`` library on an
8-thread pool, importing it costs ~300 ms and ~50 MiB (1400 modules), and every query pays for a
thread hop. This client is httpx on the event loop, with the SDK's signature
(:mod:`callbacks.confirm.signer`, proven byte-identical to the SDK's by the tests).

Failures are sorted for the caller: 404 is ``None`` (no such job); 401/403 raise
:class:`ApiConfigurationError` at once; 429, 5xx, timeouts and connection errors are retried with
exponential backoff and full jitter, then raise :class:`ApiUnavailable`; any other 4xx raises
:class:`JobQueryRejected`. No error or log line carries a credential, signature or token.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from callbacks.confirm.credentials import AkSk, Credentials, IamToken
from callbacks.confirm.details import JobDetails, parse_job_details
from callbacks.confirm.errors import (
    ApiConfigurationError,
    ApiUnavailable,
    JobQueryRejected,
    MetaStudioApiError,
)
from callbacks.confirm.kinds import query_path
from callbacks.confirm.signer import sign_request

_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff_initial: float = 0.25
    backoff_max: float = 8.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: anywhere up to the exponential bound, so replicas do not retry in step."""
        return rng.uniform(0, min(self.backoff_max, self.backoff_initial * 2**attempt))


class MetaStudioClient:
    """Queries one project's jobs. Use as ``async with MetaStudioClient(...) as client``."""

    def __init__(
        self,
        endpoint: str,
        project_id: str,
        credentials: Credentials | Callable[[], Credentials],
        *,
        timeout: float = 10.0,
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("endpoint must be an absolute http(s) URL")
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.project_id = project_id
        self._host = parts.netloc
        # A callable is asked on every request: the server's LiveCredentials, which follows
        # the key file, so rotated credentials are used without a restart.
        self._credentials = credentials if callable(credentials) else (lambda: credentials)
        self._retry = retry or RetryPolicy()
        self._limit = asyncio.Semaphore(max_concurrency)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.endpoint,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_concurrency),
            transport=transport,
            trust_env=False,
        )

    async def __aenter__(self) -> MetaStudioClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def job(self, kind: str, job_id: str, *, room_id: str | None = None) -> JobDetails | None:
        """The job's details, or ``None`` when the platform does not know it (404)."""
        path = query_path(kind, self.project_id, job_id, room_id)
        raw = await self.get_json(path)
        if raw is None:
            return None
        return parse_job_details(kind, job_id, raw, fetched_at=datetime.now(UTC))

    async def get_json(self, path: str) -> dict[str, Any] | None:
        """GET ``path`` with retries; the JSON object, or ``None`` on 404."""
        attempt = 0
        while True:
            try:
                return await self._attempt(path)
            except ApiUnavailable:
                attempt += 1
                if attempt >= self._retry.attempts:
                    raise
            await self._sleep(self._retry.delay(attempt - 1, self._rng))

    async def _attempt(self, path: str) -> dict[str, Any] | None:
        async with self._limit:
            try:
                response = await self._http.get(path, headers=self._auth_headers(path))
            except httpx.TimeoutException:
                raise ApiUnavailable("timeout") from None
            except httpx.TransportError as exc:
                raise ApiUnavailable("connection_failed", type(exc).__name__) from None
        return _interpret(response)

    def _auth_headers(self, path: str) -> dict[str, str]:
        credentials = self._credentials()
        if isinstance(credentials, IamToken):
            return {"X-Auth-Token": credentials.token}
        assert isinstance(credentials, AkSk)
        headers = {"X-Project-Id": self.project_id}
        signed = sign_request(
            ak=credentials.ak,
            sk=credentials.sk,
            method="GET",
            host=self._host,
            path=path,
            headers=headers,
        )
        return headers | signed.headers


def _interpret(response: httpx.Response) -> dict[str, Any] | None:
    status = response.status_code
    if status == 404:
        return None
    if status in (401, 403):
        raise ApiConfigurationError(f"http_{status}", _platform_error(response))
    if status in _TRANSIENT_STATUSES:
        raise ApiUnavailable(f"http_{status}", _platform_error(response))
    if not 200 <= status < 300:
        raise JobQueryRejected(f"http_{status}", _platform_error(response), status=status)
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ApiUnavailable("malformed_answer", "not JSON") from None
    if not isinstance(body, dict):
        raise ApiUnavailable("malformed_answer", "not a JSON object")
    return body


def _platform_error(response: httpx.Response) -> str:
    """The platform's ``error_code`` (``MSS.00000001``), short: never the body verbatim."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    code = body.get("error_code") if isinstance(body, dict) else None
    return code[:64] if isinstance(code, str) and code.isprintable() else ""


__all__ = ["MetaStudioApiError", "MetaStudioClient", "RetryPolicy"]
