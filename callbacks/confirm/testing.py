"""A fake MetaStudio job-query API for tests: a real HTTP server on loopback.

It checks every request's AK/SK signature (or IAM token) and project id as the platform does,
answers each kind's documented response shape, and can be told to answer a job's state, 404,
401, 429, 500 or slowly::

    with FakeMetaStudio(ak="AK", sk="SK") as api:
        api.set_job("video", "job-1", state="SUCCEED", asset_id="asset-1")
        api.fail_next(503, times=2)                      # then it recovers
        client = MetaStudioClient(api.endpoint, api.project_id, AkSk("AK", "SK"))

Standard library only, so users can run it in their own tests without the extra.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from callbacks.confirm.kinds import QUERY_PATHS
from callbacks.confirm.signer import (
    ALGORITHM,
    DATE_FORMAT,
    canonical_request,
    string_signature,
)

_AUTHORIZATION = re.compile(
    rf"^{ALGORITHM} Access=([^,\s]+), SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{{64}})$"
)
_ERRORS = {
    400: ("MSS.00000003", "Invalid parameter"),
    401: ("MSS.00000001", "Unauthorized"),
    403: ("MSS.00000005", "Forbidden"),
    404: ("MSS.00000002", "Not Found"),
    429: ("APIGW.0308", "The request is throttled"),
    500: ("MSS.00000004", "Internal Error"),
    502: ("APIGW.0202", "Bad Gateway"),
    503: ("APIGW.0203", "Service Unavailable"),
}
_DATE_WINDOW = 15 * 60


@dataclass
class _Fault:
    status: int
    times: int
    job_id: str | None


@dataclass(frozen=True)
class FakeRequest:
    """What the fake saw, without its credentials."""

    method: str
    path: str
    auth: str  # "aksk", "token", "none", "bad"
    status: int


@dataclass
class _State:
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    faults: list[_Fault] = field(default_factory=list)
    delay: float = 0.0
    requests: list[FakeRequest] = field(default_factory=list)


class FakeMetaStudio:
    """The fake API. ``endpoint`` is ``http://127.0.0.1:PORT`` once started."""

    def __init__(
        self,
        *,
        ak: str | None = "FAKEAK",
        sk: str | None = "FAKESK",
        token: str | None = None,
        project_id: str = "0d697589d98091f12f92c0073501cd79",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.project_id = project_id
        self._ak, self._sk, self._token = ak, sk, token
        self._state = _State()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeMetaStudio:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FakeMetaStudio:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what the fake answers ------------------------------------------------------------

    def set_job(
        self,
        kind: str,
        job_id: str,
        *,
        state: str = "SUCCEED",
        asset_id: str | None = None,
        room_id: str | None = None,
        duration: float = 60.0,
        error: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Make ``job_id`` known, in ``state``, answered in ``kind``'s documented shape."""
        if kind not in QUERY_PATHS:
            raise ValueError(f"unknown kind {kind!r}")
        body = job_body(
            kind,
            job_id,
            state=state,
            asset_id=asset_id,
            room_id=room_id,
            duration=duration,
            error=error,
        )
        with self._lock:
            self._state.jobs[(kind, job_id)] = body
        return body

    def set_body(self, kind: str, job_id: str, body: Mapping[str, Any]) -> None:
        """Answer exactly ``body`` for the job (a captured response, an odd shape)."""
        with self._lock:
            self._state.jobs[(kind, job_id)] = dict(body)

    def forget(self, kind: str, job_id: str) -> None:
        with self._lock:
            self._state.jobs.pop((kind, job_id), None)

    def fail_next(self, status: int, *, times: int = 1, job_id: str | None = None) -> None:
        """Answer ``status`` (401, 429, 500, 503, ...) to the next ``times`` queries."""
        with self._lock:
            self._state.faults.append(_Fault(status, times, job_id))

    def fail_always(self, status: int, *, job_id: str | None = None) -> None:
        self.fail_next(status, times=-1, job_id=job_id)

    def recover(self) -> None:
        with self._lock:
            self._state.faults.clear()
            self._state.delay = 0.0

    def slow(self, seconds: float) -> None:
        """Wait ``seconds`` before every answer (to exercise the client's timeout)."""
        with self._lock:
            self._state.delay = seconds

    @property
    def requests(self) -> list[FakeRequest]:
        with self._lock:
            return list(self._state.requests)

    # -- the server -----------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status, body, auth = fake._answer(self)
                payload = json.dumps(body).encode()
                with fake._lock:
                    fake._state.requests.append(FakeRequest("GET", self.path, auth, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-Request-Id", f"fake-{time.monotonic_ns()}")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean; requests are in ``fake.requests``

        return Handler

    def _answer(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any], str]:
        with self._lock:
            delay = self._state.delay
        if delay:
            time.sleep(delay)
        auth = self._authenticate(request)
        if auth == "bad":
            return 401, _error_body(401), auth
        split = urlsplit(request.path)
        found = self._route(split.path)
        job_id = found[1] if found else None
        fault = self._take_fault(job_id)
        if fault is not None:
            return fault, _error_body(fault), auth
        if found is None:
            return 404, _error_body(404), auth
        with self._lock:
            body = self._state.jobs.get(found)
        if body is None:
            return 404, _error_body(404), auth
        return 200, body, auth

    def _take_fault(self, job_id: str | None) -> int | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.job_id is not None and fault.job_id != job_id:
                    continue
                if fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self._state.faults.remove(fault)
                return fault.status
        return None

    def _route(self, path: str) -> tuple[str, str] | None:
        for kind, template in QUERY_PATHS.items():
            pattern = "^" + re.escape(template).replace(r"\{project_id\}", "(?P<project>[^/]+)")
            pattern = pattern.replace(r"\{job_id\}", "(?P<job>[^/]+)")
            pattern = pattern.replace(r"\{room_id\}", "(?P<room>[^/]+)") + "$"
            match = re.match(pattern, path)
            if match and unquote(match["project"]) == self.project_id:
                return kind, unquote(match["job"])
        return None

    def _authenticate(self, request: BaseHTTPRequestHandler) -> str:
        token = request.headers.get("X-Auth-Token")
        if token is not None:
            ok = self._token is not None and hmac.compare_digest(token, self._token)
            return "token" if ok else "bad"
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return "bad"
        match = _AUTHORIZATION.match(authorization)
        if not match or self._ak is None or self._sk is None:
            return "bad"
        access, signed_names, signature = match.groups()
        if not hmac.compare_digest(access, self._ak):
            return "bad"
        if request.headers.get("X-Project-Id") != self.project_id:
            return "bad"
        date = request.headers.get("X-Sdk-Date", "")
        try:
            sent = datetime.strptime(date, DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            return "bad"
        if abs((datetime.now(UTC) - sent).total_seconds()) > _DATE_WINDOW:
            return "bad"
        names = tuple(signed_names.split(";"))
        if "host" not in names or "x-sdk-date" not in names:
            return "bad"
        headers: dict[str, str] = {}
        for name in names:
            value = request.headers.get(name)
            if value is None:
                return "bad"
            headers[name] = value
        split = urlsplit(request.path)
        query = parse_qsl(split.query, keep_blank_values=True)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        canonical = canonical_request(request.command, split.path, query, headers, names, body)
        expected = string_signature(self._sk, date, canonical)
        return "aksk" if hmac.compare_digest(expected, signature) else "bad"


def _error_body(status: int) -> dict[str, Any]:
    code, message = _ERRORS.get(status, ("MSS.00000004", "Internal Error"))
    return {"error_code": code, "error_msg": message}


def job_body(
    kind: str,
    job_id: str,
    *,
    state: str = "SUCCEED",
    asset_id: str | None = None,
    room_id: str | None = None,
    duration: float = 60.0,
    error: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """A query answer of ``kind`` in the documented shape (see ``kinds.py`` for the paths)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    expires = int(time.time()) + 24 * 3600
    error_info = {"error_code": error[0], "error_msg": error[1]} if error else None
    asset = {
        "asset_id": asset_id or f"asset-{job_id}",
        "asset_name": f"output of {job_id}",
        "cover_url": f"https://obs.example.com/{job_id}/cover.png?AccessKeyId=X&Expires={expires}&Signature=s",
        "preview_video_url": f"https://obs.example.com/{job_id}/preview.mp4",
    }
    job = {
        "job_id": job_id,
        "state": state,
        "start_time": now,
        "end_time": now,
        "duration": duration,
        "output_asset_config": asset if state in ("SUCCEED", "SUCCESS") else None,
        "error_info": error_info,
        "create_time": now,
        "lastupdate_time": now,
    }
    if kind == "video":
        return job | {"job_type": "2D_DIGITAL_HUMAN_VIDEO", "script_id": "script-1"}
    if kind == "photo_video":
        return job | {"job_type": "PHOTO_DIGITAL_HUMAN_VIDEO", "script_id": "script-1"}
    if kind == "business_card":
        return {
            "job_info": job | {"business_card_type": "2D_DIGITAL_HUMAN_CARD"},
            "gender": "FEMALE",
        }
    if kind == "subtitle":
        done = state not in ("WAITING", "PROCESSING", "GENERATING")
        file_state = "GENERATE_SUCCEED" if state in ("SUCCEED", "SUCCESS") else "GENERATE_FAILED"
        return {
            "job_state": "GENERATED" if done else "GENERATING",
            "subtitle_file_info": [
                {
                    "sequence_no": 0,
                    "subtitle_file_state": file_state if done else "GENERATING",
                    "subtitle_file_download_url": f"https://obs.example.com/{job_id}/0.srt",
                    "generate_time": now,
                    "error_info": error_info,
                }
            ],
        }
    if kind == "tts":
        ok = state in ("SUCCEED", "SUCCESS")
        return {
            "state": state,
            "code": error[0] if error else "",
            "message": error[1] if error else "",
            "audio_file_url": f"https://obs.example.com/{job_id}/audio.wav" if ok else None,
            "audio_srt_file_url": f"https://obs.example.com/{job_id}/audio.srt" if ok else None,
        }
    if kind == "live":
        return job | {
            "room_id": room_id or "room-1",
            "room_name": "fake room",
            "output_asset_config": None,
            "cover_url": f"https://obs.example.com/{job_id}/live.png",
        }
    raise ValueError(f"unknown kind {kind!r}")
