"""``callbacks simulate``: send a receiver a callback the way the platforms do.

``simulate`` signs a sample (or given) body exactly as the route's platform would: over the
route's configured ``public_url``, with the route's primary key and the current time, in the
route's carrier (SenseTime body fields, MetaStudio query parameters or headers, or a token URL for
``NONE`` routes). It then POSTs it to a receiver, by default the local one from ``[server]``.
The signing and the sample bodies are :mod:`callbacks.testing`'s, the same helpers users' tests
and ours use. It sends with the standard library's HTTP client, so the base install needs nothing
more.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import orjson

from callbacks.cli._support import (
    config_option,
    default_target,
    echo_json,
    fail,
    json_option,
    load_config_or_fail,
    primary_or_fail,
    route_or_fail,
)
from callbacks.config import Config, RouteConfig
from callbacks.keyfile import KeyEntry
from callbacks.testing import SignedCallback, sample_body, sample_events, sign_callback

SEND_TIMEOUT = 10.0

# --------------------------------------------------------------------------- sending


@dataclass
class Answer:
    status: int
    content: Any


def without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def send(url: str, request: SignedCallback) -> Answer:
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
        plain = without_query(url)
        if isinstance(exc.reason, ConnectionRefusedError):
            fail(f"no receiver at {plain}: start one with `callbacks serve`")
        fail(f"cannot reach {plain}: {exc.reason}")
    except TimeoutError:
        fail(f"{without_query(url)} did not answer within {SEND_TIMEOUT:g}s")


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
    request = sign_callback(route, key.secret, body, tamper=tamper)
    how = "token minted" if route.auth == "NONE" else "signed"
    click.echo(
        f"POST {url}  ({route.describe}, {how} with key {key.id} for {route.public_url}"
        f"{', tampered' if tamper else ''})",
        err=True,
    )
    answer = send(request.url(url), request)
    expected_ok = 400 <= answer.status < 500 if tamper else 200 <= answer.status < 300
    _report(answer, route, key, tamper=tamper, ok=expected_ok, as_json=as_json)
    if not expected_ok:
        raise SystemExit(1)


def _pick_event(route: RouteConfig, event: str | None) -> str:
    choices = sample_events(route)
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
    return without_query(target)


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
