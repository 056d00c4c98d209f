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

import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click
import orjson

from callbacks.cli._http import Answer, PostFailed, is_http_url, post, without_query
from callbacks.cli._support import (
    config_option,
    default_target,
    echo_json,
    fail,
    json_option,
    load_config_or_fail,
    primary_or_fail,
    read_keys_or_fail,
    route_or_fail,
)
from callbacks.config import Config, RouteConfig
from callbacks.errors import KeyFileError
from callbacks.keyfile import KeyEntry
from callbacks.testing import SignedCallback, sample_body, sample_events, sign_callback

SEND_TIMEOUT = 10.0
MAX_COUNT = 100_000
_KEY_STATES = ("primary", "next", "previous")

# --------------------------------------------------------------------------- sending


def send(url: str, request: SignedCallback) -> Answer:
    """POST the signed request; no answer exits 1 with a hint."""
    try:
        return post(url, request.body, request.headers, timeout=SEND_TIMEOUT)
    except PostFailed as exc:
        if exc.refused:
            fail(f"no receiver at {without_query(url)}: start one with `callbacks serve`")
        fail(str(exc))


def outcome(answer: Answer) -> str:
    """``stored``, ``duplicate``, or the receiver's reason for refusing."""
    content = answer.content
    if not isinstance(content, dict):
        return "not_a_receiver_answer"
    if content.get("ok") and "delivery_id" in content:
        return "duplicate" if content.get("duplicate") else "stored"
    return str(content.get("reason", "unknown"))


def describe(answer: Answer) -> str:
    content = answer.content
    if not isinstance(content, dict):
        return f"{answer.status} (not a receiver answer: {content!r})"
    if content.get("ok") and "delivery_id" in content:
        return f"{answer.status} {outcome(answer)} delivery_id={content['delivery_id']}"
    return f"{answer.status} {outcome(answer)}"


def curl_command(url: str, request: SignedCallback) -> str:
    """A curl command line that sends exactly this request (quoted for a POSIX shell)."""
    parts = ["curl", "-sS", "-X", "POST", url, "-H", "Content-Type: application/json"]
    for name, value in request.headers.items():
        parts += ["-H", f"{name}: {value}"]
    parts += ["--data-binary", request.body.decode()]
    return " ".join(shlex.quote(part) for part in parts)


