"""A sink that answers 410 Gone: that delivery is dead at once, shows in ``events show``, and
``events replay`` sends it again once the consumer takes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from callbacks.cli import main
from tests.sinks.engines import HttpEngine
from tests.sinks.harness import delivery_ids, handled, send, sink_setup, sink_states
from tests.support import ServerProcess, wait_for

pytestmark = pytest.mark.slow


def test_410_is_dead_at_once_and_replay_delivers_it(tmp_path: Path) -> None:
    consumer = HttpEngine()
    consumer.create()
    consumer.answer = 410
    setup = sink_setup(tmp_path, consumer)
    server = ServerProcess(setup).start()
    cli = CliRunner()
    try:
        [delivery_id] = send(setup, 1)
        assert wait_for(lambda: sink_states(setup)[delivery_id].get("status") == "dead")
        shown = cli.invoke(
            main, ["events", "show", delivery_id, "--json", "--config", str(setup.config_path)]
        )
        assert shown.exit_code == 0, shown.output
        details = json.loads(shown.output)
        assert details["status"] == "dead"
        sink_state = details["handler_state"]["sink:bus"]
        assert sink_state["status"] == "dead"
        assert sink_state["attempts"] == 1  # not retried: 410 means gone
        assert "410" in sink_state["error"]
        assert handled(setup) == {delivery_id}  # the handler beside it still ran

        consumer.answer = 200
        replayed = cli.invoke(
            main, ["events", "replay", delivery_id, "--config", str(setup.config_path)]
        )
        assert replayed.exit_code == 0, replayed.output
        assert wait_for(lambda: delivery_ids(consumer.messages()) == [delivery_id])
        assert wait_for(lambda: sink_states(setup)[delivery_id].get("status") == "ok")
    finally:
        server.stop()
        consumer.delete()
    # The handler had succeeded: the replay re-ran only the sink.
    assert [r["id"] for r in setup.delivered() if r["phase"] == "end"] == [delivery_id]
