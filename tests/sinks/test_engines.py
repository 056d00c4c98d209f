"""Each sink against its real engine, through a real receiver process: N callbacks in through
HTTP, exactly N messages out, read with the engine's own client; an outage delays but loses
nothing; a SIGKILL mid-stream loses nothing acknowledged."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.sinks.engines import Engine, HttpEngine, NatsEngine
from tests.sinks.harness import (
    delivery_ids,
    handled,
    send,
    sink_setup,
    sink_states,
    stream,
)
from tests.sinks.proxy import Forwarder
from tests.support import ServerProcess, wait_for

pytestmark = pytest.mark.slow

N = 40


def test_each_callback_becomes_exactly_one_message(engine: Engine, tmp_path: Path) -> None:
    setup = sink_setup(tmp_path, engine)
    server = ServerProcess(setup).start()
    try:
        acked = send(setup, N)
        assert wait_for(lambda: len(engine.messages()) >= N, timeout=60, interval=0.2)
        assert wait_for(lambda: all(s.get("status") == "ok" for s in sink_states(setup).values()))
        messages = engine.messages()
    finally:
        server.stop()
    # Every delivery recorded as done was sent once, and nothing else was sent.
    assert sorted(delivery_ids(messages)) == sorted(acked)
    assert all(s == {"status": "ok", "attempts": 1} for s in sink_states(setup).values())
    if isinstance(engine, HttpEngine):
        assert engine.unverified == 0
    assert_no_secret_in(server.output(), engine)


def assert_no_secret_in(log: str, engine: Engine) -> None:
    assert ":guest@" not in log  # the AMQP URL's credentials
    if isinstance(engine, HttpEngine):
        assert engine.secret not in log
        assert engine.secret.removeprefix("whsec_") not in log


def test_an_outage_delays_but_loses_nothing(engine: Engine, tmp_path: Path) -> None:
    forwarder: Forwarder | None = None
    http = engine if isinstance(engine, HttpEngine) else None
    if http is not None:
        http.answer = 500
        setup = sink_setup(tmp_path, engine)
    else:
        forwarder = Forwarder(engine.port)  # closed: the broker "on a wrong port"
        setup = sink_setup(tmp_path, engine, port=forwarder.port)
    server = ServerProcess(setup).start()
    try:
        acked = send(setup, N)

        def all_retried() -> bool:
            states = sink_states(setup)
            return len(states) == N and all(
                s.get("status") == "failed" and s["attempts"] >= 2 for s in states.values()
            )

        assert wait_for(all_retried, timeout=60), "the sink was not retried"
        # The handler beside the sink is not held up by it.
        assert handled(setup) == set(acked)
        assert engine.messages() == []

        if forwarder is not None:
            forwarder.open()
        if http is not None:
            http.answer = 200
        assert wait_for(lambda: set(acked) <= set(delivery_ids(engine.messages())), timeout=60)
        assert wait_for(lambda: all(s.get("status") == "ok" for s in sink_states(setup).values()))
        messages = engine.messages()
    finally:
        server.stop()
        if forwarder is not None:
            forwarder.shutdown()
    ids = delivery_ids(messages)
    assert set(ids) == set(acked)  # the consumer's de-dupe by delivery id leaves exactly N
    log = server.output()
    assert_no_secret_in(log, engine)
    if forwarder is not None:
        assert "sink_connect_failed" in log
        assert "sink_reconnected" in log
    if isinstance(engine, NatsEngine):
        assert len(ids) == N  # JetStream de-duplicates by Nats-Msg-Id itself


def test_sigkill_mid_stream_loses_nothing(engine: Engine, tmp_path: Path) -> None:
    setup = sink_setup(tmp_path, engine)
    server = ServerProcess(setup).start()
    acknowledged: list[str] = []
    stop = threading.Event()
    sender = threading.Thread(target=stream, args=(setup, acknowledged, stop))
    sender.start()
    try:
        assert wait_for(lambda: len(acknowledged) >= 150, timeout=60), "stream did not start"
        server.kill()  # SIGKILL: no shutdown hook runs
    finally:
        stop.set()
        sender.join(30)
        server.kill()
    acked = set(acknowledged)
    stored = set(sink_states(setup))
    assert acked <= stored

    restarted = ServerProcess(setup).start()
    try:
        assert wait_for(
            lambda: stored <= set(delivery_ids(engine.messages())), timeout=90, interval=0.2
        ), "stored events did not all reach the sink after the restart"
        assert wait_for(lambda: all(s.get("status") == "ok" for s in sink_states(setup).values()))
        messages = engine.messages()
    finally:
        restarted.stop()
    counts = Counter(delivery_ids(messages))
    assert set(counts) == stored
    # Sent twice only where the kill cut in between the send and the write of its outcome.
    assert all(c <= 2 for c in counts.values())


def test_a_dropped_connection_is_made_again(broker: Engine, tmp_path: Path) -> None:
    engine = broker
    forwarder = Forwarder(engine.port)
    forwarder.open()
    setup = sink_setup(tmp_path, engine, port=forwarder.port)
    server = ServerProcess(setup).start()
    try:
        first = send(setup, N // 2)
        assert wait_for(lambda: set(first) <= set(delivery_ids(engine.messages())), timeout=60)
        forwarder.close()  # the broker goes away under an open connection
        second = send(setup, N // 2, first=N // 2)

        def retried() -> bool:
            states = sink_states(setup)
            return all(states.get(i, {}).get("attempts", 0) >= 2 for i in second)

        assert wait_for(retried, timeout=60), "the sink was not retried"
        forwarder.open()
        acked = set(first) | set(second)
        assert wait_for(lambda: acked <= set(delivery_ids(engine.messages())), timeout=60)
        assert wait_for(lambda: all(s.get("status") == "ok" for s in sink_states(setup).values()))
        messages = engine.messages()
    finally:
        server.stop()
        forwarder.shutdown()
    assert set(delivery_ids(messages)) == acked
    assert "sink_reconnected" in server.output()
