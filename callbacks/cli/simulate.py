"""``callbacks simulate``: send a receiver a callback the way the platforms do.

``simulate`` signs a sample (or given) body exactly as the route's platform would: over the
route's configured ``public_url``, with the route's primary key and the current time, in the
route's carrier (SenseTime body fields, MetaStudio query parameters or headers, or a token URL for
``NONE`` routes). It then POSTs it to a receiver, by default the local one from ``[server]``.
It uses only the standard library's HTTP client, so the base install needs nothing more.
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import orjson

from callbacks.cli._support import (
    config_option,
    echo_json,
    fail,
    json_option,
    load_config_or_fail,
    primary_or_fail,
    route_or_fail,
)
from callbacks.config import Config, RouteConfig
from callbacks.keyfile import KeyEntry
from verify import Carrier
from verify.metastudio import sign_headers, sign_url
from verify.sensetime import sign as sensetime_sign
from verify.tokens import TOKEN_PARAM, mint_callback_url

SEND_TIMEOUT = 10.0

# --------------------------------------------------------------------------- sample bodies

_JOB_KINDS = ("video", "photo_video", "business_card", "subtitle")
_LIVE_EVENTS = ("SHOOT_SCRIPT_SWITCH", "RTMP_STREAM_STATE_CHANGE", "REPLY_COMMAND_FINISH")


def event_choices(route: RouteConfig) -> tuple[str, ...]:
    """The documented body shapes ``--event`` can pick for ``route`` (the first is the default)."""
    if route.provider == "sensetime":
        return ("task", "live_room")
    if route.kind == "tts":
        return ("FINISHED", "ERROR", "WAITING")
    if route.kind == "live":
        return _LIVE_EVENTS
    return ("SUCCEED", "FAILED")


def sample_body(route: RouteConfig, event: str) -> dict[str, Any]:
    """A body of the route's documented shape, with fresh ids so it is never a duplicate."""
    job = f"sim-{secrets.token_hex(8)}"
    if route.provider == "sensetime":
        task = 10**11 + secrets.randbelow(9 * 10**11)
        if event == "live_room":
            return {"id": task, "status": 35, "userData": "callbacks simulate"}
        return {
            "taskId": task,
            "type": "video",
            "status": "SUCCESS",
            "userData": "callbacks simulate",
        }
    if route.kind == "tts":
        body: dict[str, Any] = {"status": event, "job_id": job}
        if event == "FINISHED":
            body |= {
                "audio_file_download_url": f"https://example.com/simulated/{job}.mp3",
                "subtitle_file_download_url": f"https://example.com/simulated/{job}.srt",
                "audio_duration": 3.5,
            }
        return body
    if route.kind == "live":
        return {"event_type": event, "message": orjson.dumps(_live_message(event, job)).decode()}
    return {"result": event, "asset_id": f"sim-asset-{secrets.token_hex(6)}", "job_id": job}


def _live_message(event: str, job: str) -> dict[str, Any]:
    message: dict[str, Any] = {"room_id": "sim-room", "job_id": job}
    if event == "SHOOT_SCRIPT_SWITCH":
        message |= {
            "scene_script_name": "opening",
            "shoot_script_sequence_no": 1,
            "shoot_script_title": "Welcome",
        }
    elif event == "RTMP_STREAM_STATE_CHANGE":
        message |= {
            "output_url": "rtmp://live.example.com/app",
            "stream_key": "simulated-stream-key",
            "state": "CONNECTED",
        }
    else:
        message["reply_id"] = f"sim-reply-{secrets.token_hex(4)}"
    return message


# --------------------------------------------------------------------------- signing


@dataclass
class SignedRequest:
    """What the platform would send: body, the query of the URL it calls, and headers."""

    body: bytes
    query: str
    headers: dict[str, str] = field(default_factory=dict)


