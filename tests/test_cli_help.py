"""Every command of `capture` and `analyze` has help with an example, a README entry, and reports
user errors as one message. Commands are discovered from the click groups, so a new command is
covered without touching this file."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

import cli
from analyze.errors import Position, RuleError, SourceRef

ROOT = Path(__file__).resolve().parent.parent
GROUPS: dict[str, click.Group] = {"capture": cli.capture, "analyze": cli.analyze}


def walk(path: str, command: click.Command) -> Iterator[tuple[str, click.Command]]:
    """("analyze", group), ("analyze validate", command), ... depth first, nested groups too."""
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from walk(f"{path} {name}", command.commands[name])


COMMANDS = [pair for name, group in GROUPS.items() for pair in walk(name, group)]
PATHS = [path for path, _ in COMMANDS]


def invoke(path: str, *args: str) -> Result:
    root, *sub = path.split()
    return CliRunner().invoke(GROUPS[root], [*sub, *args])


def test_console_scripts_are_the_tested_groups() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {name: f"cli:{name}" for name in GROUPS}


@pytest.mark.parametrize("path", PATHS)
def test_help_has_an_example(path: str) -> None:
    result = invoke(path, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: {path.split()[0]}" in result.output
    assert "Example" in result.output, f"`{path} --help` shows no example"


@pytest.mark.parametrize("path", PATHS)
def test_short_help_flag(path: str) -> None:
    assert invoke(path, "-h").output == invoke(path, "--help").output


@pytest.mark.parametrize("name", GROUPS)
def test_version(name: str) -> None:
    result = invoke(name, "--version")
    assert result.exit_code == 0
    assert result.output == f"{name}, version {version('sysreplay')}\n"


def readme_commands_section() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Commands\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Commands' section"
    return match.group(1)


@pytest.mark.parametrize("path", PATHS)
def test_readme_lists_command(path: str) -> None:
    assert f"`{path}" in readme_commands_section(), f"README's Commands section lacks `{path}`"


# --- errors become one message ------------------------------------------------------------------


def failing_group(exc: Exception) -> click.Group:
    @click.group(cls=cli.CliGroup)
    def group() -> None:
        """Test group."""

    @group.command()
    def fail() -> None:
        """Raise the exception under test."""
        raise exc

    return group


CONDITION = "proc.name = bash and proc.nme = sh"
RULE_ERROR = RuleError(
    "unknown field 'proc.nme'",
    source=SourceRef("rules/shell.yaml", 12, 5, "rule 'Shell spawned'"),
    text=CONDITION,
    position=Position.at(CONDITION, CONDITION.index("proc.nme")),
)


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (
            RULE_ERROR,
            "Error: rules/shell.yaml:12:5 (rule 'Shell spawned'): unknown field 'proc.nme'"
            " (condition line 1, column 22)\n"
            "    proc.name = bash and proc.nme = sh\n"
            "                         ^~~~~~~~\n",
        ),
        (RuleError("no rules loaded"), "Error: no rules loaded\n"),
        (
            FileNotFoundError(2, "No such file or directory", "trace.parquet"),
            "Error: trace.parquet: No such file or directory\n",
        ),
        (
            ValueError("--since must be a duration like 5m"),
            "Error: --since must be a duration like 5m\n",
        ),
    ],
    ids=["rule-error-with-position", "rule-error", "os-error", "value-error"],
)
def test_user_errors_are_one_message(
    exc: Exception, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYSREPLAY_DEBUG", raising=False)
    result = CliRunner().invoke(failing_group(exc), ["fail"])
    assert result.exit_code == 1
    assert result.output == message  # click prints a ClickException to stderr


def test_debug_env_shows_the_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYSREPLAY_DEBUG", "1")
    result = CliRunner().invoke(failing_group(RULE_ERROR), ["fail"])
    assert result.exception is RULE_ERROR


def test_other_exceptions_are_not_hidden() -> None:
    result = CliRunner().invoke(failing_group(KeyError("bug")), ["fail"])
    assert isinstance(result.exception, KeyError)
