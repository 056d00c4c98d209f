"""Every `callbacks` command, found by walking the command tree, has `--help` with an example."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from callbacks.cli import main


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += leaf_commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


COMMANDS = leaf_commands(main)


def test_the_walk_finds_the_commands() -> None:
    assert {("serve",), ("dispatch",), ("events", "list"), ("keys", "sink", "add")} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`callbacks {' '.join(command)} --help` has no example"
