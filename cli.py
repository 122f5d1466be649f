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

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console

from analyze.errors import RuleError

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def format_rule_error(exc: RuleError) -> str:
    """`file:line (item): message (condition line L, column C)`, then the text underlined."""
    from analyze.error_render import format_error

    return format_error(exc)


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


def _print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


@analyze.command("parse")
@click.argument("condition")
@click.option(
    "--format", "fmt", type=click.Choice(["tree", "text", "json"]), default="tree",
    show_default=True, help="tree: an indented AST; text: canonical condition; json: the AST.",
)
def parse_cmd(condition: str, fmt: str) -> None:
    """Parse a Falco CONDITION and print its syntax tree.

    Macros and lists are not expanded here (see `analyze validate`); a bare identifier shows as
    a macro reference. Syntax errors name the line and column and underline the text.

    \b
    Example:
        analyze parse 'evt.type in (open, openat) and not proc.name in (cat, less)'
        analyze parse --format json 'tolower(proc.name) = bash'
    """
    from analyze.ast import to_dict, to_text
    from analyze.ast_render import render_tree
    from analyze.parser import parse_condition

    tree = parse_condition(condition)
    if fmt == "json":
        _print_json(to_dict(tree))
    elif fmt == "text":
        click.echo(to_text(tree))
    else:
        Console().print(render_tree(tree))


@analyze.command("list-fields")
@click.option("--class", "field_class", help="Only fields of this class (evt, proc, fd, ...).")
@click.option("--available/--all", default=False, help="Only fields a syscall trace can supply.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table",
    show_default=True,
)
def list_fields_cmd(field_class: str | None, available: bool, fmt: str) -> None:
    """List every field conditions can use, like `falco --list`.

    Fields a syscall trace cannot supply (k8s.* without metadata, plugin fields) are listed and
    marked unavailable: rules using them load, and `analyze validate` reports them.

    \b
    Example:
        analyze list-fields --class proc
        analyze list-fields --available --format json
    """
    from analyze.catalog_render import fields_json, fields_markdown, fields_table
    from schemas.catalog import all_fields

    fields = [
        f for f in all_fields()
        if (field_class is None or f.name.startswith(field_class.rstrip(".") + "."))
        and (f.available or not available)
    ]
    if not fields:
        raise click.ClickException(f"no field of class {field_class!r}; see `analyze list-fields`")
    if fmt == "json":
        _print_json(fields_json(fields))
    elif fmt == "markdown":
        click.echo(fields_markdown(fields))
    else:
        Console().print(fields_table(fields))


@analyze.command("validate")
@click.option(
    "-r", "--rules", "rule_paths", multiple=True, required=True, type=click.Path(),
    help="A rule file, or a directory of *.yaml files (name order). Repeatable, in order.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
)
@click.option("--summary", is_flag=True, help="Leave out the per-rule table.")
def validate_cmd(rule_paths: tuple[str, ...], fmt: str, summary: bool) -> None:
    """Load Falco rule files and report what they hold, like `falco --validate`.

    Reports files, rules, macros and lists; every warning (unused macros and lists, rules that
    match too many event types, ...); every error with file, line and column, the position inside
    the condition and the offending text underlined; each rule's fields and event types; and the
    rules whose fields a syscall trace cannot supply. Exits 1 when there is any error.

    \b
    Example:
        analyze validate -r rules/
        analyze validate -r falco_rules.yaml -r my_overrides.yaml --format json
    """
    from analyze.validate import validate
    from analyze.validate_render import render_report, report_json

    report = validate(rule_paths)
    if fmt == "json":
        _print_json(report_json(report))
    else:
        Console().print(render_report(report, show_rules=not summary))
    if not report.ok:
        sys.exit(1)
