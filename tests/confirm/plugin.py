"""A user's own confirmer, as a SenseTime route would name it (``tests.confirm.plugin:...``)."""

from __future__ import annotations

from callbacks.config import RouteConfig
from callbacks.confirm.rule import Confirmation
from callbacks.events import Event, SenseTimeCallback

KNOWN_TASKS = {"42"}


class KnownTasks:
    """Confirms SenseTime tasks this application created (here: a fixed set)."""

    def __init__(self, route: RouteConfig | None = None) -> None:
        self.route = route

    async def confirm(self, event: Event) -> Confirmation:
        if isinstance(event, SenseTimeCallback) and event.task_id in KNOWN_TASKS:
            return Confirmation.confirmed(None, "known_task")
        return Confirmation.refuted("unknown_task")


instance = KnownTasks()


def factory(route: RouteConfig) -> KnownTasks:
    return KnownTasks(route)


not_a_confirmer = 42
