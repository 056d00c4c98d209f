"""Access logs without query strings, for hosts that run the receiver inside their own app.

MetaStudio puts its signature (``secret=``) in the callback's query string, and callback-URL
tokens (``token=``, valid for days) travel there too. ``callbacks serve`` keeps uvicorn's access
log off (the receiver logs its own lines, without them), but an application that mounts the
receiver under plain ``uvicorn`` logs every request target, query included. Either turn that log
off (``uvicorn --no-access-log``, ``access_log=False``) or keep it and add this filter::

    logging.getLogger("uvicorn.access").addFilter(StripQueryString())
"""

from __future__ import annotations

import logging

_TARGET_ARG = 2  # uvicorn logs '%s - "%s %s HTTP/%s" %d': client, method, target, version, status


class StripQueryString(logging.Filter):
    """Cut the query string off the request target of uvicorn's access-log records.

    The record's arguments are changed in place, so every handler and formatter (uvicorn's own
    included) sees the path alone; the line itself is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > _TARGET_ARG:
            target = args[_TARGET_ARG]
            if isinstance(target, str) and "?" in target:
                path = target.partition("?")[0]
                record.args = (*args[:_TARGET_ARG], path, *args[_TARGET_ARG + 1 :])
        return True
