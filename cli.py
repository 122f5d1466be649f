"""Command-line entry points `capture` and `analyze`: thin click wrappers over the library.

Each command is one function that parses options, calls the library, and prints. Errors the user
can fix (a bad rule file, a missing path, a malformed value) become one clear message on stderr
and a non-zero exit, never a traceback: both groups use `CliGroup`, whose `invoke` runs every
subcommand inside `user_errors()`. Set SYSREPLAY_DEBUG=1 to see the traceback instead.

Every command's docstring ends with an "Example:" paragraph (tests/test_cli_help.py checks it).

Adding a command: decorate a function with `@analyze.command()` (or `@capture.command()`) below.
Import library modules as `from analyze.x import y`, never `import analyze.x`: that would rebind
the name `analyze` from the click group to the package.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from analyze.errors import RuleError

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def format_rule_error(exc: RuleError) -> str:
    """`file:line (item): message (condition line L, column C)`, then the text with a caret."""
    snippet = exc.snippet()
    if not snippet:
        return str(exc)
    indented = "\n".join(f"    {line}" for line in snippet.split("\n"))
    return f"{exc}\n{indented}"


def format_os_error(exc: OSError) -> str:
    """`path: reason` rather than Python's `[Errno 2] No such file or directory: 'path'`."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn library and input errors raised inside the block into `click.ClickException`."""
    if os.environ.get("SYSREPLAY_DEBUG"):
        yield
        return
    try:
        yield
    except RuleError as exc:
        raise click.ClickException(format_rule_error(exc)) from exc
    except OSError as exc:
        raise click.ClickException(format_os_error(exc)) from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


class CliGroup(click.Group):
    """A click group whose subcommands report user errors as one message (see `user_errors`)."""

    def invoke(self, ctx: click.Context) -> Any:
        with user_errors():
            return super().invoke(ctx)


# --- capture ------------------------------------------------------------------------------------


@click.group(cls=CliGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="sysreplay", prog_name="capture")
def capture() -> None:
    """Record Linux syscalls with eBPF into a Parquet trace (needs root).

    \b
    Example:
        capture --version
    """


# --- analyze ------------------------------------------------------------------------------------


@click.group(cls=CliGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="sysreplay", prog_name="analyze")
def analyze() -> None:
    """Check Falco-compatible rules and replay syscall traces through them, offline.

    \b
    Example:
        analyze --version
    """
