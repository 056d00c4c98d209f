"""`callbacks keys ...` end to end: a config folder, key file and SQLite store under tmp_path."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from callbacks.cli import main
from callbacks.cli._support import parse_duration, parse_moment
from callbacks.keyfile import read_key_file
from callbacks.store import InboundCallback, new_delivery_id
from callbacks.store.sqlite import SQLiteStore
from tests.support import Cli, Route, write_config
from verify import key_id
from verify.metastudio import validate_key
from verify.sensetime import validate_auth_key

ROUTES = [
    Route("st", "sensetime", "https://hooks.example.com/cb/st"),
    Route("ms", "metastudio", "https://hooks.example.com/cb/ms", kind="video"),
]


class Setup(Cli):
    def __init__(self, root: Path, keys: dict[str, object] | None = None) -> None:
        super().__init__(write_config(root, ROUTES, keys=keys))
        self.root = root
        self.keys = root / "keys.toml"
        self.db = root / "callbacks.db"

    def add(self, route: str) -> tuple[str, str]:
        """Add a generated key; returns (id, secret)."""
        data = self.json("keys", "add", route, "--generate")
        return data["id"], data["key"]

    def listing(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = self.json("keys", "list")
        return rows

    def record_callback(self, route: str, kid: str, *, at: float) -> None:
        """Store a callback as the receiver would after verifying it with key ``kid``."""

        async def run() -> None:
            store = SQLiteStore(self.db)
            await store.upgrade()
            try:
                await store.accept(
                    InboundCallback(
                        delivery_id=new_delivery_id(at),
                        route=route,
                        provider="sensetime",
                        event_type="SenseTimeCallback",
                        dedupe_key=f"{route}:{new_delivery_id()}",
                        key_id=kid,
                        received_at=at,
                        body=b'{"taskId": 1}',
                    )
                )
            finally:
                await store.close()

        asyncio.run(run())


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


# --------------------------------------------------------------------------- generate


def test_generate_follows_each_platforms_rules(setup: Setup) -> None:
    sensetime = setup.ok("keys", "generate", "--provider", "sensetime").stdout.strip()
    assert validate_auth_key(sensetime)
    assert len(sensetime) <= 32
    metastudio = setup.ok("keys", "generate", "--route", "ms").stdout.strip()
    assert validate_key(metastudio)
    assert 1 <= len(metastudio) <= 32
    either = setup.ok("keys", "generate").stdout.strip()
    assert validate_auth_key(either)
    assert validate_key(either)
    data = json.loads(setup.ok("keys", "generate", "--route", "st", "--json").stdout)
    assert data["provider"] == "sensetime"
    assert data["id"] == key_id(data["key"])
    assert not setup.keys.exists(), "generate stores nothing"


def test_generate_usage_errors(setup: Setup) -> None:
    both = setup.run("keys", "generate", "--route", "st", "--provider", "sensetime")
    assert both.exit_code == 2
    assert "not both" in both.output
    assert setup.run("keys", "generate", "--provider", "stripe").exit_code == 2


# --------------------------------------------------------------------------- add


def test_first_key_becomes_primary_then_next(setup: Setup) -> None:
    first = setup.ok("keys", "add", "st", "--generate")
    assert "as primary" in first.stdout
    (entry,) = read_key_file(setup.keys).for_route("st")
    assert entry.state == "primary"
    assert first.stdout.count(entry.secret) == 1, "the generated key is printed exactly once"
    second = setup.ok("keys", "add", "st", "--generate")
    assert "as next" in second.stdout
    assert "callbacks keys promote st" in second.stdout
    assert [e.state for e in read_key_file(setup.keys).for_route("st")] == ["primary", "next"]


def test_key_file_is_private_and_replaced_atomically(setup: Setup) -> None:
    setup.add("st")
    inode = setup.keys.stat().st_ino
    setup.add("st")
    assert stat.S_IMODE(setup.keys.stat().st_mode) == 0o600
    assert setup.keys.stat().st_ino != inode, "rewritten by rename, never in place"
    assert not [p for p in setup.root.iterdir() if p.name.endswith(".tmp")]


def test_add_given_key_from_option_and_stdin(setup: Setup) -> None:
    result = setup.ok("keys", "add", "st", "--key", "Given1Key2026abc")
    assert "Given1Key2026abc" not in result.output, "a given key is never echoed"
    assert key_id("Given1Key2026abc") in result.stdout
    setup.ok("keys", "add", "st", "--key", "-", input="Piped9Key2026xyz\n")
    secrets = {e.secret for e in read_key_file(setup.keys).for_route("st")}
    assert secrets == {"Given1Key2026abc", "Piped9Key2026xyz"}


def test_add_refuses_a_key_the_platform_would_refuse(setup: Setup) -> None:
    result = setup.run("keys", "add", "st", "--key", "alllowercase123")
    assert result.exit_code == 2
    assert "uppercase" in result.output
    assert "alllowercase123" not in result.output
    too_long = setup.run("keys", "add", "ms", "--key", "x" * 33)
    assert too_long.exit_code == 2
    assert "32" in too_long.output
    assert not setup.keys.exists()


def test_add_refuses_duplicates(setup: Setup) -> None:
    setup.ok("keys", "add", "st", "--key", "Same1Key2026abc")
    result = setup.run("keys", "add", "st", "--key", "Same1Key2026abc")
    assert result.exit_code == 1
    assert "already has key" in result.output


def test_add_needs_exactly_one_source(setup: Setup) -> None:
    assert setup.run("keys", "add", "st").exit_code == 2
    both = setup.run("keys", "add", "st", "--key", "Some1Key2026abc", "--generate")
    assert both.exit_code == 2
    assert "exactly one" in both.output


def test_unknown_route_names_the_routes(setup: Setup) -> None:
    for args in (
        ("keys", "add", "nope", "--generate"),
        ("keys", "promote", "nope", "abc"),
        ("keys", "retire", "nope", "abc"),
        ("keys", "list", "--route", "nope"),
        ("keys", "generate", "--route", "nope"),
    ):
        result = setup.run(*args)
        assert result.exit_code == 1, args
        assert "no route named 'nope'" in result.output
        assert "st, ms" in result.output


# --------------------------------------------------------------------------- promote


def test_promote_makes_next_primary_and_old_primary_previous(setup: Setup) -> None:
    old, old_secret = setup.add("st")
    new, new_secret = setup.add("st")
    result = setup.ok("keys", "promote", "st", new[:6], "--retire-after", "2030-01-01")
    assert f"key {new} is now the primary key" in result.stdout
    assert f"key {old} is now previous" in result.stdout
    assert "2030-01-01T00:00:00Z" in result.stdout
    for secret in (old_secret, new_secret):
        assert secret not in result.output
    states = {r["id"]: (r["state"], r["retire_after"]) for r in setup.listing()}
    assert states == {new: ("primary", None), old: ("previous", "2030-01-01T00:00:00Z")}


def test_promote_retires_after_seven_days_by_default(setup: Setup) -> None:
    setup.add("st")
    new, _ = setup.add("st")
    data = json.loads(setup.ok("keys", "promote", "st", new, "--json").stdout)
    retire_after = datetime.fromisoformat(data["retire_after"])
    expected = datetime.now(UTC) + timedelta(days=7)
    assert abs((retire_after - expected).total_seconds()) < 60


def test_previous_keys_stop_verifying_past_retire_after(setup: Setup) -> None:
    old, _ = setup.add("st")
    new, _ = setup.add("st")
    result = setup.ok("keys", "promote", "st", new, "--retire-after", "2020-01-01")
    assert "no longer verifies" in result.stdout
    ring = read_key_file(setup.keys).ring("st")
    assert [k.id for k in ring.verifying_keys(time.time())] == [new]
    (row,) = [r for r in setup.listing() if r["id"] == old]
    assert row["verifies"] is False
    assert "previous (expired)" in setup.ok("keys", "list").stdout


def test_promote_errors(setup: Setup) -> None:
    primary, _ = setup.add("st")
    setup.add("st")
    again = setup.run("keys", "promote", "st", primary)
    assert again.exit_code == 1
    assert "already the primary key" in again.output
    missing = setup.run("keys", "promote", "st", "ffffffffffff")
    assert missing.exit_code == 1
    assert "has no key with id 'ffffffffffff'" in missing.output
    bad_date = setup.run("keys", "promote", "st", primary, "--retire-after", "next week")
    assert bad_date.exit_code == 2
    assert "neither a date" in bad_date.output
    assert setup.run("keys", "promote", "st").exit_code == 2


# --------------------------------------------------------------------------- retire


def test_retire_refuses_the_primary_key_unless_forced(setup: Setup) -> None:
    primary, _ = setup.add("st")
    result = setup.run("keys", "retire", "st", primary)
    assert result.exit_code == 1
    assert "is the primary key" in result.output
    assert "--force" in result.output
    forced = setup.ok("keys", "retire", "st", primary, "--force")
    assert "0 key(s) left" in forced.stdout
    assert "no keys now" in forced.output
    assert read_key_file(setup.keys).for_route("st") == ()


def test_retire_refuses_a_key_that_verified_within_the_quiet_period(setup: Setup) -> None:
    old, _ = setup.add("st")
    new, _ = setup.add("st")
    setup.ok("keys", "promote", "st", new)
    setup.record_callback("st", old, at=time.time() - 600)
    refused = setup.run("keys", "retire", "st", old)
    assert refused.exit_code == 1
    assert f"key {old} of route 'st' verified a callback 10m ago" in refused.output
    assert "quiet period of 24h" in refused.output
    assert "--force" in refused.output
    assert {e.id for e in read_key_file(setup.keys).for_route("st")} == {old, new}
    shorter = setup.ok("keys", "retire", "st", old, "--quiet-period", "5m")
    assert f"retired key {old}" in shorter.stdout
    assert [e.id for e in read_key_file(setup.keys).for_route("st")] == [new]


def test_retire_force_skips_the_quiet_period(setup: Setup) -> None:
    old, _ = setup.add("st")
    new, _ = setup.add("st")
    setup.ok("keys", "promote", "st", new)
    setup.record_callback("st", old, at=time.time())
    setup.ok("keys", "retire", "st", old, "--force")
    assert [e.id for e in read_key_file(setup.keys).for_route("st")] == [new]


def test_retire_quiet_period_comes_from_the_config(tmp_path: Path) -> None:
    setup = Setup(tmp_path, keys={"quiet_period_hours": 0.1})
    old, _ = setup.add("st")
    new, _ = setup.add("st")
    setup.ok("keys", "promote", "st", new)
    setup.record_callback("st", old, at=time.time() - 600)  # 10 min > 6 min
    setup.ok("keys", "retire", "st", old)


def test_retire_an_unused_next_key(setup: Setup) -> None:
    setup.add("st")
    spare, _ = setup.add("st")
    setup.record_callback("st", "someotherkey", at=time.time())
    setup.ok("keys", "retire", "st", spare)


def test_retire_refuses_when_usage_cannot_be_checked(setup: Setup) -> None:
    setup.add("st")
    spare, _ = setup.add("st")
    result = setup.run("keys", "retire", "st", spare)  # no receiver has created the store yet
    assert result.exit_code == 1
    assert "cannot tell when key" in result.output
    assert "does not exist yet" in result.output
    assert "--force" in result.output
    assert not setup.db.exists()


# --------------------------------------------------------------------------- list


def test_list_joins_keys_with_their_usage(setup: Setup) -> None:
    primary, primary_secret = setup.add("st")
    spare, _ = setup.add("st")
    now = time.time()
    setup.record_callback("st", primary, at=now - 3 * 86400)
    setup.record_callback("st", primary, at=now - 3600)
    setup.record_callback("st", primary, at=now - 60)
    rows = {r["id"]: r for r in setup.listing()}
    assert rows[primary]["verified_24h"] == 2
    last = datetime.fromisoformat(str(rows[primary]["last_verified_at"])).timestamp()
    assert abs(last - (now - 60)) < 2
    assert rows[spare]["last_verified_at"] is None
    assert rows[spare]["verified_24h"] == 0
    assert rows[spare]["state"] == "next"
    table = setup.ok("keys", "list").stdout
    assert "LAST VERIFIED" in table
    assert "(1m ago)" in table
    assert "never" in table
    assert "ms     (no keys)" in table
    assert primary_secret not in table


def test_list_before_the_first_serve_creates_no_database(setup: Setup) -> None:
    kid, _ = setup.add("ms")
    result = setup.ok("keys", "list", "--route", "ms")
    assert kid in result.stdout
    assert "no usage recorded" in result.output
    assert "db upgrade" not in result.output, "SQLite needs no migration step"
    assert "never" in result.stdout
    (row,) = setup.listing()
    assert (row["last_verified_at"], row["verified_24h"]) == (None, 0)
    assert not setup.db.exists(), "listing keys must not create the store"


def test_list_with_an_unusable_store_shows_keys_and_says_usage_is_unknown(setup: Setup) -> None:
    kid, _ = setup.add("ms")
    setup.db.write_bytes(b"not a database at all")
    result = setup.ok("keys", "list", "--route", "ms")
    assert kid in result.stdout
    assert "key usage unknown" in result.output
    (row,) = setup.listing()
    assert row["verified_24h"] is None


NOBODY = 65534  # nobody / nogroup on Debian; any ids other than root's would do


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_every_rewrite_as_root_keeps_the_key_files_owner_and_group(setup: Setup) -> None:
    first, _ = setup.add("st")
    os.chown(setup.keys, NOBODY, NOBODY)
    os.chmod(setup.keys, 0o600)
    kid, _ = setup.add("st")
    for args in (
        ("keys", "promote", "st", kid),
        ("keys", "add", "ms", "--generate"),
        ("keys", "retire", "st", first, "--force"),
    ):
        setup.ok(*args)
        st = setup.keys.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o600), args
    lock = setup.keys.with_name(f".{setup.keys.name}.lock")
    assert (lock.stat().st_uid, lock.stat().st_gid) == (NOBODY, NOBODY), "the owner can lock it"


def test_a_rewrite_keeps_a_group_readable_mode(setup: Setup) -> None:
    setup.add("st")
    os.chmod(setup.keys, 0o640)
    setup.add("st")
    assert stat.S_IMODE(setup.keys.stat().st_mode) == 0o640
    assert len(read_key_file(setup.keys).for_route("st")) == 2


def test_a_new_key_file_is_private(setup: Setup) -> None:
    setup.add("st")
    assert stat.S_IMODE(setup.keys.stat().st_mode) == 0o600


def test_a_world_readable_key_file_is_refused(setup: Setup) -> None:
    kid, _ = setup.add("st")
    os.chmod(setup.keys, 0o644)
    for args in (
        ("keys", "list"),
        ("keys", "add", "st", "--generate"),
        ("keys", "promote", "st", kid),
        ("keys", "retire", "st", kid, "--force"),
    ):
        result = setup.run(*args)
        assert result.exit_code == 1, args
        assert "readable or writable by every user" in result.output
        assert f"chmod 600 {setup.keys}" in result.output
    assert stat.S_IMODE(setup.keys.stat().st_mode) == 0o644, "left for the operator to fix"


def test_missing_key_file_is_named(setup: Setup) -> None:
    result = setup.run("keys", "list")
    assert result.exit_code == 1
    assert "key file not found" in result.output


# --------------------------------------------------------------------------- parsing, help


def test_durations_and_moments() -> None:
    assert parse_duration("30m") == 1800
    assert parse_duration("24h") == 86400
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("0") == 0
    for bad in ("7", "7 days", "-1d", "1.5h", ""):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    now = datetime(2026, 1, 10, tzinfo=UTC)
    assert parse_moment("7d", now=now, ahead=True) == datetime(2026, 1, 17, tzinfo=UTC)
    assert parse_moment("1d", now=now, ahead=False) == datetime(2026, 1, 9, tzinfo=UTC)
    assert parse_moment("2026-12-01", now=now, ahead=True) == datetime(2026, 12, 1, tzinfo=UTC)
    moment = parse_moment("2026-12-01T08:00:00+02:00", now=now, ahead=True)
    assert moment == datetime(2026, 12, 1, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    "command",
    [
        ["keys"],
        ["keys", "generate"],
        ["keys", "add"],
        ["keys", "promote"],
        ["keys", "retire"],
        ["keys", "list"],
    ],
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "--config" in result.output or command == ["keys"]
