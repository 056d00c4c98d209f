"""Redis Streams sink: ``XADD`` one entry per event, optionally trimmed to about ``maxlen``.

The entry holds ``delivery_id`` and ``envelope`` (the JSON). Redis cannot de-duplicate an XADD,
so a retry after a lost reply adds a second entry: consumers de-duplicate by ``delivery_id``.
With ``maxlen`` the stream is trimmed approximately (``MAXLEN ~``), which costs Redis nearly
nothing; exact trimming would make every XADD slower.

Client: redis-py's asyncio client, the Redis project's own, with its connection pool kept for
the life of the sink.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from callbacks.sinks.base import SinkUnavailable
from callbacks.sinks.connection import Reconnecting, describe
from callbacks.sinks.envelope import EventEnvelope
from callbacks.sinks.settings import SinkConfig

_POOL_SIZE = 128


class RedisSink:
    def __init__(self, config: SinkConfig) -> None:
        assert config.target is not None
        self.name = config.name
        self.config = config
        self.key = config.target
        self._redact = (urlsplit(config.url).password or "",)
        self._link: Reconnecting[aioredis.Redis] = Reconnecting(
            config.name,
            self._connect,
            self._disconnect,
            timeout=config.timeout,
            redact=self._redact,
        )

    async def _connect(self) -> aioredis.Redis:
        # Blocking: past the pool's size a send waits for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.config.url,
            socket_timeout=self.config.timeout,
            socket_connect_timeout=self.config.timeout,
            max_connections=_POOL_SIZE,
            timeout=self.config.timeout,
        )
        client = aioredis.Redis(connection_pool=pool)
        try:
            await client.ping()
        except BaseException:
            await client.aclose(close_connection_pool=True)
            raise
        return client

    @staticmethod
    async def _disconnect(client: aioredis.Redis) -> None:
        await client.aclose(close_connection_pool=True)

    async def start(self) -> None:
        self._link.start()

    async def send(self, envelope: EventEnvelope) -> None:
        client = await self._link.get()
        fields: dict[str | bytes, str | bytes] = {
            "delivery_id": envelope.delivery_id,
            "envelope": envelope.encode(),
        }
        try:
            await client.xadd(
                self.key,
                fields,  # type: ignore[arg-type]
                maxlen=self.config.maxlen,
                approximate=True,
            )
        except Exception as exc:
            if isinstance(exc, RedisConnectionError | RedisTimeoutError):
                await self._link.lost(client)
            raise SinkUnavailable(f"sink {self.name!r}: {describe(exc, self._redact)}") from None

    async def close(self) -> None:
        await self._link.close()
