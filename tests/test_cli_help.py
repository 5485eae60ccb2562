"""`--help` shows boolean options as flags (`--resume`, `--header / --no-header`), never `--resume <bool>`.

typer 0.29's rich help panel prints the value type of every option, flags included (`--quiet <bool>`,
`--help <bool>`); its plain help, which the app uses, leaves flags bare."""

from __future__ import annotations

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from textcls.cli import app

COMMANDS = sorted(get_command(app).commands)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_flags_without_a_value_type(command):
    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "BOOLEAN" not in result.output
    assert "--help " in result.output


def test_the_flags_read_as_flags():
    out = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "100"}).output
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip().startswith("-")}
    assert lines["--resume"].split()[:2] == ["--resume", "Continue"]
    assert lines["-q,"].split()[:3] == ["-q,", "--quiet", "No"]
    assert "--output <path>" in out  # options with a value still say what kind
    assert "--header / --no-header" in CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "100"}).output
    flags = [p for c in get_command(app).commands.values() for p in c.params if getattr(p, "is_flag", False)]
    assert len(flags) >= 5  # the commands do have flags for the checks above to mean something
