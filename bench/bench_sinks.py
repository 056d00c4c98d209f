"""Events per second through each sink, against the engine's own client sending the same messages.

Run as ``python bench/bench_sinks.py [--events 4000] [--inflight 64] [--repeats 3]
[--engines http,nats,rabbitmq,redis]`` from the repository root, with the engines on loopback
(NATS JetStream 4222, RabbitMQ 5672 guest/guest, Redis 6379; the HTTP consumer is
``bench/bare_app.py`` under uvicorn, started here). Needs ``pip install -e '.[sinks]'``.

For each engine, in one process, alternating, ``--repeats`` times:

- **sink**: the dispatcher's view of a sink (``SinkTarget``) called with ``--events`` events,
  ``--inflight`` at a time: envelope built and encoded, signed (HTTP), sent, confirmed;
- **client**: the engine's own client publishing the same encoded envelopes, with the same
  headers and the same confirmation (JetStream ack, publisher confirm, XADD reply, HTTP answer),
  ``--inflight`` at a time, in a loop.

The ratio sink/client is the overhead the sink adds; the absolute figures depend on the machine
(compare only within one run). Each run uses its own stream, exchange and queue, or key, removed
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callbacks.events import SenseTimeCallback
from callbacks.sinks.delivery import SinkTarget
from callbacks.sinks.envelope import EventEnvelope
from callbacks.sinks.factory import open_sink
from callbacks.sinks.http import signature_header
from callbacks.sinks.secrets import generate_secret, secret_bytes
from callbacks.sinks.settings import SinkConfig
from tests.support import free_port

BENCH = Path(__file__).resolve().parent
NATS_URL = "nats://127.0.0.1:4222"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"


def make_events(count: int, run: str) -> list[SenseTimeCallback]:
    """Realistic SenseTime callbacks (about 1 kB of body each), distinct delivery ids."""
    now = time.time()
    return [
        SenseTimeCallback(
            delivery_id=f"{run}-{n:08d}",
            route="sensetime",
            provider="sensetime",
            key_id="k_3f9c2a1b",
            received_at=now,
            raw={
                "taskId": 100000 + n,
                "status": 2,
                "timestamp": int(now),
                "signature": "0" * 64,
                "videoUrl": "https://cdn.example.com/v/" + "x" * 900,
            },
        )
        for n in range(count)
    ]


async def in_flight(count: int, limit: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run ``one(i)`` for every i, ``limit`` at a time; the seconds it took."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(limit)))
    return time.perf_counter() - started


class Engine:
    """One engine's destination, a sink for it, and its own client's way to send a message."""

    name: str

    async def setup(self) -> None: ...
    async def teardown(self) -> None: ...
    def sink_config(self) -> SinkConfig:
        raise NotImplementedError

    async def raw_sender(self) -> tuple[Callable[[EventEnvelope, bytes], Awaitable[None]], Any]:
        """A send function using the engine's client directly, and what to close afterwards."""
        raise NotImplementedError

    async def close_raw(self, handle: Any) -> None: ...
    def sink_keys(self) -> Callable[[], Sequence[bytes]] | None:
        return None


class NatsEngine(Engine):
    name = "nats"

    def __init__(self) -> None:
        self.stream = f"bench{uuid.uuid4().hex[:10]}"

    async def setup(self) -> None:
        import nats

        nc = await nats.connect(NATS_URL)
        await nc.jetstream().add_stream(name=self.stream, subjects=[f"{self.stream}.>"])
        await nc.close()

    async def teardown(self) -> None:
        import nats

        nc = await nats.connect(NATS_URL)
        await nc.jetstream().delete_stream(self.stream)
        await nc.close()

    def sink_config(self) -> SinkConfig:
        return SinkConfig("bench", NATS_URL, f"{self.stream}.events")

    async def raw_sender(self) -> tuple[Callable[[EventEnvelope, bytes], Awaitable[None]], Any]:
        import nats

        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        subject = f"{self.stream}.events"

        async def send(envelope: EventEnvelope, data: bytes) -> None:
            await js.publish(subject, data, headers={"Nats-Msg-Id": envelope.delivery_id})

        return send, nc

    async def close_raw(self, handle: Any) -> None:
        await handle.close()


class RabbitMqEngine(Engine):
    name = "rabbitmq"

    def __init__(self) -> None:
        self.exchange = f"bench{uuid.uuid4().hex[:10]}"

    async def _channel(self) -> Any:
        import aio_pika

        connection = await aio_pika.connect(AMQP_URL)
        return connection, await connection.channel()

    async def setup(self) -> None:
        import aio_pika

        connection, channel = await self._channel()
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(self.exchange, durable=True)
        await queue.bind(exchange, "#")
        await connection.close()

    async def teardown(self) -> None:
        connection, channel = await self._channel()
        await channel.queue_delete(self.exchange)
        await channel.exchange_delete(self.exchange)
        await connection.close()

    def sink_config(self) -> SinkConfig:
        return SinkConfig("bench", AMQP_URL, self.exchange)

    async def raw_sender(self) -> tuple[Callable[[EventEnvelope, bytes], Awaitable[None]], Any]:
        import aio_pika

        connection = await aio_pika.connect(AMQP_URL)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(self.exchange)

        async def send(envelope: EventEnvelope, data: bytes) -> None:
            message = aio_pika.Message(
                data,
                content_type="application/json",
                message_id=envelope.delivery_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                type=envelope.event_type,
            )
            await exchange.publish(
                message, routing_key=f"{envelope.route}.{envelope.event_type}", mandatory=True
            )

        return send, connection

    async def close_raw(self, handle: Any) -> None:
        await handle.close()


