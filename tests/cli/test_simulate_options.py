"""`callbacks simulate`'s --key, --set, --body -, --count and --print-curl, against a real
receiver process: what it sends is what the receiver stores."""

from __future__ import annotations

import contextlib
import json
import shlex
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from callbacks.keyfile import KeyEntry, KeyFile, read_key_file
from tests.support import Cli, Route, ServerProcess, Setup, keys_for, wait_for

pytestmark = pytest.mark.slow

ST = Route("st", "sensetime", "https://hooks.example.com/cb/st")
VIDEO = Route("video", "metastudio", "https://hooks.example.com/cb/video", kind="video")
KEYS = keys_for([ST, VIDEO])
NEXT_KEY = "NextKey4rotation0f0fst9Z"


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    staged = KeyFile().add("st", KEYS["st"], state="primary", now=datetime.now(UTC))
    staged = staged.add("st", NEXT_KEY, state="next", now=datetime.now(UTC) - timedelta(1))
    next_only = KeyFile(tuple(e for e in staged.entries if e.state == "next"))
    setup = Setup(
        tmp_path_factory.mktemp("simulate") / "receiver",
        [ST, VIDEO],
        {"video": KEYS["video"], "st": KEYS["st"]},
        extra_keys=next_only,
    ).write()
    server = ServerProcess(setup).start()
    try:
        yield setup
    finally:
        server.stop()


def _cli(setup: Setup) -> Cli:
    return Cli(setup.config_path)


def _delivered_body(setup: Setup, delivery_id: str) -> dict[str, object]:
    """The body the receiver stored for ``delivery_id``, once its handler has run."""
    assert wait_for(lambda: any(e["id"] == delivery_id for e in setup.delivered()))
    body: dict[str, object] = _cli(setup).json("events", "show", delivery_id)["body"]
    return body


def _stored(setup: Setup) -> int:
    """Callbacks the receiver has stored: each is committed before its 200, so unlike the
    handlers' log, which earlier tests' deliveries may still be writing, this count is settled."""
    with contextlib.closing(
        sqlite3.connect(f"file:{setup.root / 'callbacks.db'}?mode=ro", uri=True)
    ) as db:
        count: int = db.execute("SELECT count(*) FROM events").fetchone()[0]
    return count


def _next_entry(setup: Setup) -> KeyEntry:
    (entry,) = [e for e in read_key_file(setup.keys_path).for_route("st") if e.state == "next"]
    return entry


def test_set_overrides_fields_with_json_values_and_nested_paths(receiver: Setup) -> None:
    answer = _cli(receiver).json(
        "simulate",
        "st",
        *("--set", "status=3", "--set", "userData=007", "--set", "extra.n=[1,2]"),
        *("--set", "extra.flag=true"),
    )
    assert answer["ok"] is True
    body = _delivered_body(receiver, answer["response"]["delivery_id"])
    assert body["status"] == 3  # JSON: a number
    assert body["userData"] == "007"  # not JSON (a leading zero): kept as the text it is
    assert body["extra"] == {"n": [1, 2], "flag": True}


def test_set_refuses_what_is_not_an_assignment(receiver: Setup) -> None:
    for bad in ("status", "=3", "a..b=1"):
        result = _cli(receiver).run("simulate", "st", "--set", bad)
        assert result.exit_code == 2, bad
        assert "FIELD=VALUE" in result.output


def test_body_from_stdin_is_sent_and_twice_is_a_duplicate(receiver: Setup) -> None:
    body = json.dumps({"taskId": 987654321, "status": 2, "userData": "from-stdin"})
    first = _cli(receiver).run("simulate", "st", "--body", "-", "--json", input=body)
    again = _cli(receiver).run("simulate", "st", "--body", "-", "--json", input=body)
    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output
    first_answer, again_answer = json.loads(first.stdout), json.loads(again.stdout)
    assert first_answer["response"]["duplicate"] is False
    assert again_answer["response"]["duplicate"] is True
    stored = _delivered_body(receiver, first_answer["response"]["delivery_id"])
    assert stored["userData"] == "from-stdin"


def test_body_from_stdin_must_be_a_json_object(receiver: Setup) -> None:
    for junk in ("not json", "[1, 2]", ""):
        result = _cli(receiver).run("simulate", "st", "--body", "-", input=junk)
        assert result.exit_code == 2, junk
        assert "stdin" in result.output


def test_count_sends_fresh_samples_and_tallies(receiver: Setup) -> None:
    answer = _cli(receiver).json("simulate", "video", "--count", "4")
    assert answer["count"] == 4
    assert answer["ok"] is True
    assert answer["outcomes"] == {"stored": 4}
    ids = {a["response"]["delivery_id"] for a in answer["answers"]}
    assert len(ids) == 4


def test_count_with_one_body_is_the_platform_retrying(receiver: Setup) -> None:
    body = json.dumps({"job_id": "retried-job", "result": "SUCCEED", "asset_id": "a1"})
    result = _cli(receiver).run(
        "simulate", "video", "--body", "-", "--count", "3", "--json", input=body
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outcomes"] == {"stored": 1, "duplicate": 2}


def test_key_signs_with_the_staged_next_key(receiver: Setup) -> None:
    staged = _next_entry(receiver)
    for wanted in ("next", staged.id[:6]):
        answer = _cli(receiver).json("simulate", "st", "--key", wanted)
        assert answer["ok"] is True
        assert answer["key_id"] == staged.id
        assert answer["key_state"] == "next"
    assert wait_for(lambda: any(e.get("key_id") == staged.id for e in receiver.delivered())), (
        "the receiver verified with the next key"
    )


def test_key_that_does_not_exist_is_a_clear_error(receiver: Setup) -> None:
    for wanted in ("previous", "ffffffff"):
        result = _cli(receiver).run("simulate", "st", "--key", wanted)
        assert result.exit_code == 1
        assert "keys list" in result.output
        assert NEXT_KEY not in result.output
        assert KEYS["st"] not in result.output


def test_print_curl_sends_nothing_and_the_printed_command_is_accepted(receiver: Setup) -> None:
    before = _stored(receiver)
    result = _cli(receiver).ok("simulate", "video", "--print-curl", "--set", "job_id=curl-job")
    (command,) = result.stdout.splitlines()
    assert command.startswith("curl ")
    assert KEYS["video"] not in command  # a signature, never the key
    assert _stored(receiver) == before
    sent = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
    assert sent.returncode == 0, sent.stderr
    answer = json.loads(sent.stdout)
    assert answer["ok"] is True
    assert _delivered_body(receiver, answer["delivery_id"])["job_id"] == "curl-job"


def test_tamper_with_count_expects_every_answer_refused(receiver: Setup) -> None:
    answer = _cli(receiver).json("simulate", "st", "--tamper", "--count", "2")
    assert answer["ok"] is True
    assert answer["outcomes"] == {"signature_mismatch": 2}
