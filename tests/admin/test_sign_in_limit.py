"""Through a real server: wrong tokens are counted per address and refused past the limit
(429 with Retry-After, even for the right token), and tokens in the key file change without a
restart, ending the old sessions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import httpx
import pytest
import tomli_w

from callbacks.keyfile import KeyFile, read_key_file, write_key_file
from tests.admin.console_support import ADMIN_TOKEN, Console, write_console_setup
from tests.support import ServerProcess, wait_for

pytestmark = pytest.mark.slow

FIRST_TOKEN = "key-file-console-token-first-0001"
SECOND_TOKEN = "key-file-console-token-second-0002"


def _start(root: Path, *, limit: int, key_file_token: str | None = None) -> Console:
    setup, port = write_console_setup(root)
    config = tomllib.loads(setup.config_path.read_text())
    config["admin"]["failed_sign_ins_per_minute"] = limit
    setup.config_path.write_text(tomli_w.dumps(config))
    env = {"CONSOLE_FAIL_FLAG": str(root / "fail.flag")}
    if key_file_token is None:
        env["CALLBACKS_ADMIN_TOKEN"] = ADMIN_TOKEN
    else:
        _set_key_file_token(setup.keys_path, key_file_token)
    return Console(setup, ServerProcess(setup, env=env).start(), port)


def _set_key_file_token(path: Path, token: str) -> None:
    keys = read_key_file(path)
    write_key_file(path, KeyFile(keys.entries, {**keys.sections, "admin": {"token": token}}))


def _get(console: Console, token: str) -> httpx.Response:
    return httpx.get(
        f"{console.url}/api/health", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )


def _metric(console: Console, outcome: str) -> float:
    text = httpx.get(f"{console.setup.base_url}/metrics", timeout=5).text
    pattern = rf'^avatar_callbacks_console_sign_in_failures_total\{{outcome="{outcome}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_wrong_tokens_past_the_limit_are_refused_with_retry_after(tmp_path: Path) -> None:
    console = _start(tmp_path, limit=3)
    try:
        assert _get(console, ADMIN_TOKEN).status_code == 200
        for n in range(3):
            assert _get(console, f"wrong-token-guess-{n:04}").status_code == 401
        blocked = _get(console, ADMIN_TOKEN)  # refused before the token is looked at
        assert blocked.status_code == 429
        assert blocked.json()["reason"] == "too_many_failed_sign_ins"
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
        # The sign-in form is refused too, as a page that says why.
        with httpx.Client(base_url=console.url, timeout=5) as browser:
            form = browser.get("/login")
            nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
            assert nonce is not None
            answer = browser.post("/login", data={"nonce": nonce.group(1), "token": ADMIN_TOKEN})
        assert answer.status_code == 429
        assert "Too many wrong tokens" in answer.text
        assert "retry-after" in answer.headers
        assert _metric(console, "wrong_token") == 3
        assert _metric(console, "throttled") >= 2
        log = console.server.output()
        assert "wrong-token-guess" not in log
        assert ADMIN_TOKEN not in log
    finally:
        console.stop()


def test_wrong_sign_ins_in_the_form_count_too(tmp_path: Path) -> None:
    console = _start(tmp_path, limit=2)
    try:
        with httpx.Client(base_url=console.url, timeout=5) as browser:
            statuses = []
            for n in range(3):
                nonce = re.search(r'name="nonce" value="([^"]+)"', browser.get("/login").text)
                assert nonce is not None
                answer = browser.post(
                    "/login", data={"nonce": nonce.group(1), "token": f"guess-number-{n:06}"}
                )
                statuses.append(answer.status_code)
        assert statuses == [401, 401, 429]
        assert _get(console, ADMIN_TOKEN).status_code == 429
    finally:
        console.stop()


def test_a_token_changed_in_the_key_file_takes_effect_without_a_restart(tmp_path: Path) -> None:
    console = _start(tmp_path, limit=1000, key_file_token=FIRST_TOKEN)
    try:
        assert _get(console, FIRST_TOKEN).status_code == 200
        with httpx.Client(base_url=console.url, timeout=5) as browser:
            nonce = re.search(r'name="nonce" value="([^"]+)"', browser.get("/login").text)
            assert nonce is not None
            signed_in = browser.post("/login", data={"nonce": nonce.group(1), "token": FIRST_TOKEN})
            assert signed_in.status_code in (200, 303)
            assert browser.get("/api/health").status_code == 200  # the session works

            _set_key_file_token(console.setup.keys_path, SECOND_TOKEN)
            assert wait_for(lambda: _get(console, SECOND_TOKEN).status_code == 200)
            assert _get(console, FIRST_TOKEN).status_code == 401
            assert browser.get("/api/health").status_code == 401  # its session ended with it

        # A broken [admin] table keeps the last good token, and says so without it.
        _set_key_file_token(console.setup.keys_path, "short")

        # (The file is looked at on each request: the reload needs one.)
        def refused_reload_logged() -> bool:
            assert _get(console, SECOND_TOKEN).status_code == 200
            return "console_tokens_reload_failed" in console.server.output()

        assert wait_for(refused_reload_logged)
        log = console.server.output()
        for token in (FIRST_TOKEN, SECOND_TOKEN, 'short"'):
            assert token not in log
    finally:
        console.stop()
