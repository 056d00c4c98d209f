"""The operator console: a second listener with a JSON API under ``/api/`` and server-rendered
pages, off unless ``[admin] listen`` is set.

It never shares the callback port, so a proxy that exposes the callbacks exposes nothing else.
Importing this package is cheap; the web parts (Jinja2, the ``admin`` extra) load in
:mod:`callbacks.admin.app`.
"""