def sign_request(
    route: RouteConfig, key: KeyEntry, body: dict[str, Any], *, now: int, tamper: bool
) -> SignedRequest:
    """Sign ``body`` for ``route`` with ``key``; ``tamper`` breaks the signature (or token)."""
    public_query = urlsplit(route.public_url).query
    if route.provider == "sensetime":
        return _sign_sensetime(route, key, body, now=now, tamper=tamper, query=public_query)
    data = orjson.dumps(body)
    if route.auth == "NONE":
        job = body.get("job_id")
        url = mint_callback_url(
            route.public_url,
            route.name,
            [key.as_key()],
            job=job if isinstance(job, str) and job else None,
            clock=lambda: now,
        )
        return SignedRequest(data, _tamper_param(urlsplit(url).query, TOKEN_PARAM, tamper))
    carrier = route.carrier
    if carrier is Carrier.HEADERS:
        headers = sign_headers(route.public_url, key.secret, now)
        if tamper:
            headers[carrier.secret_name] = flip_hex(headers[carrier.secret_name])
        return SignedRequest(data, public_query, headers)
    query = urlsplit(sign_url(route.public_url, key.secret, now, carrier=carrier)).query
    return SignedRequest(data, _tamper_param(query, carrier.secret_name, tamper))


def _sign_sensetime(
    route: RouteConfig,
    key: KeyEntry,
    body: dict[str, Any],
    *,
    now: int,
    tamper: bool,
    query: str,
) -> SignedRequest:
    signature = sensetime_sign(route.public_url, now, key.secret)
    signed = {**body, "timestamp": now, "signature": flip_hex(signature) if tamper else signature}
    return SignedRequest(orjson.dumps(signed), query)


def flip_hex(text: str) -> str:
    """``text`` with its first hex digit changed: a signature that no longer matches."""
    first = text[0]
    return ("1" if first == "0" else "0") + text[1:]


def _tamper_param(query: str, name: str, tamper: bool) -> str:
    """The raw query with parameter ``name``'s value forged; other pairs keep their exact bytes."""
    if not tamper:
        return query
    prefix = f"{name}="
    pairs = query.split("&")
    return "&".join(
        prefix + _flip_token(p[len(prefix) :]) if p.startswith(prefix) else p for p in pairs
    )


def _flip_token(value: str) -> str:
    """Change one character of the signature part (after the last ``.``) of a token or hex MAC."""
    head, dot, sig = value.rpartition(".")
    if not dot:
        return flip_hex(value)
    return f"{head}.{('B' if sig[0] == 'A' else 'A')}{sig[1:]}"


# --------------------------------------------------------------------------- sending


@dataclass
class Answer:
    status: int
    content: Any


def default_target(config: Config, route: RouteConfig) -> str:
    host = config.server.host
    if host in ("0.0.0.0", ""):  # noqa: S104 - we connect to it, not bind it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}{route.path}"


