"""Errors of the MetaStudio API client. None carries a credential, a signature or a token."""

from __future__ import annotations

from callbacks.errors import CallbacksError


class MetaStudioApiError(CallbacksError):
    """The root of the client's errors; ``reason`` is stable, for logs and metrics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ApiConfigurationError(MetaStudioApiError):
    """401/403, or no credentials: ours to fix (wrong AK/SK, token, project or permissions).

    Retrying does not help, and a callback must not be refuted for it either: the event waits.
    """


class ApiUnavailable(MetaStudioApiError):
    """429, 5xx, a timeout or a connection failure, still so after the retries: try later."""


class JobQueryRejected(MetaStudioApiError):
    """Another 4xx for this job (``400 Invalid parameter``): the platform refuses the job id."""

    def __init__(self, reason: str, detail: str = "", *, status: int) -> None:
        self.status = status
        super().__init__(reason, detail)
