"""HTTP sink: POST each envelope, signed the Standard Webhooks way.

The headers are :mod:`callbacks.sinks.signing`'s (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``, one signature per secret). A 2xx answer is success, 410 Gone stops that
delivery for good, anything else (or no answer within ``timeout``) is retried.

Client: httpx, already the project's HTTP client in its tests, with a connection pool kept for
the life of the sink (HTTP/1.1 keep-alive), timeouts and no redirects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import httpx

from callbacks.sinks.base import SinkRejected, SinkUnavailable
from callbacks.sinks.envelope import EventEnvelope
from callbacks.sinks.settings import SinkConfig
from callbacks.sinks.signing import signature_header as signature_header  # re-exported
from callbacks.sinks.signing import webhook_headers

_MAX_CONNECTIONS = 128


class HttpSink:
    def __init__(
        self,
        config: SinkConfig,
        keys: Callable[[], Sequence[bytes]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = config.name
        self.config = config
        self._keys = keys
        self.clock = clock
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.config.timeout,
                follow_redirects=False,
                limits=httpx.Limits(
                    max_connections=_MAX_CONNECTIONS, max_keepalive_connections=_MAX_CONNECTIONS
                ),
                headers={"user-agent": "avatar-callbacks"},
            )

    async def send(self, envelope: EventEnvelope) -> None:
        if self._client is None:
            await self.start()
        assert self._client is not None
        body = envelope.encode()
        headers = webhook_headers(self._keys(), envelope.delivery_id, int(self.clock()), body)
        try:
            response = await self._client.post(self.config.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # The type only: httpx's messages can quote the URL, which may carry a token.
            raise SinkUnavailable(f"sink {self.name!r}: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status == 410:
            raise SinkRejected(f"sink {self.name!r} answered 410 Gone: not retried")
        raise SinkUnavailable(f"sink {self.name!r} answered {status}")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
