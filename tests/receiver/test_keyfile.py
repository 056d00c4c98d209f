"""The key file: private, atomically replaced, secrets never in errors, rotation order kept."""

from __future__ import annotations

import itertools
import os
import stat
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbacks.errors import KeyFileError
from callbacks.keyfile import (
    HEADER,
    KeyEntry,
    KeyFile,
    dump_key_file,
    parse_key_file,
    read_key_file,
    write_key_file,
)
from verify import KeyRing, key_id

T0 = datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC)
SECRET_A = "Aa1-primary-secret-0000000000000"  # 32 characters, the platforms' maximum
SECRET_B = "Bb2-next-secret"
SECRET_C = "Cc3-previous-secret"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sample() -> KeyFile:
    return (
        KeyFile()
        .add("sensetime", SECRET_A, state="primary", now=T0)
        .add("sensetime", SECRET_B, state="next", now=T0 + timedelta(hours=1))
        .add("metastudio-video", SECRET_C, state="primary", now=T0)
    )


# -- writing and reading -----------------------------------------------------------------------


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    keys = sample()
    write_key_file(path, keys)
    assert set(read_key_file(path).entries) == set(keys.entries)
    text = path.read_text(encoding="utf-8")
    assert text.startswith(HEADER)
    # The file names each key by id too, so operators can match CLI output to rows.
    ids = {row["id"] for row in tomllib.loads(text)["keys"]}
    assert ids == {key_id(SECRET_A), key_id(SECRET_B), key_id(SECRET_C)}