def with_query(url: str, query: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


def send(url: str, request: SignedRequest) -> Answer:
    """POST the signed request; a refused connection exits 1 with a hint."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("only http(s) URLs")
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=request.body,
        method="POST",
        headers={"Content-Type": "application/json", **request.headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=SEND_TIMEOUT) as resp:  # noqa: S310
            return Answer(resp.status, _decode(resp.read()))
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, _decode(exc.read()))
    except urllib.error.URLError as exc:
        plain = with_query(url, "")
        if isinstance(exc.reason, ConnectionRefusedError):
            fail(f"no receiver at {plain}: start one with `callbacks serve`")
        fail(f"cannot reach {plain}: {exc.reason}")
    except TimeoutError:
        fail(f"{with_query(url, '')} did not answer within {SEND_TIMEOUT:g}s")


def _decode(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")[:200]


def describe(answer: Answer) -> str:
    content = answer.content
    if not isinstance(content, dict):
        return f"{answer.status} (not a receiver answer: {content!r})"
    if content.get("ok") and "delivery_id" in content:
        outcome = "duplicate" if content.get("duplicate") else "stored"
        return f"{answer.status} {outcome} delivery_id={content['delivery_id']}"
    return f"{answer.status} {content.get('reason', 'unknown')}"


# --------------------------------------------------------------------------- commands


@click.command("simulate", short_help="Send ROUTE a correctly signed test callback.")
@config_option
@click.argument("route_name", metavar="ROUTE")
@click.option(
    "--body",
    "body_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Send this JSON object instead of a sample (SenseTime auth fields are replaced).",
)
@click.option(
    "--event",
    "event",
    metavar="TYPE",
    help="Which sample: sensetime task|live_room; metastudio jobs SUCCEED|FAILED; tts "
    "FINISHED|ERROR|WAITING; live SHOOT_SCRIPT_SWITCH|RTMP_STREAM_STATE_CHANGE|"
    "REPLY_COMMAND_FINISH.",
)
@click.option(
    "--url",
    "target",
    metavar="URL",
    help="Receiver to send to (default: from [server] and the route's path); its query is "
    "replaced by the signed one.",
)
@click.option("--tamper", is_flag=True, help="Send a forged signature (or token): expect a 4xx.")
@json_option
def simulate(
    config_path: str | None,
    route_name: str,
    body_file: Path | None,
    event: str | None,
    target: str | None,
    tamper: bool,
    as_json: bool,
) -> None:
    """Send ROUTE a correctly signed callback and print the receiver's answer.

    The body is signed the way the route's platform signs it: over the route's public_url, with
    its primary key, now. Exit 0 when the answer is what was expected (2xx, or 4xx with
    --tamper), else 1.

    \b
    Example:
      callbacks simulate sensetime
      callbacks simulate metastudio-live --event RTMP_STREAM_STATE_CHANGE
      callbacks simulate sensetime --tamper            # expect: 401 signature_mismatch
    """
    if body_file is not None and event is not None:
        raise click.UsageError("pass --body FILE or --event TYPE, not both")
    config = load_config_or_fail(config_path)
    route = route_or_fail(config, route_name)
    body = _load_body(body_file) if body_file else sample_body(route, _pick_event(route, event))
    url = _target(config, route, target)
    key = primary_or_fail(config, route)
    request = sign_request(route, key, body, now=int(time.time()), tamper=tamper)
    how = "token minted" if route.auth == "NONE" else "signed"
    click.echo(
        f"POST {url}  ({route.describe}, {how} with key {key.id} for {route.public_url}"
        f"{', tampered' if tamper else ''})",
        err=True,
    )
    answer = send(with_query(url, request.query), request)
    expected_ok = 400 <= answer.status < 500 if tamper else 200 <= answer.status < 300
    _report(answer, route, key, tamper=tamper, ok=expected_ok, as_json=as_json)
    if not expected_ok:
        raise SystemExit(1)


def _pick_event(route: RouteConfig, event: str | None) -> str:
    choices = event_choices(route)
    if event is None:
        return choices[0]
    for choice in choices:
        if choice.lower() == event.lower():
            return choice
    raise click.BadParameter(
        f"{event!r} is not an event of route {route.name!r} ({route.describe}); "
        f"choose from: {', '.join(choices)}",
        param_hint="--event",
    )


def _load_body(path: Path) -> dict[str, Any]:
    try:
        body = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"{path} is not valid JSON ({exc})", param_hint="--body") from None
    if not isinstance(body, dict):
        raise click.BadParameter(f"{path} must hold a JSON object", param_hint="--body")
    return body


def _target(config: Config, route: RouteConfig, target: str | None) -> str:
    if target is None:
        return default_target(config, route)
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(
            f"{target!r} is not an http(s) URL, e.g. http://127.0.0.1:8000{route.path}",
            param_hint="--url",
        )
    return with_query(target, "")


def _report(
    answer: Answer, route: RouteConfig, key: KeyEntry, *, tamper: bool, ok: bool, as_json: bool
) -> None:
    if as_json:
        echo_json(
            {
                "status": answer.status,
                "response": answer.content,
                "route": route.name,
                "key_id": key.id,
                "tampered": tamper,
                "expected": "4xx" if tamper else "2xx",
                "ok": ok,
            }
        )
    else:
        click.echo(describe(answer))
    if not ok:
        click.echo(_why(answer, route, key, tamper=tamper), err=True)


def _why(answer: Answer, route: RouteConfig, key: KeyEntry, *, tamper: bool) -> str:
    if tamper:
        return "error: the receiver accepted a forged callback; expected a 4xx"
    if answer.status == 404:
        return f"error: no route at {route.path}: is the receiver running with this config?"
    if answer.status == 401:
        return (
            f"error: the receiver refused key {key.id}: is it running with this key file, "
            "and has it reloaded it (`keys_loaded` in its log)?"
        )
    return f"error: the receiver answered {answer.status}; expected a 2xx"


def register(main: click.Group) -> None:
    main.add_command(simulate)
