"""Helpers for *your* tests: callbacks for a configured route, signed as its platform would.

One call gives what the platform would send to a route of your ``callbacks.toml``: the body,
the query of the URL it calls and any headers, signed over the route's ``public_url`` with the
key you give, in the route's carrier (SenseTime body fields, MetaStudio ``MSS_A`` query or
``MSS_A_HEAD`` headers, or a callback-URL token for ``NONE`` routes)::

    from callbacks import load_config
    from callbacks.testing import sample_body, sign_callback

    route = load_config("callbacks.toml").route("sensetime")
    signed = sign_callback(route, "MyAuthKey2026x", sample_body(route))
    response = client.post(signed.url(f"http://127.0.0.1:8000{route.path}"),
                           content=signed.body, headers=signed.headers)

``callbacks simulate`` sends exactly this. For the bare verifiers, without a route, see
:mod:`verify.testing`, on which this module is built.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from callbacks.config import RouteConfig
from verify import Carrier
from verify.testing import signed_metastudio_headers, signed_metastudio_url, signed_sensetime_body
from verify.tokens import TOKEN_PARAM, mint_callback_url

__all__ = [
    "SignedCallback",
    "sample_body",
    "sample_events",
    "sign_callback",
]

_LIVE_EVENTS = ("SHOOT_SCRIPT_SWITCH", "RTMP_STREAM_STATE_CHANGE", "REPLY_COMMAND_FINISH")


@dataclass(frozen=True)
class SignedCallback:
    """What the platform sends: the body, the query of the URL it calls, and headers."""

    body: bytes
    query: str
    headers: dict[str, str] = field(default_factory=dict)

    def url(self, target: str) -> str:
        """``target`` (where your receiver listens for the route) with the signed query."""
        parts = urlsplit(target)
        return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", self.query, ""))


def sample_events(route: RouteConfig) -> tuple[str, ...]:
    """The documented body shapes :func:`sample_body` can make for ``route`` (first: default)."""
    if route.provider == "sensetime":
        return ("task", "live_room")
    if route.kind == "tts":
        return ("FINISHED", "ERROR", "WAITING")
    if route.kind == "live":
        return _LIVE_EVENTS
    return ("SUCCEED", "FAILED")


def sample_body(
    route: RouteConfig, event: str | None = None, *, seq: int | None = None
) -> dict[str, Any]:
    """A body of the route's documented shape (``event`` from :func:`sample_events`).

    Its ids are fresh random ones, so it is never a duplicate of an earlier one; with ``seq``
    they are derived from it instead, so equal ``seq`` means the same notification (a retry).
    """
    choices = sample_events(route)
    event = choices[0] if event is None else event
    if event not in choices:
        raise ValueError(f"{event!r} is not an event of route {route.name!r}: {choices}")
    tag = secrets.token_hex(8) if seq is None else str(seq)
    job = f"job-{tag}"
    if route.provider == "sensetime":
        task = 10**11 + (secrets.randbelow(9 * 10**11) if seq is None else seq)
        if event == "live_room":
            return {"id": task, "status": 35, "userData": f"sample-{tag}"}
        return {"taskId": task, "type": "video", "status": "SUCCESS", "userData": f"sample-{tag}"}
    if route.kind == "tts":
        body: dict[str, Any] = {"status": event, "job_id": job}
        if event == "FINISHED":
            body |= {
                "audio_file_download_url": f"https://example.com/sample/{job}.mp3",
                "subtitle_file_download_url": f"https://example.com/sample/{job}.srt",
                "audio_duration": 3.5,
            }
        return body
    if route.kind == "live":
        return {"event_type": event, "message": orjson.dumps(_live_message(event, job)).decode()}
    return {"result": event, "asset_id": f"asset-{tag}", "job_id": job}


def _live_message(event: str, job: str) -> dict[str, Any]:
    message: dict[str, Any] = {"room_id": "sample-room", "job_id": job}
    if event == "SHOOT_SCRIPT_SWITCH":
        message |= {
            "scene_script_name": "opening",
            "shoot_script_sequence_no": 1,
            "shoot_script_title": "Welcome",
        }
    elif event == "RTMP_STREAM_STATE_CHANGE":
        message |= {
            "output_url": "rtmp://live.example.com/app",
            "stream_key": "sample-stream-key",
            "state": "CONNECTED",
        }
    else:
        message["reply_id"] = f"reply-{job}"
    return message


def sign_callback(
    route: RouteConfig,
    key: str,
    payload: Mapping[str, Any],
    *,
    timestamp: int | None = None,
    job: str | None = None,
    tamper: bool = False,
) -> SignedCallback:
    """``payload`` as the route's platform would send it, signed with ``key`` at ``timestamp``
    (default: now, which is what a running receiver checks against).

    For ``NONE`` routes the token is bound to ``job``, else to the payload's ``job_id`` if it has
    one. ``tamper`` forges it: one character of the signature (or token) changed, so a receiver
    must refuse it.
    """
    now = int(time.time()) if timestamp is None else timestamp
    configured_query = urlsplit(route.public_url).query
    if route.provider == "sensetime":
        body = signed_sensetime_body(route.public_url, key, payload, timestamp=now)
        if tamper:
            document = orjson.loads(body)
            document["signature"] = _flip_hex(document["signature"])
            body = orjson.dumps(document)
        return SignedCallback(body, configured_query)
    data = orjson.dumps(dict(payload))
    if route.auth == "NONE":
        bound = payload.get("job_id") if job is None else job
        url = mint_callback_url(
            route.public_url,
            route.name,
            [key],
            job=bound if isinstance(bound, str) and bound else None,
            clock=lambda: now,
        )
        return SignedCallback(data, _forge_param(urlsplit(url).query, TOKEN_PARAM, tamper))
    carrier = route.carrier
    if carrier is Carrier.HEADERS:
        headers = signed_metastudio_headers(route.public_url, key, timestamp=now)
        if tamper:
            headers[carrier.secret_name] = _flip_hex(headers[carrier.secret_name])
        return SignedCallback(data, configured_query, headers)
    url = signed_metastudio_url(route.public_url, key, timestamp=now, carrier=carrier)
    return SignedCallback(data, _forge_param(urlsplit(url).query, carrier.secret_name, tamper))


def _flip_hex(text: str) -> str:
    """``text`` with its first hex digit changed: a signature that no longer matches."""
    return ("1" if text[0] == "0" else "0") + text[1:]


def _forge_param(query: str, name: str, tamper: bool) -> str:
    """The raw query with parameter ``name``'s value forged; other pairs keep their exact bytes."""
    if not tamper:
        return query
    prefix = f"{name}="
    return "&".join(
        prefix + _flip_token(p[len(prefix) :]) if p.startswith(prefix) else p
        for p in query.split("&")
    )


def _flip_token(value: str) -> str:
    """Change one character of the signature part (after the last ``.``) of a token or hex MAC."""
    head, dot, sig = value.rpartition(".")
    if not dot:
        return _flip_hex(value)
    return f"{head}.{('B' if sig[0] == 'A' else 'A')}{sig[1:]}"
