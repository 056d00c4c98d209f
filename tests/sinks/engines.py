"""The engines the sink tests run against, each with its own client: create a fresh stream,
exchange and queue, or key; read back every message; remove it all.

Servers on loopback: NATS with JetStream (4222), RabbitMQ (5672, guest/guest), Redis (6379), and
an HTTP consumer started here that verifies each request with the ``standardwebhooks`` package.
A test needing one that is not there skips, unless ``CALLBACKS_REQUIRE_BROKERS`` is set (CI).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from callbacks.sinks.secrets import generate_secret

REQUIRE_ENV = "CALLBACKS_REQUIRE_BROKERS"
ENGINES = ("http", "nats", "rabbitmq", "redis")
PORTS = {"nats": 4222, "rabbitmq": 5672, "redis": 6379}
# Read at import: the suite's autouse fixture clears CALLBACKS_* variables before each test.
REQUIRED = bool(os.environ.get(REQUIRE_ENV))


def require(engine: str) -> None:
    """Skip (fail under CALLBACKS_REQUIRE_BROKERS) when ``engine``'s server is not on loopback."""
    port = PORTS.get(engine)
    if port is None:
        return
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return
    except OSError as exc:
        problem = f"{engine} is not listening on 127.0.0.1:{port} ({type(exc).__name__})"
    if REQUIRED:
        pytest.fail(f"{REQUIRE_ENV} is set but {problem}")
    pytest.skip(f"sink tests against {engine} need its server: {problem}")


class Engine:
    """One engine's fresh destination and a consumer for it (all calls synchronous)."""

    kind: str
    port: int = 0

    def __init__(self) -> None:
        self.name = f"t{uuid.uuid4().hex[:12]}"

    def url(self, port: int | None = None) -> str:
        raise NotImplementedError

    def sink_table(self, port: int | None = None) -> dict[str, Any]:
        return {"name": "bus", "url": self.url(port), "target": self.name}

    def create(self) -> None:
        raise NotImplementedError

    def messages(self) -> list[bytes]:
        """Every envelope received so far, duplicates included, in arrival order."""
        raise NotImplementedError

    def delete(self) -> None:
        raise NotImplementedError


class NatsEngine(Engine):
    kind, port = "nats", 4222

    def url(self, port: int | None = None) -> str:
        return f"nats://127.0.0.1:{port or self.port}"

    def sink_table(self, port: int | None = None) -> dict[str, Any]:
        return {"name": "bus", "url": self.url(port), "target": f"{self.name}.events"}

    async def _js(self) -> Any:
        import nats

        client = await nats.connect(self.url())
        return client, client.jetstream()

    def create(self) -> None:
        async def run() -> None:
            client, js = await self._js()
            await js.add_stream(name=self.name, subjects=[f"{self.name}.>"])
            await client.close()

        asyncio.run(run())

    def messages(self) -> list[bytes]:
        async def run() -> list[bytes]:
            client, js = await self._js()
            try:
                info = await js.stream_info(self.name)
                return [
                    (await js.get_msg(self.name, seq)).data or b""
                    for seq in range(info.state.first_seq, info.state.last_seq + 1)
                    if info.state.messages
                ]
            finally:
                await client.close()

        return asyncio.run(run())

    def delete(self) -> None:
        async def run() -> None:
            client, js = await self._js()
            await js.delete_stream(self.name)
            await client.close()

        asyncio.run(run())


class RabbitMqEngine(Engine):
    kind, port = "rabbitmq", 5672

    def __init__(self) -> None:
        super().__init__()
        self._received: list[bytes] = []

    def url(self, port: int | None = None) -> str:
        return f"amqp://guest:guest@127.0.0.1:{port or self.port}/"

    async def _run(self, work: Any) -> Any:
        import aio_pika

        connection = await aio_pika.connect(self.url())
        try:
            channel = await connection.channel()
            return await work(aio_pika, channel)
        finally:
            await connection.close()

    def create(self) -> None:
        async def work(aio_pika: Any, channel: Any) -> None:
            exchange = await channel.declare_exchange(
                self.name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(self.name, durable=True)
            await queue.bind(exchange, "#")

        asyncio.run(self._run(work))

    def messages(self) -> list[bytes]:
        async def work(aio_pika: Any, channel: Any) -> None:
            queue = await channel.get_queue(self.name)
            while (message := await queue.get(fail=False)) is not None:
                assert message.message_id == orjson.loads(message.body)["delivery_id"]
                assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
                self._received.append(message.body)
                await message.ack()

        asyncio.run(self._run(work))
        return list(self._received)

    def delete(self) -> None:
        async def work(aio_pika: Any, channel: Any) -> None:
            await channel.queue_delete(self.name)
            await channel.exchange_delete(self.name)

        asyncio.run(self._run(work))


class RedisEngine(Engine):
    kind, port = "redis", 6379

    def url(self, port: int | None = None) -> str:
        return f"redis://127.0.0.1:{port or self.port}/0"

    def create(self) -> None:
        pass  # XADD creates the stream; delete() removes it

    def messages(self) -> list[bytes]:
        import redis

        client = redis.Redis(port=self.port)
        try:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(self.name)  # type: ignore[assignment]
        finally:
            client.close()
        out = []
        for _, fields in entries:
            envelope = fields[b"envelope"]
            assert fields[b"delivery_id"].decode() == orjson.loads(envelope)["delivery_id"]
            out.append(envelope)
        return out

    def delete(self) -> None:
        import redis

        client = redis.Redis(port=self.port)
        try:
            client.delete(self.name)
        finally:
            client.close()


class HttpEngine(Engine):
    """A consumer on loopback that verifies each POST with ``standardwebhooks`` and records it.
    ``answer`` is the status it replies to a verified request with (500 or 410 to fail)."""

    kind = "http"

    def __init__(self) -> None:
        super().__init__()
        self.secret = generate_secret()
        self.answer = 200
        self.received: list[bytes] = []
        self.unverified = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.port}/hooks/{self.name}"

    def sink_table(self, port: int | None = None) -> dict[str, Any]:
        return {"name": "bus", "url": self.url(port)}

    def create(self) -> None:
        engine = self
        webhook = Webhook(self.secret)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    webhook.verify(body, headers)
                except WebhookVerificationError:
                    with engine._lock:
                        engine.unverified += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                with engine._lock:
                    status = engine.answer
                    if status == 200:
                        assert headers["webhook-id"] == orjson.loads(body)["delivery_id"]
                        engine.received.append(body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def messages(self) -> list[bytes]:
        with self._lock:
            return list(self.received)

    def delete(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def make(kind: str) -> Engine:
    classes: dict[str, type[Engine]] = {
        "http": HttpEngine,
        "nats": NatsEngine,
        "rabbitmq": RabbitMqEngine,
        "redis": RedisEngine,
    }
    return classes[kind]()
