"""`--help` of every command: examples in click's ``\\b`` blocks print one per line, as written."""

from __future__ import annotations

import click
from click.testing import CliRunner

from launcher import cli
from tests.golden import assert_golden


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(cli.main, [*args, "--help"], terminal_width=80, prog_name="modelserve")
    assert result.exit_code == 0, result.output
    return result.output


def _commands() -> list[list[str]]:
    """The path of every command and subcommand: ``[]`` (the group), ``["up"]``, ``["env", "create"]``."""
    found: list[list[str]] = [[]]
    ctx = click.Context(cli.main)
    for name in cli.main.list_commands(ctx):
        command = cli.main.get_command(ctx, name)
        assert command is not None
        found.append([name])
        if isinstance(command, click.Group):
            found += [[name, sub] for sub in command.list_commands(ctx)]
    return found


def _command(path: list[str]) -> click.Command:
    command: click.Command = cli.main
    ctx = click.Context(cli.main)
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(ctx, name)
        assert found is not None
        command = found
    return command


def _example_blocks(doc: str) -> list[list[str]]:
    """The lines of each ``\\b`` paragraph of a docstring (click prints those unwrapped)."""
    blocks = []
    for paragraph in doc.split("\n\n"):
        lines = [line.strip() for line in paragraph.strip().splitlines()]
        if lines and lines[0] == "\b":
            blocks.append([line for line in lines[1:] if line])
    return blocks


def test_the_top_level_help_golden() -> None:
    assert_golden("cli/help.txt", _help([]))


def test_every_help_prints_its_examples_one_per_line() -> None:
    checked = 0
    for path in _commands():
        text = _help(path)
        shown = [line.strip() for line in text.splitlines()]
        assert "\\b" not in text and "\b" not in text, f"modelserve {' '.join(path)} --help shows a \\b"
        for block in _example_blocks(_command(path).help or ""):
            for line in block:
                assert line in shown, f"modelserve {' '.join(path)} --help runs {line!r} into another line"
                checked += 1
    assert checked >= 20  # the group, up, down, health, env, run, systemd, config, ray, k8s have examples
