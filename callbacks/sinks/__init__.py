"""Sinks: confirmed events handed to the systems teams already run (HTTP, NATS, RabbitMQ, Redis).

Each ``[[sinks]]`` entry of the config becomes one delivery target of the dispatcher, delivered
like a handler (isolated, retried, dead after ``max_attempts``). The pieces:

- :mod:`callbacks.sinks.base`: the :class:`~callbacks.sinks.base.Sink` protocol and its errors;
- :mod:`callbacks.sinks.envelope`: the one JSON message every sink sends (schema shipped beside);
- :mod:`callbacks.sinks.settings`: the ``[[sinks]]`` settings;
- :mod:`callbacks.sinks.factory`: the only module that names the backends;
- :mod:`callbacks.sinks.delivery`: each sink presented to the dispatcher as a named target.

This package imports nothing at import time, so the config can read its settings without
pulling in a client library.
"""
