"""The ``callbacks`` command line: serve, db, and the operator commands.

Exit codes: 0 ok, 1 the operation failed, 2 usage error (click's own). Every command finds the
config the same way: ``--config``, else ``CALLBACKS_CONFIG``, else the development setup in
``./.avatar-callbacks/`` if there is one.

One module per command group; each has ``register(main)``, and the tuple below is the one place
that lists them. The modules parse options, call the code that owns the rule, and present the
result; ``_support`` holds what they share (finding the config, opening the store, failing in one
line, reading and printing moments and tables).
"""

from __future__ import annotations

import click

from callbacks.cli import (
    console,
    db,
    events,
    forward,
    jobs,
    keys,
    metastudio,
    serve,
    simulate,
    sinks,
    url,
)
from callbacks.cli._support import JsonErrorsGroup


@click.group(
    cls=JsonErrorsGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="avatar-callbacks")
def main() -> None:
    """Receive, verify and deliver SenseTime SoftSugar and Huawei MetaStudio callbacks.

    \b
    Start here:
      callbacks serve                      # development setup, no config needed
      callbacks simulate sensetime         # send it a correctly signed callback
      callbacks events list                # what arrived, and what the handlers did
    """


# ``sinks`` and ``metastudio`` add ``keys sink`` and ``keys metastudio``: after ``keys``.
# ``console`` and ``forward`` add ``events tail`` and ``events forward``: after ``events``.
for command_module in (
    serve,
    db,
    keys,
    events,
    simulate,
    url,
    sinks,
    metastudio,
    jobs,
    console,
    forward,
):
    command_module.register(main)
