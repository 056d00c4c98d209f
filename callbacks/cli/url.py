"""``callbacks url mint``: callback URLs carrying a signed token (MetaStudio ``NONE`` auth)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from callbacks.cli._support import (
    DurationType,
    config_option,
    echo_json,
    fail,
    json_option,
    load_config_or_fail,
    primary_or_fail,
    read_keys_or_fail,
    route_or_fail,
)
from callbacks.config import RouteConfig
from callbacks.event_view import iso
from verify.tokens import DEFAULT_TOKEN_TTL, mint_callback_url


@click.group("url", short_help="Mint callback URLs with a signed token.")
def url_group() -> None:
    """Callback URLs carrying a signed token (MetaStudio `NONE` auth, async TTS jobs).

    \b
    Example:
      callbacks url mint metastudio-tts --job tts-42
    """


@url_group.command("mint")
@config_option
@click.argument("route_name", metavar="ROUTE")
@click.option("--job", metavar="REF", help="Bind the token to this job: only its result passes.")
@click.option(
    "--ttl",
    type=DurationType(),
    default=f"{DEFAULT_TOKEN_TTL // 86400}d",
    show_default=True,
    help="How long the URL is valid (30m, 24h, 7d).",
)
@json_option
def mint(
    config_path: str | None, route_name: str, job: str | None, ttl: int, as_json: bool
) -> None:
    """Print a callback URL for ROUTE with a signed token; give it to the platform as the job's
    callback_url.

    For MetaStudio routes with auth = "NONE" (and async TTS jobs), whose callbacks carry no
    signature. Signed with the route's primary key; every key of the route verifies it.

    \b
    Example:
      callbacks url mint metastudio-tts --job 7b2e1c --ttl 2d
    """
    if ttl <= 0:
        raise click.BadParameter("must be longer than 0", param_hint="--ttl")
    config = load_config_or_fail(config_path)
    route = route_or_fail(config, route_name)
    _require_token_route(route)
    key = primary_or_fail(config, route)
    now = int(time.time())
    ring = read_keys_or_fail(config).ring(route.name)
    try:
        url = mint_callback_url(
            route.public_url, route.name, ring, job=job, ttl=ttl, clock=lambda: now
        )
    except ValueError as exc:
        fail(f"cannot mint a token: {exc}")
    expires = datetime.fromtimestamp(now + ttl, UTC)
    if as_json:
        echo_json(
            {
                "url": url,
                "route": route.name,
                "job": job,
                "expires_at": iso(expires),
                "key_id": key.id,
            }
        )
        return
    click.echo(url)
    bound = f" for job {job!r}" if job else ""
    click.echo(f"valid until {iso(expires)}{bound}, signed with key {key.id}", err=True)


def _require_token_route(route: RouteConfig) -> None:
    if route.provider == "sensetime":
        fail(
            f"route {route.name!r} is a SenseTime route: SenseTime signs its callbacks with the "
            'AuthKey; token URLs are for MetaStudio routes with auth = "NONE"'
        )
    if route.auth != "NONE":
        fail(
            f"route {route.name!r} uses {route.auth}: MetaStudio signs those callbacks with the "
            'route\'s key (give it in callback_config); token URLs are for auth = "NONE" routes'
        )


def register(main: click.Group) -> None:
    main.add_command(url_group)
