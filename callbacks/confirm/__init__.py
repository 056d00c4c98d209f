"""Confirmation: the platform's API, not the callback's body, is the source of truth.

Neither platform's signature covers the body, so a captured signature carries any body for the
rest of its window. This package asks MetaStudio about the job before an event is delivered:

- :mod:`callbacks.confirm.client` — the async MetaStudio job-query client (the ``metastudio``
  extra: ``pip install avatar-callbacks[metastudio]``); imported only where it is used;
- :mod:`callbacks.confirm.details` — :class:`JobDetails`, the platform's answer, typed;
- :mod:`callbacks.confirm.testing` — :class:`FakeMetaStudio`, a fake API for tests.

Importing this package does not import the client's dependencies.
"""

from __future__ import annotations

from callbacks.confirm.credentials import AkSk, IamToken
from callbacks.confirm.details import JobDetails, JobError, Link, OutputAsset, parse_job_details
from callbacks.confirm.errors import (
    ApiConfigurationError,
    ApiUnavailable,
    JobQueryRejected,
    MetaStudioApiError,
)

__all__ = [
    "AkSk",
    "ApiConfigurationError",
    "ApiUnavailable",
    "IamToken",
    "JobDetails",
    "JobError",
    "JobQueryRejected",
    "Link",
    "MetaStudioApiError",
    "OutputAsset",
    "parse_job_details",
]
