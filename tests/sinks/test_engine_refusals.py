"""What each engine refuses is a failure to retry, never a message counted as sent: a subject no
JetStream stream captures, an exchange that is missing or routes to no queue, a key that is not a
stream; and a closed port fails fast while the sink backs off."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from callbacks.events import Event
from callbacks.sinks.base import SinkUnavailable
from callbacks.sinks.envelope import EventEnvelope
from callbacks.sinks.factory import open_sink
from callbacks.sinks.settings import SinkConfig
from tests.sinks.engines import require
from tests.support import free_port

ENVELOPE = EventEnvelope.from_event(
    Event(delivery_id="d1", route="st", provider="sensetime", key_id=None, received_at=1.0, raw={})
)


def send_once(config: SinkConfig) -> None:
    async def run() -> None:
        sink = open_sink(config)
        await sink.start()
        try:
            await sink.send(ENVELOPE)
        finally:
            await sink.close()

    asyncio.run(run())


def unique() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def test_nats_subject_without_a_stream() -> None:
    require("nats")
    with pytest.raises(SinkUnavailable):
        send_once(SinkConfig("bus", "nats://127.0.0.1:4222", f"{unique()}.none", timeout=1))


def test_rabbitmq_missing_exchange() -> None:
    require("rabbitmq")
    with pytest.raises(SinkUnavailable, match="cannot connect"):
        send_once(SinkConfig("bus", "amqp://guest:guest@127.0.0.1:5672/", unique(), timeout=5))


def test_rabbitmq_exchange_that_routes_to_no_queue() -> None:
    require("rabbitmq")
    import aio_pika

    name = unique()

    async def declare(create: bool) -> None:
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        channel = await connection.channel()
        if create:
            await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        else:
            await channel.exchange_delete(name)
        await connection.close()

    asyncio.run(declare(True))
    try:
        with pytest.raises(SinkUnavailable) as raised:
            send_once(SinkConfig("bus", "amqp://guest:guest@127.0.0.1:5672/", name, timeout=5))
        assert ":guest@" not in str(raised.value)
    finally:
        asyncio.run(declare(False))


def test_redis_key_that_is_not_a_stream() -> None:
    require("redis")
    import redis

    name = unique()
    client = redis.Redis()
    client.set(name, "a string")
    try:
        with pytest.raises(SinkUnavailable, match="WRONGTYPE"):
            send_once(SinkConfig("bus", "redis://127.0.0.1:6379/0", name, timeout=5))
    finally:
        client.delete(name)
        client.close()


@pytest.mark.parametrize(
    "url",
    ["nats://127.0.0.1:{port}", "amqp://guest:guest@127.0.0.1:{port}/", "redis://127.0.0.1:{port}"],
)
def test_a_closed_port_fails_at_once_while_backing_off(url: str) -> None:
    config = SinkConfig("bus", url.format(port=free_port()), "target", timeout=2)

    async def run() -> list[str]:
        sink = open_sink(config)
        await sink.start()
        errors = []
        try:
            for _ in range(3):
                with pytest.raises(SinkUnavailable) as raised:
                    await sink.send(ENVELOPE)
                errors.append(str(raised.value))
        finally:
            await sink.close()
        return errors

    errors = asyncio.run(run())
    # The connect attempt failed once; the sends after it are refused without trying again.
    assert any("is not connected" in e for e in errors[1:])
    assert all(":guest@" not in e for e in errors)