# --------------------------------------------------------------------------- bodies


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``FIELD=VALUE`` (``a.b=VALUE`` for a nested field): VALUE as JSON when it parses as
    JSON (``3``, ``true``, ``null``, ``"007"``, ``{...}``), else as the text it is."""
    name, sep, raw = text.partition("=")
    path = name.split(".")
    if not sep or not all(path):
        raise click.BadParameter(
            f"{text!r} is not FIELD=VALUE (e.g. status=3, userData=abc, a.b=true)",
            param_hint="--set",
        )
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    return path, value


def apply_assignments(body: dict[str, Any], assignments: list[tuple[list[str], Any]]) -> None:
    for path, value in assignments:
        target = body
        for name in path[:-1]:
            inner = target.get(name)
            if not isinstance(inner, dict):
                if inner is not None:
                    raise click.BadParameter(
                        f"{'.'.join(path)}: {name!r} holds {type(inner).__name__}, not an object",
                        param_hint="--set",
                    )
                inner = target[name] = {}
            target = inner
        target[path[-1]] = value


def choose_key(config: Config, route: RouteConfig, wanted: str | None) -> KeyEntry:
    """The primary key, or the one ``--key`` names by id (prefix) or by state."""
    if wanted is None:
        return primary_or_fail(config, route)
    entries = read_keys_or_fail(config).for_route(route.name)
    if wanted in _KEY_STATES:
        for entry in entries:
            if entry.state == wanted:
                return entry
        fail(f"route {route.name!r} has no {wanted} key; `callbacks keys list` shows its keys")
    try:
        return read_keys_or_fail(config).find(route.name, wanted)
    except KeyFileError as exc:
        fail(f"{exc}; `callbacks keys list` shows the ids")


# --------------------------------------------------------------------------- commands


@click.command("simulate", short_help="Send ROUTE a correctly signed test callback.")
@config_option
@click.argument("route_name", metavar="ROUTE")
@click.option(
    "--body",
    "body_file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    metavar="FILE|-",
    help="Send this JSON object (- reads stdin) instead of a sample; SenseTime auth fields are "
    "replaced.",
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
    "--set",
    "assignments",
    metavar="FIELD=VALUE",
    multiple=True,
    help="Set a body field (repeatable; a.b for nested; VALUE is JSON when it parses as JSON).",
)
@click.option(
    "--key",
    "wanted_key",
    metavar="KEY_ID",
    help="Sign with this key (an id prefix, or primary|next|previous) instead of the primary: "
    "to try a rotation's keys.",
)
@click.option(
    "--count",
    type=click.IntRange(1, MAX_COUNT),
    default=1,
    show_default=True,
    help="Send this many (fresh samples; the same body again with --body: a platform retry).",
)
@click.option(
    "--url",
    "target",
    metavar="URL",
    help="Receiver to send to (default: from [server] and the route's path); its query is "
    "replaced by the signed one.",
)
@click.option("--tamper", is_flag=True, help="Send a forged signature (or token): expect a 4xx.")
@click.option(
    "--print-curl",
    is_flag=True,
    help="Print a curl command sending the signed request instead of sending it. It holds a "
    "live signature: it verifies until the route's timestamp window passes.",
)
@json_option
def simulate(
    config_path: str | None,
    route_name: str,
    body_file: Path | None,
    event: str | None,
    assignments: tuple[str, ...],
    wanted_key: str | None,
    count: int,
    target: str | None,
    tamper: bool,
    print_curl: bool,
    as_json: bool,
) -> None:
    """Send ROUTE a correctly signed callback and print the receiver's answer.

    The body is signed the way the route's platform signs it: over the route's public_url, with
    its primary key (or --key), now. Exit 0 when every answer is what was expected (2xx, or 4xx
    with --tamper), else 1.

    \b
    Example:
      callbacks simulate sensetime
      callbacks simulate metastudio-live --event RTMP_STREAM_STATE_CHANGE
      callbacks simulate sensetime --tamper            # expect: 401 signature_mismatch
      callbacks simulate sensetime --key next          # the staged key of a rotation
      callbacks simulate sensetime --set status=3 --count 20
      echo '{"taskId": 7, "status": 2}' | callbacks simulate sensetime --body -
      callbacks simulate sensetime --print-curl
    """
    if body_file is not None and event is not None:
        raise click.UsageError("pass --body FILE or --event TYPE, not both")
    config = load_config_or_fail(config_path)
    route = route_or_fail(config, route_name)
    changes = [parse_assignment(text) for text in assignments]
    given = _load_body(body_file) if body_file else None
    sample_event = None if given is not None else _pick_event(route, event)
    url = _target(config, route, target)
    key = choose_key(config, route, wanted_key)

    def next_request() -> SignedCallback:
        body = dict(given) if given is not None else sample_body(route, sample_event)
        apply_assignments(body, changes)
        return sign_callback(route, key.secret, body, tamper=tamper)

    if print_curl:
        for _ in range(count):
            request = next_request()
            click.echo(curl_command(request.url(url), request))
        return
    how = "token minted" if route.auth == "NONE" else "signed"
    click.echo(
        f"POST {url}  ({route.describe}, {how} with key {key.id} ({key.state}) for "
        f"{route.public_url}{', tampered' if tamper else ''}{f', x{count}' if count > 1 else ''})",
        err=True,
    )
    answers = []
    for _ in range(count):
        request = next_request()
        answer = send(request.url(url), request)
        answers.append(answer)
        if not as_json:
            click.echo(describe(answer))
    ok = [_as_expected(answer, tamper=tamper) for answer in answers]
    if as_json:
        _report_json(answers, ok, route, key, tamper=tamper)
    elif count > 1:
        tally = Counter(outcome(answer) for answer in answers)
        click.echo(f"{count} sent: " + ", ".join(f"{n} {o}" for o, n in tally.items()), err=True)
    if not all(ok):
        first_bad = answers[ok.index(False)]
        click.echo(_why(first_bad, route, key, tamper=tamper), err=True)
        raise SystemExit(1)


def _as_expected(answer: Answer, *, tamper: bool) -> bool:
    return 400 <= answer.status < 500 if tamper else 200 <= answer.status < 300


def _report_json(
    answers: list[Answer], ok: list[bool], route: RouteConfig, key: KeyEntry, *, tamper: bool
) -> None:
    common = {
        "route": route.name,
        "key_id": key.id,
        "key_state": key.state,
        "tampered": tamper,
        "expected": "4xx" if tamper else "2xx",
    }
    if len(answers) == 1:
        echo_json(
            {"status": answers[0].status, "response": answers[0].content, **common, "ok": ok[0]}
        )
        return
    echo_json(
        {
            **common,
            "count": len(answers),
            "outcomes": dict(Counter(outcome(answer) for answer in answers)),
            "answers": [
                {"status": a.status, "response": a.content, "ok": good}
                for a, good in zip(answers, ok, strict=True)
            ],
            "ok": all(ok),
        }
    )


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
    where = "stdin" if str(path) == "-" else str(path)
    data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{where} is not valid JSON ({exc})", param_hint="--body"
        ) from None
    if not isinstance(body, dict):
        raise click.BadParameter(f"{where} must hold a JSON object", param_hint="--body")
    return body


def _target(config: Config, route: RouteConfig, target: str | None) -> str:
    if target is None:
        return default_target(config, route)
    if not is_http_url(target):
        raise click.BadParameter(
            f"{target!r} is not an http(s) URL, e.g. http://127.0.0.1:8000{route.path}",
            param_hint="--url",
        )
    return without_query(target)


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
