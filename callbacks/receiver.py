"""The one place a callback request goes: authenticate, read, parse, intake, answer.

Order matters and is the same for every route:

1. MetaStudio query/header signatures and callback-URL tokens are checked *before* the body is
   read, so a forged flood costs no body reading or JSON parsing.
2. The body is read up to the size limit (413 beyond it, never buffered past it) and parsed as
   JSON whatever the Content-Type says. SenseTime's signature lives in the body, so it is
   verified here.
3. The intake (:mod:`callbacks.intake`) commits the callback to the store; only then does the
   platform get its 200. A store failure answers 503 so the platform retries.

Every answer is a short JSON body with a stable ``reason``; no key or signature is ever in it.
Every accepted callback gets one log line; rejections too, up to a burst per route and reason
per second, past which they are counted in one summary line (see ``RejectionSampler``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Send

from callbacks import metrics
from callbacks.config import Config, RouteConfig
from callbacks.errors import Rejected, StoreUnavailable
from callbacks.intake import Intake, inbound_callback
from callbacks.live_keys import LiveKeys
from callbacks.logs import RejectionSampler
from verify import (
    BadToken,
    Carrier,
    KeyRing,
    MalformedPayload,
    MalformedSignature,
    MalformedTimestamp,
    NoKeys,
    VerificationError,
    verify_callback_url_token,
    verify_metastudio_callback,
    verify_sensetime_callback,
)

log = structlog.get_logger("avatar_callbacks.request")

_MALFORMED = (MalformedPayload, MalformedSignature, MalformedTimestamp)
INTERNAL_ERROR = "internal_error"
MAX_JSON_DEPTH = 253
"""The deepest nesting a body (and a live event's ``message``) may have, ``[]`` being one level.

Later steps serialise a body with orjson, which stops at 254 levels, and some wrap it once
first (the dedupe digest of a live event's body, ``events show --json``): at most 253 levels,
everything the receiver accepts can be digested, stored and shown. Real callbacks nest a few
levels; a deeper body is refused (400 ``body_too_deep``) rather than stored and lost later.
"""
_APP = "-"  # the sampling bucket of requests outside the callback routes
_MAX_LOGGED_PATH = 200


class TokenJobMismatch(BadToken):
    reason = "token_wrong_job"


@dataclass(frozen=True)
class Authenticated:
    key_id: str | None
    timestamp: int | None = None
    token_job: str | None = None


def json_response(status: int, content: Mapping[str, Any]) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


@dataclass(frozen=True, slots=True)
class Answer:
    """A callback route's answer: a status and a short JSON body, sent as two ASGI messages.

    Starlette's ``Response`` would build the same two messages, after a header list, a charset
    check and a background-task hook, a third of a forged request's answer path (every callback,
    accepted or refused, is answered here, so the cost is paid per request).
    """

    status: int
    body: bytes

    async def __call__(self, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(self.body)),
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


@functools.cache
def _refusal_body(reason: str) -> bytes:
    """A refusal's body, one per reason: a flood of the same refusal builds none."""
    return orjson.dumps({"ok": False, "reason": reason})


class Receiver:
    """Holds what every request needs; ``handle`` is the request path for every callback route."""

    def __init__(
        self,
        config: Config,
        intake: Intake,
        keys: LiveKeys,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.intake = intake
        self.keys = keys
        self.clock = clock
        self.body_limit = config.server.body_limit
        self._metrics = {r.name: metrics.RouteMetrics(r.name) for r in config.routes}
        self._rejections = RejectionSampler()

    async def handle(self, request: Request, route: RouteConfig) -> Answer:
        started = time.perf_counter()
        fields: dict[str, Any] = {"route": route.name, "provider": route.provider}
        failure: Exception | None = None
        try:
            status, outcome, content = await self._process(request, route, fields)
            reason = "duplicate" if outcome == "duplicate" else "stored"
            body = orjson.dumps(content)
        except Exception as exc:
            status, reason = _failure(exc)
            # Kept for the 500's log line only: the exception's traceback holds this frame, so
            # keeping every rejection's would make a reference cycle per request, left to the
            # garbage collector (a forged flood ran it every ~40 requests, 5-7 µs a request).
            failure = exc if status == 500 else None
            outcome = "error" if status >= 500 else "rejected"
            body = _refusal_body(reason)
        latency = time.perf_counter() - started
        route_metrics = self._metrics[route.name]
        route_metrics.count(outcome, reason)
        route_metrics.latency.observe(latency)
        if self._should_log(route.name, outcome, reason):
            if status == 500:
                # A bug of ours: the traceback names code, not request content; sampled like
                # rejections, so an input that triggers it cannot flood the log.
                log.error(
                    "callback_failed",
                    exc_info=failure,
                    status=status,
                    latency_ms=round(latency * 1000, 3),
                    **fields,
                )
            else:
                log.info(
                    "callback",
                    outcome=outcome,
                    reason=reason,
                    status=status,
                    latency_ms=round(latency * 1000, 3),
                    **fields,
                )
        return Answer(status, body)

    def _should_log(self, route: str, outcome: str, reason: str) -> bool:
        """Accepted callbacks always get their line; rejections and failures are sampled."""
        for (route_name, why), count in self._rejections.summaries().items():
            log.warning(
                "callbacks_rejected_unlogged", route=route_name, reason=why, count=count, period_s=1
            )
        return outcome in ("accepted", "duplicate") or self._rejections.admit(route, reason)

    def log_app_failure(self, exc: Exception, path: str) -> None:
        """An exception outside a callback route (health, metrics): one sampled log line."""
        if self._should_log(_APP, "error", INTERNAL_ERROR):
            log.error("request_failed", exc_info=exc, path=path[:_MAX_LOGGED_PATH])

    async def _process(
        self, request: Request, route: RouteConfig, fields: dict[str, Any]
    ) -> tuple[int, str, dict[str, Any]]:
        ring = self.keys.ring(route.name)
        url_auth = self._authenticate_request(request, route, ring)
        body = await read_limited_body(request, self.body_limit)
        raw = parse_json_object(body)
        if route.kind == "live":
            _check_live_message(raw)
        if url_auth is None:
            auth = self._authenticate_sensetime(route, ring, raw)
        else:
            auth = url_auth
            if auth.token_job is not None:
                _check_token_job(auth.token_job, raw)
        fields["key_id"] = auth.key_id
        received_at = self.clock()
        if auth.timestamp is not None:
            self._metrics[route.name].clock_skew.observe(received_at - auth.timestamp)
        if auth.key_id is not None:
            self._metrics[route.name].verified(auth.key_id)

        callback = inbound_callback(route, raw, body, key_id=auth.key_id, received_at=received_at)
        delivery_id = fields["delivery_id"] = callback.delivery_id
        fields["event_type"] = callback.event_type
        try:
            accepted = await self.intake.accept(callback, route, raw)
        except StoreUnavailable as exc:
            log.error("store_unavailable", error=str(exc), route=route.name)
            raise Rejected(503, "store_unavailable") from None
        if accepted.duplicate:
            fields["duplicate_of"] = accepted.duplicate_of
            return 200, "duplicate", {"ok": True, "delivery_id": delivery_id, "duplicate": True}
        return 200, "accepted", {"ok": True, "delivery_id": delivery_id, "duplicate": False}

    def _authenticate_request(
        self, request: Request, route: RouteConfig, ring: KeyRing
    ) -> Authenticated | None:
        """MetaStudio: everything that authenticates is in the URL or headers, so check it first."""
        if route.provider != "metastudio":
            return None
        query = request.scope.get("query_string", b"")
        if route.auth == "NONE":
            if route.allow_unsigned and b"token=" not in query:
                return Authenticated(key_id=None)
            token = verify_callback_url_token(query, route.name, ring, clock=self.clock)
            return Authenticated(key_id=token.key_id, token_job=token.job)
        if route.allow_unsigned and not _has_metastudio_auth(query, request, route):
            return Authenticated(key_id=None)
        result = verify_metastudio_callback(
            route.public_url,
            query,
            ring,
            carrier=route.carrier,
            headers=request.headers,
            clock=self.clock,
            max_age=route.max_age,
            max_future_skew=route.max_future_skew,
        )
        return Authenticated(key_id=result.key_id, timestamp=result.timestamp)

    def _authenticate_sensetime(
        self, route: RouteConfig, ring: KeyRing, raw: Mapping[str, Any]
    ) -> Authenticated:
        if route.allow_unsigned and "signature" not in raw and "timestamp" not in raw:
            return Authenticated(key_id=None)
        result = verify_sensetime_callback(
            route.public_url,
            raw,
            ring,
            clock=self.clock,
            max_age=route.max_age,
            max_future_skew=route.max_future_skew,
        )
        return Authenticated(key_id=result.key_id, timestamp=result.timestamp)


def _failure(exc: Exception) -> tuple[int, str]:
    """The status and reason for a request that did not end in a 200.

    A failed verification is answered here, the one place for every verifier: the reason is the
    error's own, the status says whose fault it was.
    """
    if isinstance(exc, Rejected):
        return exc.status, exc.reason
    if isinstance(exc, VerificationError):
        return _verification_status(exc), exc.reason
    if isinstance(exc, ClientDisconnect):
        return 400, "client_disconnected"
    return 500, INTERNAL_ERROR  # a bug of ours: the platform retries


def _has_metastudio_auth(query: bytes, request: Request, route: RouteConfig) -> bool:
    carrier = route.carrier
    if carrier is Carrier.HEADERS:
        return carrier.secret_name in request.headers or carrier.time_name in request.headers
    names = (carrier.secret_name.encode() + b"=", carrier.time_name.encode() + b"=")
    return any(name in query for name in names)


def _check_token_job(token_job: str, raw: Mapping[str, Any]) -> None:
    """A token minted for one job authenticates that job's result only: not another job's, and
    not a body that names no job (it could be any job's)."""
    job = raw.get("job_id")
    if job is None:
        raise TokenJobMismatch("the token was minted for a job and the body names none")
    if str(job) != token_job:
        raise TokenJobMismatch("the token was minted for another job")


def _verification_status(exc: VerificationError) -> int:
    if isinstance(exc, NoKeys):  # our configuration, not the sender: let the platform retry
        return 503
    if isinstance(exc, _MALFORMED):
        return 400
    return 401


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it exceeds ``limit``, never holding more than that."""
    declared = _content_length(request.scope["headers"])
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise Rejected(400, "bad_content_length")
        if int(declared) > limit:
            raise Rejected(413, "body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, "body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _content_length(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The first Content-Length header, straight from the ASGI scope: building Starlette's
    ``Headers`` for this one look-up cost 3-4 µs a request (the servers lowercase names)."""
    for name, value in headers:
        if name == b"content-length":
            return value
    return None


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise Rejected(400, "empty_body")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Rejected(400, "malformed_json") from None
    if not isinstance(raw, dict):
        raise Rejected(400, "json_not_an_object")
    if _too_deep(body, raw):
        raise Rejected(400, "body_too_deep")
    return raw


def _check_live_message(raw: Mapping[str, Any]) -> None:
    """A live event's ``message`` is JSON in a string, parsed and shown on its own later."""
    message = raw.get("message")
    if not isinstance(message, str) or not _may_be_too_deep(message):
        return
    try:
        decoded = orjson.loads(message)
    except orjson.JSONDecodeError:
        return  # not JSON: kept as text, nothing parses it deeper
    if _too_deep(message, decoded):
        raise Rejected(400, "body_too_deep")


def _may_be_too_deep(text: bytes | str) -> bool:
    # Each level opens a bracket, so a text with fewer brackets cannot be too deep (brackets in
    # strings only over-count). Typical callbacks stop here, at the cost of two C scans.
    if isinstance(text, bytes):
        return text.count(b"[") + text.count(b"{") > MAX_JSON_DEPTH
    return text.count("[") + text.count("{") > MAX_JSON_DEPTH


def _too_deep(text: bytes | str, value: Any) -> bool:
    if not _may_be_too_deep(text):
        return False
    try:
        # orjson serialises at most 254 levels: with one level of wrapping it succeeds exactly
        # when ``value`` is at most MAX_JSON_DEPTH deep, at C speed whatever the body's shape.
        orjson.dumps([value])
    except orjson.JSONEncodeError:
        return True
    return False
