"""The confirmation gate: the one place the dispatcher asks before delivering an event.

For each event of a route whose ``confirm`` is not ``off``, the route's confirmer is asked (with
a deadline, so a slow API cannot stall a dispatch round); the rule's ``verdict`` says deliver
(with the platform's job details on ``event.job_details``), refute, or wait.
A confirmer that raises or overruns means "wait": an event is never refuted or delivered on a
confirmer's failure. Refutations are logged and counted; 401/403 from the API are counted per
route and reported by ``/readyz`` (:meth:`ConfirmationGate.cannot_confirm`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from prometheus_client import Counter

from callbacks.config import Config
from callbacks.confirm.confirmer import (
    Confirmer,
    ConfirmerLoadError,
    JobSource,
    MetaStudioConfirmer,
    load_confirmer,
    metastudio_client,
)
from callbacks.confirm.reconciler import Intake, Reconciler
from callbacks.confirm.rule import Confirmation, Verdict, verdict
from callbacks.confirm.settings import ConfirmationSettings, load_credentials
from callbacks.events import Event

log = structlog.get_logger("avatar_callbacks.confirm")

CONFIRMATIONS = Counter(
    "avatar_callbacks_confirmations_total",
    "Events asked about at the platform, by route, outcome and reason.",
    ["route", "outcome", "reason"],
)
CONFIRM_CONFIG_ERRORS = Counter(
    "avatar_callbacks_confirm_config_errors_total",
    "Confirmations the platform refused to answer (401/403, credentials): ours to fix.",
    ["route"],
)
_MISCONFIGURED = "api_misconfigured"


class ConfirmationGate:
    def __init__(
        self,
        settings: ConfirmationSettings,
        confirmers: Mapping[str, Confirmer],
        *,
        timeout: float = 30.0,
        resources: Iterable[Any] = (),
        metastudio: JobSource | None = None,
    ) -> None:
        self.settings = settings
        self.metastudio = metastudio  # the API client, shared with the reconciler
        self.confirmers = dict(confirmers)
        self.timeout = timeout
        self._resources = list(resources)  # clients to close with the gate
        self._misconfigured: set[str] = set()

    def applies(self, route: str) -> bool:
        return route in self.confirmers

    async def screen(self, event: Event) -> Verdict:
        """Deliver, refute or wait: what to do with ``event`` now."""
        confirmer = self.confirmers.get(event.route)
        mode = self.settings.for_route(event.route).mode
        if confirmer is None or mode == "off":
            return verdict("off", None)
        confirmation = await self._ask(confirmer, event)
        CONFIRMATIONS.labels(event.route, confirmation.outcome, confirmation.reason).inc()
        if confirmation.reason == _MISCONFIGURED:
            CONFIRM_CONFIG_ERRORS.labels(event.route).inc()
            if event.route not in self._misconfigured:
                log.error("confirm_misconfigured", route=event.route)
            self._misconfigured.add(event.route)
        elif confirmation.outcome != "retry_later":
            self._misconfigured.discard(event.route)
        result = verdict(mode, confirmation)
        if result.action == "refute":
            log.warning(
                "event_refuted",
                delivery_id=event.delivery_id,
                route=event.route,
                event_type=event.event_type,
                reason=result.reason,
            )
        return result

    async def _ask(self, confirmer: Confirmer, event: Event) -> Confirmation:
        try:
            return await asyncio.wait_for(confirmer.confirm(event), self.timeout)
        except TimeoutError:
            return Confirmation.retry_later("confirm_timeout")
        except Exception as exc:  # a user's confirmer failing must not lose or pass the event
            log.warning(
                "confirmer_failed",
                route=event.route,
                delivery_id=event.delivery_id,
                error_type=type(exc).__name__,
            )
            return Confirmation.retry_later("confirmer_failed")

    def cannot_confirm(self) -> list[str]:
        """Routes whose last confirmation the API refused for our credentials (for /readyz)."""
        return sorted(self._misconfigured)

    async def aclose(self) -> None:
        for resource in self._resources:
            close = getattr(resource, "aclose", None)
            if close is not None:
                await close()


def build_reconciler(
    config: Config, gate: ConfirmationGate | None, intake: Intake
) -> Reconciler | None:
    """The reconciler for ``config``: when the MetaStudio API is there to poll."""
    if gate is None or gate.metastudio is None:
        return None
    from callbacks.confirm.expected import open_expected_jobs

    jobs = open_expected_jobs(config.store.url, base_dir=config.base_dir)
    routes = {r.name: r for r in config.routes}
    dispatch = config.dispatch
    return Reconciler(
        jobs,
        gate.metastudio,
        intake,
        routes,
        poll_interval=dispatch.poll_interval,
        backoff_initial=min(
            (config.confirmation.for_route(r).reconcile_after for r in routes), default=5.0
        ),
        lease_seconds=dispatch.lease_seconds,
    )


def build_gate(config: Config, env: Mapping[str, str] | None = None) -> ConfirmationGate | None:
    """The gate for ``config``, or ``None`` when no route confirms. Says once per MetaStudio
    route that does not confirm that its bodies are unauthenticated."""
    settings = config.confirmation
    confirmers: dict[str, Confirmer] = {}
    resources: list[Any] = []
    shared: MetaStudioConfirmer | None = None
    client: JobSource | None = None
    for route in config.routes:
        chosen = settings.for_route(route.name)
        if not chosen.enabled:
            if route.provider == "metastudio":
                log.warning(
                    "route_bodies_unauthenticated",
                    route=route.name,
                    hint="the signature does not cover the body; set [metastudio_api] to confirm",
                )
            continue
        if chosen.confirmer is not None:
            confirmers[route.name] = load_confirmer(chosen.confirmer, route)
            continue
        if shared is None:
            assert settings.api is not None  # the settings refuse confirm without [metastudio_api]
            client = metastudio_client(settings.api, env, config.keys.file)
            resources.append(client)
            shared = MetaStudioConfirmer(client)
        confirmers[route.name] = shared
    if not confirmers:
        return None
    timeout = settings.api.timeout * 3 if settings.api is not None else 30.0
    return ConfirmationGate(
        settings, confirmers, timeout=timeout, resources=resources, metastudio=client
    )


def check_confirmation(config: Config, env: Mapping[str, str] | None = None) -> None:
    """At start, before serving: the confirmers load, the client's extra is installed and its
    credentials are there. Raises a :class:`~callbacks.errors.CallbacksError` saying what to do."""
    settings = config.confirmation
    needs_api = False
    for route in config.routes:
        chosen = settings.for_route(route.name)
        if chosen.enabled and chosen.confirmer is not None:
            load_confirmer(chosen.confirmer, route)
        elif chosen.enabled:
            needs_api = True
    if needs_api and settings.api is not None:
        load_credentials(settings.api, env, config.keys.file)
        try:
            import httpx  # noqa: F401
        except ImportError:  # pragma: no cover - depends on the install
            raise ConfirmerLoadError(
                "confirming with the MetaStudio API needs: "
                "pip install 'avatar-callbacks[metastudio]'"
            ) from None