def test_written_file_is_private_even_when_replacing_a_public_one(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text("# old\n", encoding="utf-8")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_key_file(path, sample())
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600


def test_write_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "keys.toml"
    write_key_file(path, sample())
    assert mode(path) == 0o600
    assert len(read_key_file(path).entries) == 3


def test_write_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    write_key_file(path, sample())
    write_key_file(path, sample().remove("sensetime", key_id(SECRET_B)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.toml"]


def test_failed_write_keeps_the_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys.toml"
    write_key_file(path, sample())
    before = path.read_bytes()

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("callbacks.keyfile.os.replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        write_key_file(path, KeyFile().add("other", "Zz9", state="primary", now=T0))
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert set(read_key_file(path).entries) == set(sample().entries)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.toml"]


_ROUTES = st.sampled_from(["sensetime", "metastudio-video", "ms.tts", "r"]) | st.text(
    min_size=1, max_size=10
)
_SECRETS = st.text(max_size=32)
_TIMES = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))


@st.composite
def key_files(draw: st.DrawFn) -> KeyFile:
    entries: list[KeyEntry] = []
    for route in draw(st.lists(_ROUTES, unique=True, max_size=3)):
        secrets = draw(st.lists(_SECRETS, unique=True, min_size=1, max_size=4))
        states = draw(st.lists(st.sampled_from(["next", "previous"]), min_size=len(secrets)))
        if draw(st.booleans()):
            states[0] = "primary"
        for secret, state in zip(secrets, states, strict=False):
            retire = draw(st.none() | _TIMES) if state == "previous" else None
            entries.append(KeyEntry(route, secret, state, draw(_TIMES), retire))  # type: ignore[arg-type]
    return KeyFile(tuple(draw(st.permutations(entries))))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=key_files())
def test_round_trip_any_routes_secrets_and_states(
    tmp_path_factory: pytest.TempPathFactory, keys: KeyFile
) -> None:
    path = tmp_path_factory.mktemp("keys") / "keys.toml"
    write_key_file(path, keys)
    back = read_key_file(path)
    assert mode(path) == 0o600
    assert len(back.entries) == len(keys.entries)
    assert set(back.entries) == set(keys.entries)
    for route in {e.route for e in keys.entries}:
        assert [k.id for k in back.ring(route)] == [k.id for k in keys.ring(route)]
    # And without the file system in the way.
    assert set(parse_key_file(tomllib.loads(dump_key_file(keys))).entries) == set(keys.entries)


# -- refusing what is unsafe or malformed --------------------------------------------------------


@pytest.mark.parametrize("bits", [0o644, 0o604, 0o602, 0o666])
def test_file_other_users_can_access_is_refused(tmp_path: Path, bits: int) -> None:
    path = tmp_path / "keys.toml"
    write_key_file(path, sample())
    path.chmod(bits)
    with pytest.raises(KeyFileError, match="chmod 600") as info:
        read_key_file(path)
    assert str(path) in str(info.value)
    assert SECRET_A not in str(info.value)


def test_group_readable_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    write_key_file(path, sample())
    path.chmod(0o640)
    assert len(read_key_file(path).entries) == 3


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        read_key_file(tmp_path / "nope.toml")
    assert read_key_file(tmp_path / "nope.toml", missing_ok=True) == KeyFile()


def _private(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "keys.toml"
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    path.chmod(0o600)
    return path


SECRET = "TestOnlyAuthKey0123456789abcdefg"  # 32 characters, a test value

MALFORMED = {
    "unquoted-secret": f'[[keys]]\nroute = "st"\nsecret = {SECRET}\n',
    "unterminated": f'[[keys]]\nroute = "st"\nsecret = "{SECRET}\n',
    "missing-equals": f'[[keys]]\nroute = "st"\nsecret "{SECRET}"\n',
    "duplicate-field": f'[[keys]]\nroute = "st"\nsecret = "{SECRET}"\nsecret = "{SECRET}"\n',
    "bad-table": f'[[keys]\nroute = "st"\nsecret = "{SECRET}"\n',
    "secret-as-key": f'[[keys]]\nroute = "st"\n{SECRET} = 1 2\n',
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_toml_error_never_shows_the_secret(tmp_path: Path, text: str) -> None:
    with pytest.raises(KeyFileError, match="not valid TOML") as info:
        read_key_file(_private(tmp_path, text))
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.args)
    assert info.value.__cause__ is None


def test_undecodable_file(tmp_path: Path) -> None:
    path = _private(tmp_path, b'[[keys]]\nroute = "st"\nsecret = "\xff\xfe"\n')
    with pytest.raises(KeyFileError, match="cannot be read"):
        read_key_file(path)


def _rows(*rows: dict[str, Any]) -> str:
    return tomli_w.dumps({"keys": list(rows)})


def _row(**fields: Any) -> str:
    return _rows(fields)


BAD_FIELDS = {
    "secret-int": (_row(route="st", secret=12345678), "keys[0].secret: required"),
    "secret-missing": (_row(route="st"), "keys[0].secret: required"),
    "secret-too-long": (_row(route="st", secret=SECRET + "X"), "32-character limit"),
    "route-missing": (_row(secret=SECRET), "keys[0].route: required"),
    "route-empty": (_row(route="", secret=SECRET), "keys[0].route: required"),
    "state": (_row(route="st", secret=SECRET, state="primary2"), "keys[0].state: must be one"),
    "added-text": (
        _row(route="st", secret=SECRET, added_at="2026-01-01"),
        "keys[0].added_at: must be a TOML date-time",
    ),
    "retire-date": (
        _row(route="st", secret=SECRET, retire_after=T0.date()),
        "keys[0].retire_after: must be a TOML date-time",
    ),
    "unknown": (_row(route="st", secret=SECRET, comment="x"), "unknown field(s) comment"),
    "not-array": ('keys = "x"\n', "must be an array of tables"),
    "not-table": ("keys = [1]\n", "keys[0]: must be a table"),
    "two-primaries": (
        _rows(
            {"route": "st", "secret": SECRET}, {"route": "st", "secret": "x", "state": "primary"}
        ),
        "more than one primary",
    ),
}


@pytest.mark.parametrize(("text", "problem"), BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_malformed_fields_error_never_shows_the_secret(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = _private(tmp_path, text)
    with pytest.raises(KeyFileError) as info:
        read_key_file(path)
    message = str(info.value)
    assert problem in message
    assert message.startswith(f"{path}: ")
    assert SECRET not in message
    assert SECRET[:8] not in message


def test_two_primaries_on_different_routes_are_fine() -> None:
    data = {
        "keys": [
            {"route": "a", "secret": SECRET_A, "state": "primary"},
            {"route": "b", "secret": SECRET_B, "state": "primary"},
        ]
    }
    assert len(parse_key_file(data).entries) == 2


def test_defaults_state_primary_naive_times_are_utc() -> None:
    (entry,) = parse_key_file(
        {"keys": [{"route": "a", "secret": "s", "added_at": datetime(2026, 1, 1, 8)}]}
    ).entries
    assert entry.state == "primary"
    assert entry.added_at == datetime(2026, 1, 1, 8, tzinfo=UTC)
    (entry,) = parse_key_file({"keys": [{"route": "a", "secret": "s"}]}).entries
    assert entry.added_at == datetime.fromtimestamp(0, UTC)
    assert parse_key_file({}) == KeyFile()


def test_entry_repr_hides_the_secret() -> None:
    (entry,) = KeyFile().add("st", SECRET, state="primary", now=T0).entries
    assert SECRET not in repr(entry)
    assert SECRET not in repr(entry.as_key())


# -- rings and rotation ------------------------------------------------------------------------


def test_ring_order_is_primary_then_next_then_previous() -> None:
    keys = KeyFile(
        (
            KeyEntry("st", "prev-old", "previous", T0 - timedelta(days=9), T0 + timedelta(days=1)),
            KeyEntry("st", "next-old", "next", T0 + timedelta(hours=1)),
            KeyEntry("other", "other-primary", "primary", T0),
            KeyEntry("st", "primary", "primary", T0),
            KeyEntry("st", "next-new", "next", T0 + timedelta(hours=2)),
            KeyEntry("st", "prev-new", "previous", T0 - timedelta(days=1), None),
        )
    )
    assert [e.secret for e in keys.for_route("st")] == [
        "primary",
        "next-new",  # newest first within a state
        "next-old",
        "prev-new",
        "prev-old",
    ]
    ring = keys.ring("st")
    assert isinstance(ring, KeyRing)
    assert ring.primary.secret == "primary"
    assert [k.id for k in ring] == [e.id for e in keys.for_route("st")]
    assert list(keys.rings()) == ["other", "st"]
    assert [k.secret for k in keys.rings()["other"]] == ["other-primary"]
    assert len(keys.ring("nobody")) == 0


def test_previous_key_stops_verifying_after_retire_after() -> None:
    retire = T0 + timedelta(hours=24)
    keys = sample().promote("sensetime", key_id(SECRET_B)[:6], retire_after=retire)
    states = {e.secret: e.state for e in keys.for_route("sensetime")}
    assert states == {SECRET_B: "primary", SECRET_A: "previous"}
    (old,) = (e for e in keys.entries if e.secret == SECRET_A)
    assert old.retire_after == retire

    ring = keys.ring("sensetime")
    assert [k.secret for k in ring] == [SECRET_B, SECRET_A]
    before = [k.secret for k in ring.verifying_keys(retire.timestamp() - 1)]
    at = [k.secret for k in ring.verifying_keys(retire.timestamp())]
    after = [k.secret for k in ring.verifying_keys(retire.timestamp() + 1)]
    assert before == [SECRET_B, SECRET_A]
    assert at == [SECRET_B, SECRET_A]
    assert after == [SECRET_B]
    # The other route is untouched.
    assert keys.for_route("metastudio-video") == sample().for_route("metastudio-video")


def test_next_and_unretired_previous_keys_always_verify() -> None:
    keys = sample().promote("sensetime", key_id(SECRET_B), retire_after=None)
    far_future = (T0 + timedelta(days=3650)).timestamp()
    assert len(keys.ring("sensetime").verifying_keys(far_future)) == 2
    next_key = KeyEntry("st", "n", "next", T0, retire_after=T0).as_key()
    assert next_key.not_after is None  # retire_after only applies to previous keys


def test_promote_a_previous_key_back() -> None:
    keys = sample().promote("sensetime", key_id(SECRET_B), retire_after=T0)
    keys = keys.promote("sensetime", key_id(SECRET_A), retire_after=T0 + timedelta(days=1))
    entries = {e.secret: e for e in keys.for_route("sensetime")}
    assert entries[SECRET_A].state == "primary"
    assert entries[SECRET_A].retire_after is None
    assert entries[SECRET_B].state == "previous"
    assert entries[SECRET_B].retire_after == T0 + timedelta(days=1)


def test_promote_the_primary_is_refused() -> None:
    with pytest.raises(KeyFileError, match="already the primary"):
        sample().promote("sensetime", key_id(SECRET_A), retire_after=None)


def test_find_by_id_prefix() -> None:
    keys = sample()
    full_id = key_id(SECRET_B)
    assert keys.find("sensetime", full_id).secret == SECRET_B
    assert keys.find("sensetime", full_id[:4]).secret == SECRET_B
    with pytest.raises(KeyFileError, match="has no key with id") as info:
        keys.find("sensetime", "zzzz")
    assert SECRET_A not in str(info.value)
    with pytest.raises(KeyFileError, match="has no key"):
        keys.find("nobody", full_id)
    # Ids of other routes do not count.
    with pytest.raises(KeyFileError, match="has no key"):
        keys.find("sensetime", key_id(SECRET_C))


def test_ambiguous_id_prefix_is_refused() -> None:
    # Two secrets whose ids share their first two hex digits.
    seen: dict[str, str] = {}
    for n in itertools.count():
        secret = f"Key{n}"
        prefix = key_id(secret)[:2]
        if prefix in seen:
            first, second = seen[prefix], secret
            break
        seen[prefix] = secret
    keys = (
        KeyFile().add("st", first, state="primary", now=T0).add("st", second, state="next", now=T0)
    )
    with pytest.raises(KeyFileError, match="matches several keys") as info:
        keys.find("st", prefix)
    assert first not in str(info.value)
    assert second not in str(info.value)
    assert keys.find("st", key_id(second)).secret == second
    with pytest.raises(KeyFileError, match="matches several keys"):
        keys.remove("st", prefix)


def test_remove() -> None:
    keys = sample().remove("sensetime", key_id(SECRET_A)[:5])
    assert [e.secret for e in keys.for_route("sensetime")] == [SECRET_B]
    assert len(keys.entries) == 2
    with pytest.raises(KeyFileError):
        keys.remove("sensetime", key_id(SECRET_A))


def test_add_refuses_duplicates_and_second_primary() -> None:
    keys = sample()
    with pytest.raises(KeyFileError, match="already has key") as info:
        keys.add("sensetime", SECRET_B, state="previous", now=T0)
    assert SECRET_B not in str(info.value)
    assert key_id(SECRET_B) in str(info.value)
    with pytest.raises(KeyFileError, match="already has a primary key"):
        keys.add("sensetime", "Brand-new-1", state="primary", now=T0)
    # The same secret on another route, and a next key, are fine.
    keys = keys.add("metastudio-video", SECRET_A, state="next", now=T0)
    keys = keys.add("sensetime", "Brand-new-1", state="next", now=T0)
    assert len(keys.for_route("sensetime")) == 3


def test_add_refuses_a_secret_the_file_could_not_be_read_back_with(tmp_path: Path) -> None:
    too_long = "A1b" + "x" * 30
    with pytest.raises(KeyFileError, match="32") as info:
        KeyFile().add("st", too_long, state="primary", now=T0)
    assert too_long not in str(info.value)
