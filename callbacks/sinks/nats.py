"""NATS JetStream sink: publish to a subject and wait for the stream's ack.

``Nats-Msg-Id`` is the delivery id, so the stream's duplicate window drops our retries (a send
whose ack was lost is sent again and acked as a duplicate). The stream itself is the team's:
create it to capture ``target``; a subject no stream captures fails (no responders) and retries.

Client: nats-py, the NATS maintainers' asyncio client. Its own reconnect loop is switched off:
while the server is down it would hold publishes in a buffer, which then wait out their timeouts;
:class:`~callbacks.sinks.connection.Reconnecting` fails them at once and reconnects with backoff.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from callbacks.sinks.base import SinkUnavailable
from callbacks.sinks.connection import Reconnecting, describe
from callbacks.sinks.envelope import EventEnvelope
from callbacks.sinks.settings import SinkConfig


async def _quiet(exc: Exception) -> None:
    """nats-py prints connection errors itself unless given a callback; ours are logged once."""


class NatsSink:
    def __init__(self, config: SinkConfig) -> None:
        assert config.target is not None
        self.name = config.name
        self.config = config
        self.subject = config.target
        self._redact = (urlsplit(config.url).password or "",)
        self._link: Reconnecting[tuple[Client, JetStreamContext]] = Reconnecting(
            config.name,
            self._connect,
            self._disconnect,
            timeout=config.timeout,
            redact=self._redact,
        )

    async def _connect(self) -> tuple[Client, JetStreamContext]:
        client = await nats.connect(
            servers=[self.config.url],
            name="avatar-callbacks",
            connect_timeout=max(1, int(self.config.timeout)),
            allow_reconnect=False,
            error_cb=_quiet,
        )
        return client, client.jetstream(timeout=self.config.timeout)

    @staticmethod
    async def _disconnect(link: tuple[Client, JetStreamContext]) -> None:
        await link[0].close()

    async def start(self) -> None:
        self._link.start()

    async def send(self, envelope: EventEnvelope) -> None:
        link = await self._link.get()
        client, js = link
        try:
            await js.publish(
                self.subject,
                envelope.encode(),
                timeout=self.config.timeout,
                headers={"Nats-Msg-Id": envelope.delivery_id},
            )
        except Exception as exc:
            if client.is_closed or not client.is_connected:
                await self._link.lost(link)
            raise SinkUnavailable(f"sink {self.name!r}: {describe(exc, self._redact)}") from None

    async def close(self) -> None:
        await self._link.close()
