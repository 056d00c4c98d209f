"""The HTTP sink's Standard Webhooks signatures, checked with the ``standardwebhooks`` package,
and its answers: 2xx sent, 410 refused for good, anything else retried."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from callbacks.errors import CallbacksError, DeliveryRefused, KeyFileError
from callbacks.events import Event
from callbacks.sinks.base import SinkRejected, SinkUnavailable
from callbacks.sinks.envelope import EventEnvelope
from callbacks.sinks.http import HttpSink, signature_header
from callbacks.sinks.secrets import generate_secret, secret_bytes
from callbacks.sinks.settings import SinkConfig
from tests.sinks.engines import HttpEngine
from tests.strategies import mutations
from tests.support import free_port

OLD, NEW = generate_secret(), generate_secret()
KEYS = (secret_bytes(NEW), secret_bytes(OLD))
MSG_ID = "0190a3f2c4d5e6f708192a3b4c5d6e7f"
BODY = '{"type":"avatar-callbacks.event","delivery_id":"0190a3f2"}'
printable = st.characters(min_codepoint=32, max_codepoint=126)


def headers(msg_id: str, timestamp: str, body: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature_header(KEYS, msg_id, timestamp, body.encode()),
    }


def test_every_secret_of_a_rotation_verifies() -> None:
    ts = str(int(time.time()))
    signed = headers(MSG_ID, ts, BODY)
    assert len(signed["webhook-signature"].split(" ")) == 2
    for secret in (OLD, NEW):
        Webhook(secret).verify(BODY, signed)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, signed)


@given(mutations(BODY, printable))
def test_a_changed_body_is_refused(body: str) -> None:
    ts = str(int(time.time()))
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(body, headers(MSG_ID, ts, BODY))


@given(mutations(MSG_ID, printable))
def test_a_changed_id_is_refused(msg_id: str) -> None:
    ts = str(int(time.time()))
    signed = headers(MSG_ID, ts, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(BODY, {**signed, "webhook-id": msg_id})


NOW = str(int(time.time()))


@given(mutations(NOW, st.characters(min_codepoint=48, max_codepoint=57)))
def test_a_changed_timestamp_is_refused(timestamp: str) -> None:
    signed = headers(MSG_ID, NOW, BODY)
    if timestamp and int(timestamp) == int(NOW):
        return  # a leading zero: the same moment, as the library reads it
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(BODY, {**signed, "webhook-timestamp": timestamp})


def test_generated_secrets_are_standard() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(secret_bytes(secret)) == 32
    assert base64.b64decode(secret[6:]) == secret_bytes(secret)


encoded = st.binary(max_size=60).map(lambda b: "whsec_" + base64.b64encode(b).decode())


@given(st.text(max_size=80) | encoded | encoded.flatmap(lambda s: mutations(s, printable)))
def test_junk_secrets_raise_only_key_file_errors(text: str) -> None:
    try:
        key = secret_bytes(text)
    except CallbacksError as exc:
        error: CallbacksError | None = exc
    else:
        error = None
        assert 24 <= len(key) <= 64
    if error is not None:
        assert type(error) is KeyFileError
        assert len(text) < 8 or text not in str(error)  # never names the secret


def _envelope() -> EventEnvelope:
    event = Event(
        delivery_id=MSG_ID, route="st", provider="sensetime", key_id=None, received_at=1.0, raw={}
    )
    return EventEnvelope.from_event(event)


def _send(url: str, keys: tuple[bytes, ...] = KEYS) -> None:
    async def run() -> None:
        sink = HttpSink(SinkConfig("hooks", url, timeout=5), lambda: keys)
        await sink.start()
        try:
            await sink.send(_envelope())
        finally:
            await sink.close()

    asyncio.run(run())


def test_a_consumer_still_on_the_old_secret_takes_the_message() -> None:
    consumer = HttpEngine()
    consumer.secret = OLD
    consumer.create()
    try:
        _send(consumer.url())
        assert len(consumer.messages()) == 1
        assert consumer.unverified == 0
    finally:
        consumer.delete()


@pytest.mark.parametrize(
    ("status", "error"),
    [(200, None), (204, None), (410, SinkRejected), (500, SinkUnavailable), (404, SinkUnavailable)],
)
def test_answers(status: int, error: type[Exception] | None) -> None:
    consumer = HttpEngine()
    consumer.secret = NEW
    consumer.answer = status
    consumer.create()
    try:
        if error is None:
            _send(consumer.url())
        else:
            with pytest.raises(error) as raised:
                _send(consumer.url())
            assert isinstance(raised.value, DeliveryRefused) == (status == 410)
    finally:
        consumer.delete()


def test_nobody_listening_is_retried_and_names_no_url() -> None:
    url = f"http://user:hunter2@127.0.0.1:{free_port()}/hooks?token=s3cret"
    with pytest.raises(SinkUnavailable) as raised:
        _send(url)
    assert "hunter2" not in str(raised.value)
    assert "s3cret" not in str(raised.value)
