"""The envelope: every one the receiver builds validates against the shipped JSON Schema and
reads back unchanged; junk and incomplete envelopes raise EnvelopeError and nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from callbacks.errors import CallbacksError
from callbacks.events import Event, SenseTimeCallback
from callbacks.sinks.envelope import Confirmation, EnvelopeError, EventEnvelope, json_schema

SCHEMA = json_schema()
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
REQUIRED = tuple(SCHEMA["required"])

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.dictionaries(st.text(max_size=12), json_value, max_size=6)
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)


@dataclass(frozen=True, kw_only=True)
class ConfirmedEvent(Event):
    """An event as the confirmation feature shapes it: a ``confirmation`` with state and details."""

    confirmation: Any = None


@st.composite
def events(draw: st.DrawFn) -> Event:
    provider = draw(st.sampled_from(["sensetime", "metastudio"]))
    fields: dict[str, Any] = {
        "delivery_id": draw(names),
        "route": draw(names),
        "provider": provider,
        "key_id": draw(st.none() | names),
        "received_at": draw(st.floats(0, 4e9)),
        "raw": draw(bodies),
    }
    confirmation = draw(
        st.none()
        | st.builds(Confirmation, names, st.none() | bodies)
        | st.fixed_dictionaries({"state": names, "details": bodies})
    )
    if confirmation is None:
        return draw(st.sampled_from([Event, SenseTimeCallback]))(**fields)
    return ConfirmedEvent(**fields, confirmation=confirmation)


@given(events())
def test_every_envelope_validates_and_reads_back(event: Event) -> None:
    envelope = EventEnvelope.from_event(event)
    data = envelope.encode()
    VALIDATOR.validate(orjson.loads(data))
    assert EventEnvelope.decode(data) == envelope
    assert envelope.delivery_id == event.delivery_id
    assert envelope.event_type == event.event_type
    if isinstance(event, ConfirmedEvent):
        assert envelope.confirmation is not None


def test_sensetime_signature_is_left_out_and_the_rest_kept() -> None:
    raw = {"taskId": 7, "status": 2, "timestamp": 1700000000, "signature": "abc123"}
    event = SenseTimeCallback(
        delivery_id="d1", route="st", provider="sensetime", key_id="k1", received_at=0.5, raw=raw
    )
    out = orjson.loads(EventEnvelope.from_event(event).encode())
    assert out["body"] == {"taskId": 7, "status": 2, "timestamp": 1700000000}
    assert out["received_at"] == "1970-01-01T00:00:00.500000Z"
    assert "confirmation" not in out


@given(events(), st.sampled_from(REQUIRED))
def test_an_envelope_missing_a_field_is_refused_by_schema_and_reader(
    event: Event, missing: str
) -> None:
    data = EventEnvelope.from_event(event).as_dict()
    del data[missing]
    assert not VALIDATOR.is_valid(data)
    with pytest.raises(EnvelopeError):
        EventEnvelope.decode(orjson.dumps(data))


@given(events(), st.sampled_from(REQUIRED), json_value)
def test_a_field_of_the_wrong_kind_is_refused_by_both(event: Event, name: str, value: Any) -> None:
    data = EventEnvelope.from_event(event).as_dict()
    data[name] = value
    schema_ok = VALIDATOR.is_valid(data)
    try:
        EventEnvelope.decode(orjson.dumps(data))
    except EnvelopeError:
        reader_ok = False
    else:
        reader_ok = True
    assert schema_ok == reader_ok


@given(st.binary(max_size=200) | json_value.map(orjson.dumps))
def test_junk_raises_only_envelope_error(junk: bytes) -> None:
    try:
        EventEnvelope.decode(junk)
    except CallbacksError as exc:
        error: CallbacksError | None = exc
    else:
        error = None
    assert error is None or type(error) is EnvelopeError


@pytest.mark.parametrize("version", [True, 2, "1", None])
def test_only_version_1_is_read(version: object) -> None:
    event = Event(delivery_id="d", route="r", provider="p", key_id=None, received_at=1.0, raw={})
    data = EventEnvelope.from_event(event).as_dict()
    data["version"] = version
    assert not VALIDATOR.is_valid(data)
    with pytest.raises(EnvelopeError):
        EventEnvelope.decode(orjson.dumps(data))
