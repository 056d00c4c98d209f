"""Which MetaStudio API answers for each kind of job: the query the official SDK calls.

Every callback kind has a query in the SDK's ``MetaStudioAsyncClient``:

- ``video``: ``show2_d_digital_human_video_async``, ``2d-digital-human-videos/{job_id}``
- ``photo_video``: ``show_photo_digital_human_video_async``, ``photo-digital-human-videos/{job_id}``
- ``business_card``: ``show_digital_human_business_card_async``,
  ``digital-human-business-cards/{job_id}``
- ``subtitle``: ``show_subtitle_file_async``, ``subtitle-files/{job_id}``
- ``tts``: ``show_async_tts_job_async``, ``ttsc/async-jobs/{job_id}``
- ``live``: ``show_smart_live_async``, ``smart-live-rooms/{room_id}/smart-live-jobs/{job_id}``

(all under ``/v1/{project_id}/``).

What has no query: the *content* of a live event (a script switch, a stream's state, a finished
reply). The live-job query tells that the job exists in that room and its state, nothing more.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

QUERY_PATHS: Final[dict[str, str]] = {
    "video": "/v1/{project_id}/2d-digital-human-videos/{job_id}",
    "photo_video": "/v1/{project_id}/photo-digital-human-videos/{job_id}",
    "business_card": "/v1/{project_id}/digital-human-business-cards/{job_id}",
    "subtitle": "/v1/{project_id}/subtitle-files/{job_id}",
    "tts": "/v1/{project_id}/ttsc/async-jobs/{job_id}",
    "live": "/v1/{project_id}/smart-live-rooms/{room_id}/smart-live-jobs/{job_id}",
}
KINDS: Final[tuple[str, ...]] = tuple(QUERY_PATHS)


def query_path(kind: str, project_id: str, job_id: str, room_id: str | None = None) -> str:
    """The path that answers for one job. Ids are percent-encoded: they come from callbacks."""
    try:
        template = QUERY_PATHS[kind]
    except KeyError:
        raise ValueError(f"no MetaStudio query for kind {kind!r}") from None
    if kind == "live" and not room_id:
        raise ValueError("a live job is queried within its room: room_id is required")
    return template.format(
        project_id=_segment(project_id), job_id=_segment(job_id), room_id=_segment(room_id or "")
    )


def _segment(text: str) -> str:
    return quote(text, safe="")