class RedisEngine(Engine):
    name = "redis"

    def __init__(self) -> None:
        self.key = f"bench{uuid.uuid4().hex[:10]}"

    async def teardown(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        await client.delete(self.key)
        await client.aclose()

    def sink_config(self) -> SinkConfig:
        return SinkConfig("bench", REDIS_URL, self.key)

    async def raw_sender(self) -> tuple[Callable[[EventEnvelope, bytes], Awaitable[None]], Any]:
        import redis.asyncio as aioredis

        pool = aioredis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=128)
        client = aioredis.Redis(connection_pool=pool)

        async def send(envelope: EventEnvelope, data: bytes) -> None:
            await client.xadd(self.key, {"delivery_id": envelope.delivery_id, "envelope": data})

        return send, client

    async def close_raw(self, handle: Any) -> None:
        await handle.aclose()


class HttpEngine(Engine):
    """POSTs to ``bench/bare_app.py`` under uvicorn (one worker), which parses and answers 200."""

    name = "http"

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/callbacks/sensetime"
        self.secret = secret_bytes(generate_secret())
        self.proc: subprocess.Popen[bytes] | None = None

    async def setup(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "bare_app:app",
             "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
        )  # fmt: skip
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    await client.post(self.url, content=b"{}")
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise RuntimeError("the HTTP consumer did not start")

    async def teardown(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def sink_config(self) -> SinkConfig:
        return SinkConfig("bench", self.url)

    def sink_keys(self) -> Callable[[], Sequence[bytes]]:
        return lambda: (self.secret,)

    async def raw_sender(self) -> tuple[Callable[[EventEnvelope, bytes], Awaitable[None]], Any]:
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=128, max_keepalive_connections=128)
        )

        async def send(envelope: EventEnvelope, data: bytes) -> None:
            ts = str(int(time.time()))
            headers = {
                "content-type": "application/json",
                "webhook-id": envelope.delivery_id,
                "webhook-timestamp": ts,
                "webhook-signature": signature_header(
                    (self.secret,), envelope.delivery_id, ts, data
                ),
            }
            response = await client.post(self.url, content=data, headers=headers)
            response.raise_for_status()

        return send, client

    async def close_raw(self, handle: Any) -> None:
        await handle.aclose()


ENGINES: dict[str, type[Engine]] = {
    "http": HttpEngine,
    "nats": NatsEngine,
    "rabbitmq": RabbitMqEngine,
    "redis": RedisEngine,
}


async def through_sink(engine: Engine, events: Sequence[SenseTimeCallback], limit: int) -> float:
    config = engine.sink_config()
    target = SinkTarget(config, open_sink(config, keys=engine.sink_keys()))
    await target.sink.start()
    try:
        await target(events[0])  # connected before the clock starts, as in a running receiver
        return await in_flight(len(events) - 1, limit, lambda i: target(events[i + 1]))
    finally:
        await target.sink.close()


async def through_client(engine: Engine, events: Sequence[SenseTimeCallback], limit: int) -> float:
    envelopes = [EventEnvelope.from_event(e) for e in events]
    encoded = [e.encode() for e in envelopes]
    send, handle = await engine.raw_sender()
    try:
        await send(envelopes[0], encoded[0])
        return await in_flight(
            len(events) - 1, limit, lambda i: send(envelopes[i + 1], encoded[i + 1])
        )
    finally:
        await engine.close_raw(handle)


async def bench(name: str, count: int, limit: int, repeats: int) -> dict[str, float]:
    engine = ENGINES[name]()
    await engine.setup()
    sink_rates: list[float] = []
    client_rates: list[float] = []
    try:
        for r in range(repeats):
            # Distinct ids per run: JetStream would otherwise drop a rerun as duplicates.
            sink_events = make_events(count, f"s{r}{uuid.uuid4().hex[:6]}")
            client_events = make_events(count, f"c{r}{uuid.uuid4().hex[:6]}")
            sink_rates.append((count - 1) / await through_sink(engine, sink_events, limit))
            client_rates.append((count - 1) / await through_client(engine, client_events, limit))
            print(
                f"  {name:<9} run {r + 1}: sink {sink_rates[-1]:8.0f}/s   "
                f"client {client_rates[-1]:8.0f}/s",
                flush=True,
            )
    finally:
        await engine.teardown()
    sink, client = statistics.median(sink_rates), statistics.median(client_rates)
    return {"sink": sink, "client": client, "ratio": sink / client}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args(argv)
    names = [n for n in args.engines.split(",") if n]
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        parser.error(f"unknown engine(s): {', '.join(unknown)} (known: {', '.join(ENGINES)})")
    print(f"{args.events} events per run, {args.inflight} in flight, median of {args.repeats}")
    results = {n: asyncio.run(bench(n, args.events, args.inflight, args.repeats)) for n in names}
    print("\n| sink | through the sink (events/s) | engine's own client (events/s) | ratio |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['sink']:.0f} | {r['client']:.0f} | {r['ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
