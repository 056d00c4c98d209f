"""Confirmers: who asks the platform about an event. MetaStudio's is built in; others plug in.

A confirmer is anything with ``async confirm(event) -> Confirmation``. Routes name one of their
own with ``confirmer = "module:name"`` (SenseTime has no query API in our documents, so its
routes confirm only through such a confirmer); ``name`` is the confirmer itself, or a callable
that takes the :class:`~callbacks.config.RouteConfig` and returns one.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from callbacks.config import RouteConfig
from callbacks.confirm.details import JobDetails
from callbacks.confirm.errors import MetaStudioApiError
from callbacks.confirm.live_credentials import LiveCredentials
from callbacks.confirm.rule import Confirmation, after_error, decide, job_query
from callbacks.confirm.settings import MetaStudioApiSettings
from callbacks.errors import CallbacksError
from callbacks.events import Event


@runtime_checkable
class Confirmer(Protocol):
    async def confirm(self, event: Event) -> Confirmation: ...


class JobSource(Protocol):
    """What the MetaStudio confirmer needs of a client (``MetaStudioClient`` is one)."""

    async def job(
        self, kind: str, job_id: str, *, room_id: str | None = None
    ) -> JobDetails | None: ...


class ConfirmerLoadError(CallbacksError):
    """A route's ``confirmer`` cannot be imported or is not a confirmer."""


class MetaStudioConfirmer:
    """Asks MetaStudio's job query about each event and applies :func:`decide`."""

    def __init__(self, source: JobSource) -> None:
        self.source = source

    async def confirm(self, event: Event) -> Confirmation:
        query = job_query(event)
        if query is None:
            return decide(event, None)
        try:
            details = await self.source.job(query.kind, query.job_id, room_id=query.room_id)
        except MetaStudioApiError as exc:
            return after_error(exc)
        return decide(event, details)


def metastudio_client(
    api: MetaStudioApiSettings,
    env: Mapping[str, str] | None = None,
    key_file: Path | None = None,
) -> JobSource:
    """The API client for ``[metastudio_api]``; needs the ``metastudio`` extra (httpx).

    Its credentials follow ``key_file`` (see :class:`LiveCredentials`)."""
    try:
        from callbacks.confirm.client import MetaStudioClient, RetryPolicy
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfirmerLoadError(
            "confirming with the MetaStudio API needs: pip install 'avatar-callbacks[metastudio]'"
        ) from exc
    return MetaStudioClient(
        api.endpoint,
        api.project_id,
        LiveCredentials(api, env, key_file),
        timeout=api.timeout,
        max_concurrency=api.max_concurrency,
        retry=RetryPolicy(attempts=api.retry_attempts),
    )


def load_confirmer(path: str, route: RouteConfig) -> Confirmer:
    """Import ``module:name``: a confirmer, or a callable taking the route and returning one."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfirmerLoadError(
            f"route {route.name}: cannot import {module_name!r}: {exc}"
        ) from None
    try:
        found = getattr(module, attribute)
    except AttributeError:
        raise ConfirmerLoadError(
            f"route {route.name}: {module_name!r} has no {attribute!r}"
        ) from None
    if isinstance(found, type) or (not isinstance(found, Confirmer) and callable(found)):
        found = found(route)
    if not isinstance(found, Confirmer):
        raise ConfirmerLoadError(
            f"route {route.name}: {path} is not a confirmer (async confirm(event) -> Confirmation)"
        )
    return found
