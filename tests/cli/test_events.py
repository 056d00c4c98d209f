"""`callbacks events ...` end to end, on a SQLite store filled the way the receiver fills it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import orjson
import pytest
from click.testing import CliRunner

from callbacks.cli import main
from callbacks.store import EventStatus, InboundCallback, Outcome, StoredEvent, new_delivery_id
from callbacks.store.sqlite import SQLiteStore
from tests.support import Cli, Route, write_config

ROUTES = [
    Route("st", "sensetime", "https://hooks.example.com/cb/st"),
    Route("live", "metastudio", "https://hooks.example.com/cb/live", kind="live"),
]

ST_BODY = {"taskId": 42, "status": "SUCCESS", "timestamp": 1763856000, "signature": "ab" * 16}
LIVE_MESSAGE = {"room_id": "r1", "job_id": "j1", "stream_key": "live-stream-credential"}
LIVE_BODY = {"event_type": "RTMP_STREAM_STATE_CHANGE", "message": json.dumps(LIVE_MESSAGE)}


@dataclass
class Inbox(Cli):
    db: Path
    ids: dict[str, str]  # name -> delivery id

    def listing(self, *args: str) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = json.loads(
            self.ok("events", "list", "--json", *args).stdout
        )
        return rows

    def status(self, name: str) -> str:
        (row,) = [r for r in self.listing() if r["id"] == self.ids[name]]
        return str(row["status"])


def _callback(route: str, body: Mapping[str, object], *, at: float, dedupe: str) -> InboundCallback:
    provider = "sensetime" if route == "st" else "metastudio"
    event_type = "SenseTimeCallback" if route == "st" else "RtmpStreamStateChange"
    return InboundCallback(
        delivery_id=new_delivery_id(at),
        route=route,
        provider=provider,
        event_type=event_type,
        dedupe_key=dedupe,
        key_id="a1b2c3d4e5f6" if route == "st" else "0f9e8d7c6b5a",
        received_at=at,
        body=orjson.dumps(body),
    )


async def _fill(db: Path) -> dict[str, str]:
    """pending, delivered, dead (x2), duplicate and an old delivered event."""
    now = time.time()
    store = SQLiteStore(db)
    await store.upgrade()
    ids: dict[str, str] = {}
    try:
        plan = [
            ("old", "st", now - 40 * 86400, "d-old"),
            ("delivered", "st", now - 7200, "d-delivered"),
            ("dead", "st", now - 600, "d-dead"),
            ("dead_live", "live", now - 500, "d-dead-live"),
            ("pending", "st", now - 60, "d-pending"),
            ("duplicate", "st", now - 30, "d-pending"),
        ]
        for name, route, at, dedupe in plan:
            body = LIVE_BODY if route == "live" else {**ST_BODY, "taskId": len(ids)}
            accepted = await store.accept(_callback(route, body, at=at, dedupe=dedupe))
            ids[name] = accepted.delivery_id
        claimed = await store.claim(owner="t", now=now, limit=10, lease_seconds=60)
        outcomes = {
            ids["old"]: ("delivered", {"h.ok": {"status": "ok"}}, None),
            ids["delivered"]: ("delivered", {"h.ok": {"status": "ok"}}, None),
            ids["dead"]: ("dead", {"h.fail": {"status": "failed"}}, "RuntimeError: boom"),
            ids["dead_live"]: ("dead", {"h.fail": {"status": "failed"}}, "RuntimeError: boom"),
        }
        for event in claimed:
            await _finish(store, event, outcomes.get(event.id))
    finally:
        await store.close()
    return ids


async def _finish(
    store: SQLiteStore,
    event: StoredEvent,
    outcome: tuple[str, Mapping[str, object], str | None] | None,
) -> None:
    status, state, error = outcome or ("pending", {}, None)
    settled = Outcome(
        cast(EventStatus, status), 8 if status == "dead" else 1, event.next_attempt_at, state, error
    )
    await store.finish_many([(event.id, settled)], owner="t")


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    config = write_config(tmp_path, ROUTES)
    db = tmp_path / "callbacks.db"
    return Inbox(config, db, asyncio.run(_fill(db)))


# --------------------------------------------------------------------------- list


def test_list_shows_a_table_newest_first(inbox: Inbox) -> None:
    lines = inbox.ok("events", "list").stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "RECEIVED",
        "ROUTE",
        "TYPE",
        "STATUS",
        "ATTEMPTS",
        "KEY",
        "ID",
    ]
    assert lines[1].split()[0] == inbox.ids["duplicate"]
    assert lines[-1].split()[0] == inbox.ids["old"]
    dead = next(line for line in lines if line.startswith(inbox.ids["dead"])).split()
    assert dead[2:] == ["st", "SenseTimeCallback", "dead", "8", "a1b2c3d4e5f6"]
    assert dead[1].endswith("Z")


def test_list_filters(inbox: Inbox) -> None:
    dead = {r["id"] for r in inbox.listing("--status", "dead")}
    assert dead == {inbox.ids["dead"], inbox.ids["dead_live"]}
    live = inbox.listing("--route", "live")
    assert [r["id"] for r in live] == [inbox.ids["dead_live"]]
    recent = {r["id"] for r in inbox.listing("--since", "1h")}
    assert recent == {inbox.ids[n] for n in ("dead", "dead_live", "pending", "duplicate")}
    assert len(inbox.listing("--since", "2000-01-01", "--limit", "2")) == 2
    (duplicate,) = inbox.listing("--status", "duplicate")
    assert duplicate["duplicate_of"] == inbox.ids["pending"]


def test_list_json_is_an_array_of_events(inbox: Inbox) -> None:
    rows = inbox.listing()
    assert len(rows) == 6
    row = next(r for r in rows if r["id"] == inbox.ids["dead"])
    assert row["route"] == "st"
    assert row["event_type"] == "SenseTimeCallback"
    assert row["attempts"] == 8
    assert row["last_error"] == "RuntimeError: boom"
    assert "body" not in row


def test_list_usage_errors(inbox: Inbox) -> None:
    bad_status = inbox.run("events", "list", "--status", "lost")
    assert bad_status.exit_code == 2
    assert "pending" in bad_status.output
    bad_since = inbox.run("events", "list", "--since", "yesterday")
    assert bad_since.exit_code == 2
    assert "neither a date" in bad_since.output


def test_a_store_without_schema_says_what_to_run(tmp_path: Path) -> None:
    result = Cli(write_config(tmp_path, ROUTES)).run("events", "list")
    assert result.exit_code == 1
    assert "callbacks db upgrade" in result.output


# --------------------------------------------------------------------------- show


def test_show_prints_metadata_and_masked_pretty_body(inbox: Inbox) -> None:
    event_id = inbox.ids["dead"]
    out = inbox.ok("events", "show", event_id[:-4]).stdout
    assert event_id in out
    assert "RuntimeError: boom" in out
    assert '"h.fail"' in out
    assert '"signature": "***"' in out
    assert "ab" * 16 not in out
    assert '  "taskId": ' in out, "pretty-printed"


def test_show_masks_live_stream_keys(inbox: Inbox) -> None:
    data = json.loads(inbox.ok("events", "show", inbox.ids["dead_live"], "--json").stdout)
    assert "live-stream-credential" not in json.dumps(data)
    assert json.loads(data["body"]["message"])["stream_key"] == "***"
    assert data["handler_state"] == {"h.fail": {"status": "failed"}}
    assert data["status"] == "dead"


def test_show_unknown_or_ambiguous_id(inbox: Inbox) -> None:
    unknown = inbox.run("events", "show", "ffff")
    assert unknown.exit_code == 1
    assert "no single event" in unknown.output
    common = inbox.ids["dead"][:2]  # every id starts with the same millisecond clock digits
    assert inbox.run("events", "show", common).exit_code == 1
    assert inbox.run("events", "show").exit_code == 2


# --------------------------------------------------------------------------- replay


def test_replay_ids_requeues_them(inbox: Inbox) -> None:
    result = inbox.ok("events", "replay", inbox.ids["dead"][:20], inbox.ids["delivered"])
    assert "re-queued 2 event(s)" in result.stdout
    assert inbox.status("dead") == "pending"
    assert inbox.status("delivered") == "pending"
    assert inbox.status("dead_live") == "dead"


def test_replay_dead_by_route(inbox: Inbox) -> None:
    data = json.loads(inbox.ok("events", "replay", "--dead", "--route", "live", "--json").stdout)
    assert data == {"requeued": 1}
    assert inbox.status("dead_live") == "pending"
    assert inbox.status("dead") == "dead"
    assert "re-queued 1 event(s)" in inbox.ok("events", "replay", "--dead").stdout
    assert inbox.status("dead") == "pending"


def test_replay_refuses_duplicates_and_unknown_ids_before_changing_anything(inbox: Inbox) -> None:
    duplicate = inbox.run("events", "replay", inbox.ids["dead"], inbox.ids["duplicate"])
    assert duplicate.exit_code == 1
    assert f"replay {inbox.ids['pending']} instead" in duplicate.output
    unknown = inbox.run("events", "replay", inbox.ids["dead"], "ffff")
    assert unknown.exit_code == 1
    assert inbox.status("dead") == "dead"


def test_replay_usage_errors(inbox: Inbox) -> None:
    assert inbox.run("events", "replay").exit_code == 2
    both = inbox.run("events", "replay", inbox.ids["dead"], "--dead")
    assert both.exit_code == 2
    assert "not both" in both.output
    route_alone = inbox.run("events", "replay", inbox.ids["dead"], "--route", "st")
    assert route_alone.exit_code == 2
    assert "--route applies with --dead or --unhandled only" in route_alone.output


# --------------------------------------------------------------------------- purge


def test_purge_before_an_age_keeps_newer_and_pending_events(inbox: Inbox) -> None:
    result = inbox.ok("events", "purge", "--before", "30d")
    assert "purged 1 event(s)" in result.stdout
    assert {r["id"] for r in inbox.listing()} == {
        inbox.ids[n] for n in ("delivered", "dead", "dead_live", "pending", "duplicate")
    }
    data = json.loads(inbox.ok("events", "purge", "--before", "1h", "--json").stdout)
    assert data["purged"] == 1  # "delivered", two hours old
    assert inbox.ids["pending"] in {r["id"] for r in inbox.listing()}


def test_purge_keeps_dead_events_unless_asked(inbox: Inbox) -> None:
    kept = inbox.ok("events", "purge", "--before", "10s")
    assert "purged 3 event(s)" in kept.stdout  # old, delivered, duplicate
    assert "pending and dead events are kept" in kept.stdout
    left = {r["id"]: r["status"] for r in inbox.listing()}
    assert left == {inbox.ids[n]: s for n, s in _DEAD_AND_PENDING.items()}
    gone = inbox.ok("events", "purge", "--before", "10s", "--include-dead")
    assert "purged 2 event(s)" in gone.stdout
    assert [r["status"] for r in inbox.listing()] == ["pending"]


_DEAD_AND_PENDING = {"dead": "dead", "dead_live": "dead", "pending": "pending"}


def test_purge_dry_run_counts_and_deletes_nothing(inbox: Inbox) -> None:
    before = inbox.listing()
    result = inbox.ok("events", "purge", "--before", "10s", "--include-dead", "--dry-run")
    assert "would purge 5 event(s)" in result.stdout
    data = inbox.json("events", "purge", "--before", "1h", "--dry-run")
    assert (data["would_purge"], data["purged"], data["dry_run"]) == (2, 0, True)
    assert inbox.listing() == before


@pytest.mark.parametrize("cut_off", ["0d", "0s", "2999-01-01", "2999-01-01T00:00:00Z"])
def test_purge_refuses_a_cut_off_that_is_not_in_the_past(inbox: Inbox, cut_off: str) -> None:
    before = inbox.listing()
    result = inbox.run("events", "purge", "--before", cut_off, "--include-dead")
    assert result.exit_code == 2
    assert "is not in the past" in result.output
    assert inbox.listing() == before


def test_purge_before_a_date(inbox: Inbox) -> None:
    assert "purged 0 event(s)" in inbox.ok("events", "purge", "--before", "2000-01-01").stdout
    assert len(inbox.listing()) == 6


def test_purge_needs_before(inbox: Inbox) -> None:
    missing = inbox.run("events", "purge")
    assert missing.exit_code == 2
    assert "--before" in missing.output
    assert inbox.run("events", "purge", "--before", "soon").exit_code == 2


@pytest.mark.parametrize(
    "command",
    [["events"], ["events", "list"], ["events", "show"], ["events", "replay"], ["events", "purge"]],
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
