"""Typed events from the documented bodies; nothing unknown is rejected or lost."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbacks.config import RouteConfig
from callbacks.dedupe import body_digest, dedupe_key, encode_key
from callbacks.events import (
    EVENT_TYPES,
    Envelope,
    Event,
    MetaStudioJobResult,
    MetaStudioLiveEvent,
    MetaStudioTtsResult,
    ReplyCommandFinish,
    RtmpStreamStateChange,
    SenseTimeCallback,
    ShootScriptSwitch,
    build_event,
    decode_live_message,
)
from callbacks.masking import TOO_DEEP, masked


def route(name: str, provider: str = "metastudio", kind: str | None = None) -> RouteConfig:
    auth = None if provider == "sensetime" else ("NONE" if kind == "tts" else "MSS_A")
    return RouteConfig(
        name=name,
        path=f"/cb/{name}",
        provider=provider,  # type: ignore[arg-type]
        public_url=f"https://hooks.example.com/cb/{name}",
        kind=kind,  # type: ignore[arg-type]
        auth=auth,  # type: ignore[arg-type]
    )


SENSETIME = route("st", "sensetime")
JOB_KINDS = ("video", "photo_video", "business_card", "subtitle")
JOB_ROUTES = {kind: route(f"ms-{kind}", kind=kind) for kind in JOB_KINDS}
TTS = route("ms-tts", kind="tts")
LIVE = route("ms-live", kind="live")
ALL_ROUTES = [SENSETIME, *JOB_ROUTES.values(), TTS, LIVE]


def envelope(r: RouteConfig, delivery_id: str = "0190a1b2c3d4e5f60718293a4b5c6d7e") -> Envelope:
    return Envelope(delivery_id, r, key_id="abc123def456", received_at=1_767_225_600.5)


def build(r: RouteConfig, raw: dict[str, Any]) -> Event:
    return build_event(envelope(r), raw)


def live_body(event_type: str, **message: Any) -> dict[str, Any]:
    return {"event_type": event_type, "message": orjson.dumps(message).decode()}


# -- MetaStudio job results --------------------------------------------------------------------


@pytest.mark.parametrize("kind", JOB_KINDS)
@pytest.mark.parametrize(
    ("result", "succeeded"),
    [("SUCCEED", True), ("SUCCESS", True), ("FAILED", False), ("CANCELED", False), ("NEW", False)],
)
def test_job_result_for_every_job_kind(kind: str, result: str, succeeded: bool) -> None:
    raw = {"result": result, "asset_id": "asset-1", "job_id": "job-1"}
    event = build(JOB_ROUTES[kind], raw)
    assert type(event) is MetaStudioJobResult
    assert event.kind == kind
    assert event.job_id == "job-1"
    assert event.asset_id == "asset-1"
    assert event.result == result
    assert event.succeeded is succeeded
    assert event.event_type == "MetaStudioJobResult"


def test_common_fields_come_from_the_envelope() -> None:
    raw = {"result": "SUCCEED", "job_id": "j"}
    event = build(JOB_ROUTES["video"], raw)
    assert event.delivery_id == "0190a1b2c3d4e5f60718293a4b5c6d7e"
    assert event.route == "ms-video"
    assert event.provider == "metastudio"
    assert event.key_id == "abc123def456"
    assert event.received_at == 1_767_225_600.5
    assert event.raw == raw


def test_job_result_keeps_unknown_fields_and_tolerates_missing_ones() -> None:
    raw = {"result": "SUCCEED", "job_id": 12345, "extra": {"nested": [1, 2]}, "asset_id": None}
    event = build(JOB_ROUTES["video"], raw)
    assert isinstance(event, MetaStudioJobResult)
    assert event.job_id == "12345"
    assert event.asset_id is None
    assert event.raw["extra"] == {"nested": [1, 2]}
    empty = build(JOB_ROUTES["subtitle"], {})
    assert isinstance(empty, MetaStudioJobResult)
    assert (empty.job_id, empty.asset_id, empty.result, empty.succeeded) == (
        None,
        None,
        None,
        False,
    )


# -- MetaStudio TTS ----------------------------------------------------------------------------


def test_tts_result() -> None:
    raw = {
        "status": "FINISHED",
        "job_id": "tts-1",
        "audio_file_download_url": "https://obs.example.com/a.wav",
        "subtitle_file_download_url": "https://obs.example.com/a.srt",
        "audio_duration": 12,
    }
    event = build(TTS, raw)
    assert type(event) is MetaStudioTtsResult
    assert event.job_id == "tts-1"
    assert event.status == "FINISHED"
    assert event.audio_file_download_url == "https://obs.example.com/a.wav"
    assert event.subtitle_file_download_url == "https://obs.example.com/a.srt"
    assert event.audio_duration == 12.0


@pytest.mark.parametrize(
    ("duration", "expected"),
    [(1.5, 1.5), ("2.25", 2.25), ("n/a", None), (True, None), (None, None)],
)
def test_tts_duration_as_number_or_text(duration: Any, expected: float | None) -> None:
    event = build(TTS, {"status": "ERROR", "job_id": "t", "audio_duration": duration})
    assert isinstance(event, MetaStudioTtsResult)
    assert event.audio_duration == expected
    assert event.status == "ERROR"


# -- MetaStudio live ---------------------------------------------------------------------------


def test_shoot_script_switch() -> None:
    raw = live_body(
        "SHOOT_SCRIPT_SWITCH",
        room_id="room-1",
        job_id="job-1",
        scene_script_name="opening",
        shoot_script_sequence_no=3,
        shoot_script_title="Welcome",
    )
    event = build(LIVE, raw)
    assert type(event) is ShootScriptSwitch
    assert isinstance(event, MetaStudioLiveEvent)
    assert event.platform_event_type == "SHOOT_SCRIPT_SWITCH"
    assert event.room_id == "room-1"
    assert event.job_id == "job-1"
    assert event.scene_script_name == "opening"
    assert event.shoot_script_sequence_no == 3
    assert event.shoot_script_title == "Welcome"
    assert event.message["shoot_script_title"] == "Welcome"
    assert event.raw is raw


@pytest.mark.parametrize("seq", ["3", True, 2.5, None])
def test_shoot_script_sequence_no_must_be_an_integer(seq: Any) -> None:
    event = build(LIVE, live_body("SHOOT_SCRIPT_SWITCH", shoot_script_sequence_no=seq))
    assert isinstance(event, ShootScriptSwitch)
    assert event.shoot_script_sequence_no is None


@pytest.mark.parametrize(
    "state", ["CONNECTING", "CONNECTED", "DISCONNECTED", "RECONNECTING", "END", "NEW_STATE"]
)
def test_rtmp_stream_state_change(state: str) -> None:
    raw = live_body(
        "RTMP_STREAM_STATE_CHANGE",
        room_id="room-1",
        job_id="job-1",
        output_url="rtmp://live.example.com/app",
        stream_key="sk-very-secret",
        state=state,
    )
    event = build(LIVE, raw)
    assert type(event) is RtmpStreamStateChange
    assert event.output_url == "rtmp://live.example.com/app"
    assert event.stream_key == "sk-very-secret"
    assert event.state == state
    assert event.room_id == "room-1"
    assert "sk-very-secret" not in repr(event)


def test_reply_command_finish() -> None:
    event = build(LIVE, live_body("REPLY_COMMAND_FINISH", room_id=7, job_id="j", reply_id="r-1"))
    assert type(event) is ReplyCommandFinish
    assert event.reply_id == "r-1"
    assert event.room_id == "7"  # integer ids are kept as text
    assert event.job_id == "j"


def test_unknown_live_event_type() -> None:
    raw = live_body("ROOM_CLOSED", room_id="room-1", reason="done")
    event = build(LIVE, raw)
    assert type(event) is MetaStudioLiveEvent
    assert event.platform_event_type == "ROOM_CLOSED"
    assert event.room_id == "room-1"
    assert event.message == {"room_id": "room-1", "reason": "done"}


@pytest.mark.parametrize("message", ["{not json", "[1, 2]", '"text"', "", 42, None, ["a"]])
def test_undecodable_live_message_gives_empty_message(message: Any) -> None:
    event = build(LIVE, {"event_type": "REPLY_COMMAND_FINISH", "message": message})
    assert isinstance(event, ReplyCommandFinish)
    assert event.message == {}
    assert event.reply_id is None
    assert event.raw["message"] == message


def test_live_message_sent_as_an_object_is_tolerated() -> None:
    event = build(LIVE, {"event_type": "REPLY_COMMAND_FINISH", "message": {"reply_id": "r"}})
    assert isinstance(event, ReplyCommandFinish)
    assert event.reply_id == "r"
    assert decode_live_message('{"a": 1}') == {"a": 1}


def test_live_event_without_event_type() -> None:
    event = build(LIVE, {"message": "{}"})
    assert type(event) is MetaStudioLiveEvent
    assert event.platform_event_type is None


# -- SenseTime ---------------------------------------------------------------------------------


def test_sensetime_primary_field_names() -> None:
    raw = {
        "taskId": 884213,
        "status": 35,
        "type": "live",
        "userData": "order-17",
        "timestamp": 1693206851,
        "signature": "863151b586912152aacee3124f81e301",
        "roomUrl": "https://example.com/room",
    }
    event = build(SENSETIME, raw)
    assert type(event) is SenseTimeCallback
    assert event.provider == "sensetime"
    assert event.task_id == "884213"  # integer ids kept as text
    assert event.status == "35"
    assert event.task_type == "live"
    assert event.user_data == "order-17"
    assert event.raw["roomUrl"] == "https://example.com/room"  # unknown fields kept


def test_sensetime_alternative_field_names() -> None:
    event = build(SENSETIME, {"id": "t-9", "state": "done", "taskType": "video"})
    assert isinstance(event, SenseTimeCallback)
    assert (event.task_id, event.status, event.task_type, event.user_data) == (
        "t-9",
        "done",
        "video",
        None,
    )


def test_sensetime_without_known_fields() -> None:
    event = build(SENSETIME, {"something": [1, 2, {"x": None}]})
    assert isinstance(event, SenseTimeCallback)
    assert (event.task_id, event.status, event.task_type, event.user_data) == (None,) * 4
    assert event.raw == {"something": [1, 2, {"x": None}]}


@pytest.mark.parametrize("value", [1.5, True, None, [1], {"a": 1}])
def test_sensetime_non_text_ids_are_dropped_not_rejected(value: Any) -> None:
    event = build(SENSETIME, {"taskId": value, "status": value, "userData": value})
    assert isinstance(event, SenseTimeCallback)
    assert event.task_id is None
    assert event.status is None
    assert event.user_data is None


def test_event_types_are_all_events() -> None:
    assert all(issubclass(t, Event) for t in EVENT_TYPES)
    assert issubclass(RtmpStreamStateChange, MetaStudioLiveEvent)


# -- dedupe keys -------------------------------------------------------------------------------


def test_job_result_dedupe_covers_the_whole_body() -> None:
    video = JOB_ROUTES["video"]
    raw = {"result": "SUCCEED", "asset_id": "a", "job_id": "job-1"}
    key = dedupe_key(video, raw)
    assert orjson.loads(key) == ["ms-video", "sha256:" + body_digest(video, raw)]
    # A retry signs with a new time_stamp/secret in the query: the body, hence the key, is the same.
    assert dedupe_key(video, {"job_id": "job-1", "asset_id": "a", "result": "SUCCEED"}) == key
    # A forged body reusing a captured signature with another asset must not take the slot of
    # the genuine callback: any other content is another notification.
    assert dedupe_key(video, dict(raw, asset_id="forged")) != key
    assert dedupe_key(video, dict(raw, extra=1)) != key
    assert dedupe_key(video, dict(raw, result="FAILED")) != key
    assert dedupe_key(video, dict(raw, job_id="job-2")) != key
    assert dedupe_key(JOB_ROUTES["photo_video"], raw) != key


def test_job_names_with_separators_do_not_collide() -> None:
    """The old ``route:job:JOB:RESULT`` key made job ``a:SUCCEED`` (result X) collide with job
    ``a`` (result ``SUCCEED:X``)."""
    video = JOB_ROUTES["video"]
    one = dedupe_key(video, {"job_id": "a:SUCCEED", "result": "X"})
    other = dedupe_key(video, {"job_id": "a", "result": "SUCCEED:X"})
    assert one != other


def test_tts_dedupe_covers_the_whole_body() -> None:
    raw = {"status": "FINISHED", "job_id": "t1", "audio_file_download_url": "https://x/1"}
    key = dedupe_key(TTS, raw)
    assert dedupe_key(TTS, dict(raw)) == key
    # A token URL can be replayed for days: a body with another download URL is not a retry.
    assert dedupe_key(TTS, dict(raw, audio_file_download_url="https://evil/2")) != key
    assert dedupe_key(TTS, dict(raw, status="WAITING")) != key


def test_live_dedupe_is_the_body_digest() -> None:
    raw = live_body("REPLY_COMMAND_FINISH", reply_id="r1")
    key = dedupe_key(LIVE, raw)
    assert orjson.loads(key)[0] == "ms-live"
    assert dedupe_key(LIVE, dict(raw)) == key
    assert dedupe_key(LIVE, live_body("REPLY_COMMAND_FINISH", reply_id="r2")) != key


def test_sensetime_digest_ignores_timestamp_and_signature_but_not_content() -> None:
    raw = {"taskId": 1, "status": 35, "timestamp": 1693206851, "signature": "a" * 32}
    key = dedupe_key(SENSETIME, raw)
    assert orjson.loads(key)[0] == "st"
    resent = {"status": 35, "taskId": 1, "timestamp": 1693206999, "signature": "b" * 32}
    assert dedupe_key(SENSETIME, resent) == key  # key order and auth fields do not matter
    assert dedupe_key(SENSETIME, {"taskId": 1, "status": 35}) == key
    assert dedupe_key(SENSETIME, dict(raw, status=36)) != key
    assert dedupe_key(SENSETIME, dict(raw, userData="x")) != key
    assert dedupe_key(route("st2", "sensetime"), raw) != key


def test_metastudio_digest_covers_the_whole_body() -> None:
    raw = {"event_type": "X", "message": "{}", "timestamp": 1}
    assert body_digest(LIVE, raw) != body_digest(LIVE, {"event_type": "X", "message": "{}"})
    assert len(body_digest(LIVE, raw)) == 64


_KEY_PARTS = st.lists(st.text(max_size=12), min_size=1, max_size=4).map(tuple)


@settings(max_examples=500, deadline=None)
@given(one=_KEY_PARTS, other=_KEY_PARTS)
def test_distinct_key_parts_never_give_the_same_key(
    one: tuple[str, ...], other: tuple[str, ...]
) -> None:
    assert (encode_key(*one) == encode_key(*other)) == (one == other)


@settings(max_examples=300, deadline=None)
@given(parts=_KEY_PARTS)
def test_a_key_decodes_back_to_its_parts(parts: tuple[str, ...]) -> None:
    assert tuple(orjson.loads(encode_key(*parts))) == parts


@settings(max_examples=300, deadline=None)
@given(
    job=st.text(max_size=12),
    result=st.text(max_size=12),
    other_job=st.text(max_size=12),
    other_result=st.text(max_size=12),
)
def test_different_job_results_never_share_a_key(
    job: str, result: str, other_job: str, other_result: str
) -> None:
    video = JOB_ROUTES["video"]
    one = dedupe_key(video, {"job_id": job, "result": result})
    other = dedupe_key(video, {"job_id": other_job, "result": other_result})
    assert (one == other) == ((job, result) == (other_job, other_result))


# -- masking -----------------------------------------------------------------------------------


def test_masked_hides_sensetime_signature() -> None:
    raw = {"taskId": 1, "timestamp": 1693206851, "signature": "863151b586912152aacee3124f81e301"}
    out = masked("sensetime", raw)
    assert out["signature"] == "***"
    assert out["timestamp"] == 1693206851
    assert raw["signature"] == "863151b586912152aacee3124f81e301"  # the input is not changed


def test_masked_hides_stream_key() -> None:
    raw = live_body("RTMP_STREAM_STATE_CHANGE", stream_key="sk-secret", state="CONNECTED")
    out = masked("metastudio", raw)
    assert "sk-secret" not in orjson.dumps(out).decode()
    assert orjson.loads(out["message"]) == {"stream_key": "***", "state": "CONNECTED"}
    assert "sk-secret" in raw["message"]


def test_masked_leaves_other_bodies_alone() -> None:
    raw = {"result": "SUCCEED", "job_id": "j", "output": {"url": "https://x", "n": [1, 2]}}
    assert masked("metastudio", raw) == raw
    text = {"event_type": "X", "message": "stream_key mentioned in junk {"}
    assert masked("metastudio", text) == text
    as_sent = {"event_type": "X", "message": '{"room_id":  "r1"}'}
    assert masked("metastudio", as_sent) == as_sent  # nothing hidden: the sender's own text


def test_masked_hides_stream_key_written_with_an_escape() -> None:
    body = b'{"event_type": "X", "message": "{\\"stream\\\\u005fkey\\": \\"sk-escaped\\"}"}'
    raw = orjson.loads(body)
    assert "stream_key" not in raw["message"]  # the escape survives the first parse...
    out = masked("metastudio", raw)
    assert "sk-escaped" not in orjson.dumps(out).decode()  # ...but not the masking
    top = masked("metastudio", orjson.loads(b'{"stream\\u005fkey": "sk-top"}'))
    assert top == {"stream_key": "***"}


def test_masked_hides_stream_key_when_message_is_an_object() -> None:
    raw = {"event_type": "RTMP_STREAM_STATE_CHANGE", "message": {"stream_key": "sk-object"}}
    out = masked("metastudio", raw)
    assert out["message"] == {"stream_key": "***"}


def test_masked_hides_stream_key_in_json_inside_json_text() -> None:
    inner = orjson.dumps({"push": {"stream_key": "sk-twice"}}).decode()
    raw = {"message": orjson.dumps({"detail": inner}).decode()}
    assert "sk-twice" not in orjson.dumps(masked("metastudio", raw)).decode()


def test_masked_shows_a_placeholder_past_its_depth_and_stays_printable() -> None:
    deep: Any = {"stream_key": "sk-deep"}
    for _ in range(300):
        deep = {"d": deep}
    out = masked("metastudio", deep)
    text = orjson.dumps(out).decode()  # orjson refuses more than 254 levels
    assert "sk-deep" not in text
    assert TOO_DEEP in text


_MASKED_SPELLINGS = st.sampled_from(
    ["stream_key", "streamKey", "Stream-Key", "signature", "secret", "token", "password"]
)
_SECRET = "SeCrEt-0123456789-zz"


@st.composite
def secret_somewhere(draw: st.DrawFn) -> bytes:
    """A body (as sent) with the secret under a masked key, at some depth, with some levels
    encoded as JSON text and the key maybe written with escapes."""
    key = draw(_MASKED_SPELLINGS)
    value: Any = draw(
        st.sampled_from([_SECRET, [_SECRET], {"inner": _SECRET}, f"prefix {_SECRET} suffix"])
    )
    node: Any = {key: value}
    for _ in range(draw(st.integers(0, 6))):
        sibling = draw(st.dictionaries(st.sampled_from(["a", "b", "job_id"]), _JSON, max_size=2))
        wrap = draw(st.sampled_from(["object", "list", "text"]))
        if wrap == "text":
            node = orjson.dumps(node).decode()
        elif wrap == "list":
            node = [draw(_JSON), node]
        container = {**sibling, draw(st.sampled_from(["message", "data", "x"])): node}
        node = container
    text = orjson.dumps(node).decode()
    if draw(st.booleans()):  # write every "_" in a key as an escape: the same JSON
        text = text.replace("_", "\\u005f")
    return text.encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=secret_somewhere(), provider=st.sampled_from(["sensetime", "metastudio"]))
def test_a_secret_under_a_masked_key_never_shows(body: bytes, provider: str) -> None:
    raw = orjson.loads(body)
    if not isinstance(raw, dict):
        raw = {"body": raw}
    shown = orjson.dumps(masked(provider, raw)).decode()
    assert _SECRET not in shown
    assert "SeCrEt" not in shown


# -- nothing raises, whatever the JSON object ----------------------------------------------------

# What orjson hands over: 64-bit integers, finite floats, valid Unicode text.
_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_JSON_KEYS = st.sampled_from(
    [
        "result",
        "job_id",
        "asset_id",
        "status",
        "audio_duration",
        "audio_file_download_url",
        "event_type",
        "message",
        "taskId",
        "id",
        "state",
        "type",
        "taskType",
        "userData",
        "timestamp",
        "signature",
        "stream_key",
        "room_id",
        "shoot_script_sequence_no",
        "reply_id",
        "output_url",
    ]
) | st.text(max_size=10)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_JSON_KEYS, children, max_size=4)
    ),
    max_leaves=12,
)
_EVENT_TYPES = st.sampled_from(
    ["SHOOT_SCRIPT_SWITCH", "RTMP_STREAM_STATE_CHANGE", "REPLY_COMMAND_FINISH", "OTHER"]
)


@st.composite
def json_objects(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(st.dictionaries(_JSON_KEYS, _JSON, max_size=6))
    if draw(st.booleans()):  # a live body whose message is a JSON document as text
        body["event_type"] = draw(_EVENT_TYPES | _JSON)
        message = draw(st.dictionaries(_JSON_KEYS, _JSON, max_size=6))
        body["message"] = orjson.dumps(message).decode()
    parsed: dict[str, Any] = orjson.loads(orjson.dumps(body))  # what the receiver would parse
    return parsed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=json_objects(), r=st.sampled_from(ALL_ROUTES))
def test_build_event_and_dedupe_key_never_raise(raw: dict[str, Any], r: RouteConfig) -> None:
    event = build(r, raw)
    assert isinstance(event, Event)
    assert event.raw == raw
    assert event.route == r.name
    key = dedupe_key(r, raw)
    assert orjson.loads(key)[0] == r.name
    assert key == dedupe_key(r, orjson.loads(orjson.dumps(raw)))
    shown = masked(r.provider, raw)
    assert set(shown) == set(raw)
    message = decode_live_message(raw.get("message"))
    if isinstance(raw.get("message"), str) and "stream_key" in message:
        assert decode_live_message(shown["message"])["stream_key"] == "***"


@pytest.mark.parametrize("job_id", ["job\x00evil", "j" * 129, "line\nbreak"])
def test_dedupe_key_never_carries_unstorable_or_huge_text(job_id: str) -> None:
    route = RouteConfig(
        name="v",
        path="/v",
        provider="metastudio",
        public_url="https://h.example.com/v",
        kind="video",
        auth="MSS_A",
    )
    key = dedupe_key(route, {"job_id": job_id, "result": "SUCCEED"})
    assert job_id not in key
    assert key.isprintable()
    assert len(key) < 200
