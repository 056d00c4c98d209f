"""RabbitMQ sink: publish persistent messages to an exchange, with publisher confirms.

``send`` returns once the broker confirmed the message (written to disk for durable queues).
``message_id`` is the delivery id (consumers de-duplicate by it: AMQP cannot), the routing key is
``<route>.<event_type>`` so a topic exchange can split by route, and messages are ``mandatory``:
one that no queue takes is returned, and counts as a failure to retry, not as sent.
The exchange is the team's: it must exist (declared passively here, never created).

Client: aio-pika, the maintained asyncio AMQP 0-9-1 client (on aiormq), for its publisher
confirms and returned-message handling; reconnection is ours (see ``connection.py``).
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from callbacks.sinks.base import SinkUnavailable
from callbacks.sinks.connection import Reconnecting, describe
from callbacks.sinks.envelope import EventEnvelope
from callbacks.sinks.settings import SinkConfig


class _Link(NamedTuple):
    connection: AbstractConnection
    channel: AbstractChannel
    exchange: AbstractExchange


class RabbitMqSink:
    def __init__(self, config: SinkConfig) -> None:
        assert config.target is not None
        self.name = config.name
        self.config = config
        self._redact = (urlsplit(config.url).password or "",)
        self._link: Reconnecting[_Link] = Reconnecting(
            config.name,
            self._connect,
            self._disconnect,
            timeout=config.timeout,
            redact=self._redact,
        )

    async def _connect(self) -> _Link:
        connection = await aio_pika.connect(self.config.url, timeout=self.config.timeout)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(self.config.target or "", ensure=True)
        except BaseException:
            await connection.close()
            raise
        return _Link(connection, channel, exchange)

    @staticmethod
    async def _disconnect(link: _Link) -> None:
        await link.connection.close()

    async def start(self) -> None:
        self._link.start()

    async def send(self, envelope: EventEnvelope) -> None:
        link = await self._link.get()
        message = aio_pika.Message(
            envelope.encode(),
            content_type="application/json",
            message_id=envelope.delivery_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=envelope.event_type,
        )
        try:
            await link.exchange.publish(
                message,
                routing_key=f"{envelope.route}.{envelope.event_type}",
                mandatory=True,
                timeout=self.config.timeout,
            )
        except Exception as exc:
            if link.connection.is_closed or link.channel.is_closed:
                await self._link.lost(link)
            raise SinkUnavailable(f"sink {self.name!r}: {describe(exc, self._redact)}") from None

    async def close(self) -> None:
        await self._link.close()
