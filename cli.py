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
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from analyze.errors import RuleError

if TYPE_CHECKING:
    from analyze.run import RunResult

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
    except Exception as exc:
        if _is_trace_error(exc):
            raise click.ClickException(str(exc)) from exc
        raise


def _is_trace_error(exc: Exception) -> bool:
    """A trace-format, import or query error (`schemas.trace.TraceError`). Checked through
    sys.modules so the CLI does not import pyarrow to start: if the module is not loaded, nothing
    could have raised one."""
    trace = sys.modules.get("schemas.trace")
    return trace is not None and isinstance(exc, trace.TraceError)


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


@capture.command("import")
@click.argument("scap", type=click.Path())
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False),
    help="The trace file to write (replaced atomically; mode 0600).",
)
@click.option(
    "--allow-truncated", is_flag=True,
    help="Keep the events read before a cut-off capture ends, instead of failing.",
)
def import_cmd(scap: str, output: str, allow_truncated: bool) -> None:
    """Convert a sysdig/Falco capture (.scap, plain or gzip) into a trace, with sysdig.

    The capture is read by `sysdig`, which rebuilds the process, fd and container state the way
    Falco does; every trace column is filled from it. Progress shows on stderr.

    \b
    Example:
        capture import falco.scap -o falco.parquet
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from capture.scap_import import ImportProgress, import_scap

    columns = (TextColumn("importing"), BarColumn(), DownloadColumn(),
               TextColumn("{task.fields[events]:,} events"), TimeElapsedColumn())
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("import", total=None, events=0)

        def report(p: ImportProgress) -> None:
            # Without a read position (sysdig's offset unknown) the bar pulses instead.
            known = p.bytes_read is not None
            progress.update(task, total=p.bytes_total if known else None,
                            completed=p.bytes_read or 0, events=p.events)

        stats = import_scap(scap, output, report, allow_truncated=allow_truncated)
    click.echo(
        f"Imported {stats.events:,} events from {stats.source} into {stats.output} in "
        f"{stats.seconds:.2f} s ({stats.events_per_second:,.0f} events/s, "
        f"{stats.bytes_per_event:.1f} bytes/event)."
    )


@capture.command("info")
@click.argument("traces", nargs=-1, required=True)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
)
def info_cmd(traces: tuple[str, ...], fmt: str) -> None:
    """Show a trace's metadata: host, events, drops, time range, files and sizes.

    TRACES is a trace file, a directory of segments or a glob; several name the segments of one
    capture. Only the Parquet footers are read, so this is instant on any size of trace.

    \b
    Example:
        capture info trace.parquet
        capture info 'capture-*.parquet' --format json
    """
    from analyze.run_render import trace_info_table
    from analyze.trace_reader import trace_info

    info = trace_info(list(traces))
    if fmt == "json":
        _print_json(info.to_dict())
    else:
        Console().print(trace_info_table(info))


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


@analyze.command("query")
@click.argument("trace")
@click.argument("sql")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
    show_default=True,
)
def query_cmd(trace: str, sql: str, fmt: str) -> None:
    """Run SQL over a trace: a DuckDB view `events` whose columns are Falco field names.

    Column names need double quotes ("proc.name"); ancestor lists are 1-based in SQL
    ("proc.aname"[2] is Falco's proc.aname[1]). The query can read only the trace's files.

    \b
    Example:
        analyze query trace.parquet 'select "proc.name", count(*) from events group by 1'
        analyze query trace.parquet 'select * from events where "evt.num" = 42' --format json
    """
    from analyze.query import format_result, run_query

    console = Console()
    width = console.width if console.is_terminal else None
    click.echo(format_result(run_query(trace, sql), fmt, width), nl=False)


# Kept in step with analyze.run.ENGINE_CHOICES (a test checks it); listed here so that `--help`
# does not import the engines.
ENGINE_CHOICES = ("auto", "sql", "replay")


def _priority_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from analyze.ruleset import PRIORITIES, parse_priority

    priority = parse_priority(value)
    if priority is None:
        raise click.BadParameter(
            f"{value!r} is not a priority; use one of {', '.join(PRIORITIES)}."
        )
    return priority


@analyze.command("run")
@click.argument("traces", nargs=-1, required=True)
@click.option(
    "-r", "--rules", "rule_paths", multiple=True, required=True, type=click.Path(),
    help="A rule file, or a directory of *.yaml files (name order). Repeatable, in order.",
)
@click.option(
    "--engine", type=click.Choice(ENGINE_CHOICES), default="auto", show_default=True,
    help="auto: the faster engine present (today the replay evaluator, then SQL).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "text", "json"]), default="table",
    show_default=True,
    help="table: a report; text: Falco's alert lines; json: one Falco JSON alert per line.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False),
    help="Write the alerts or report to this file (complete or not at all) instead of stdout.",
)
@click.option(
    "--min-priority", default="Debug", show_default=True, callback=_priority_option,
    help="Run only rules at this priority or more severe (Falco's `priority`).",
)
@click.option("-t", "--tag", "tags", multiple=True,
              help="Run only rules with this tag (repeatable: any of them), like falco -t.")
@click.option("-T", "--skip-tag", "skip_tags", multiple=True,
              help="Do not run rules with this tag (repeatable), like falco -T.")
@click.option(
    "--rule-matching", type=click.Choice(["first", "all"]), default="first", show_default=True,
    help="first: one alert per event, from the first matching rule (Falco's default); "
    "all: every matching rule.",
)
@click.option("--since", help="Only events at or after this time: ISO, epoch ns, or +30s.")
@click.option("--until", help="Only events at or before this time: ISO, epoch ns, or +5m.")
@click.option(
    "--max-alerts", type=click.IntRange(min=0), default=20, show_default=True,
    help="Alerts listed in the table report (the counts always cover them all).",
)
@click.pass_context
def run_cmd(ctx: click.Context, traces: tuple[str, ...], rule_paths: tuple[str, ...],
            engine: str, fmt: str, output: str | None, min_priority: str,
            tags: tuple[str, ...], skip_tags: tuple[str, ...], rule_matching: str,
            since: str | None, until: str | None, max_alerts: int) -> None:
    """Replay a trace through Falco rules and report the alerts, like Falco would have.

    TRACES is a trace file, a directory of segments or a glob; several name the segments of one
    capture. Times (--since/--until) are ISO (2024-01-01T03:12:00Z; UTC unless a zone is
    given), ns since the epoch, or an offset from the trace's first event (+30s, +1m30s).

    Exit status: 0 when no rule matched, 3 when there are alerts, 1 on any error (a bad rule
    file, a missing or foreign trace), 2 on a bad option. The json format is Falco's, one alert
    per line, with evt.num always in output_fields; the text format is Falco's alert line.

    \b
    Example:
        analyze run trace.parquet -r rules/
        analyze run trace.parquet -r falco_rules.yaml --min-priority warning -T mitre_discovery
        analyze run trace.parquet -r rules/ --format json -o alerts.json --since +30s
    """
    from analyze.engine_api import RunOptions
    from analyze.run import RunRequest, check_output_path, run_analysis, write_atomic

    if output is not None:
        check_output_path(output)
    options = RunOptions(min_priority=min_priority, tags=tags, skip_tags=skip_tags,
                         rule_matching="all" if rule_matching == "all" else "first")
    result = run_analysis(RunRequest(traces, rule_paths, engine, options, since, until))
    if not result.rules_run and fmt != "table":
        click.echo("Warning: no rule ran (see --format table for why each was skipped).",
                   err=True)
    if output is None:
        _print_run(result, fmt, max_alerts)
    else:
        write_atomic(output, _run_text(result, fmt, max_alerts))
        click.echo(f"Wrote {len(result.alerts):,} alert(s) to {output}.", err=True)
    ctx.exit(result.exit_code)


def _print_run(result: RunResult, fmt: str, max_alerts: int) -> None:
    from analyze.run_render import render_report

    if fmt == "table":
        Console().print(render_report(result, max_alerts=max_alerts))
    else:
        click.echo(_run_text(result, fmt, max_alerts), nl=False)


def _run_text(result: RunResult, fmt: str, max_alerts: int) -> str:
    """The run's output as a file's text: alert lines, JSON lines, or the report uncoloured."""
    from io import StringIO

    from analyze.alerts import alert_json, alert_line
    from analyze.run_render import render_report

    if fmt == "json":
        return "".join(json.dumps(alert_json(a), ensure_ascii=False, separators=(",", ":"))
                       + "\n" for a in result.alerts)
    if fmt == "text":
        return "".join(alert_line(a) + "\n" for a in result.alerts)
    out = StringIO()
    Console(file=out, width=120, color_system=None).print(
        render_report(result, max_alerts=max_alerts)
    )
    return out.getvalue()


@analyze.command("sql")
@click.option(
    "-r", "--rules", "rule_paths", multiple=True, required=True, type=click.Path(),
    help="A rule file, or a directory of *.yaml files (name order). Repeatable, in order.",
)
@click.option("--rule", "names", multiple=True,
              help="Only this rule (repeatable); by default every rule that would run.")
def sql_cmd(rule_paths: tuple[str, ...], names: tuple[str, ...]) -> None:
    """Print the DuckDB SQL the SQL engine runs for the rules, values inlined for reading.

    The output is the macros the engine defines, then one query computing every rule's match
    flag per event of the `events` view (see `analyze query`). Rules that would not run are
    listed first as SQL comments with the reason. The engine itself binds rule values as
    parameters; the inlined form is for people.

    \b
    Example:
        analyze sql -r rules/ --rule 'Sensitive File Read'
        analyze sql -r falco_rules.yaml > rules.sql
    """
    from analyze.run import rules_to_show
    from analyze.sql_engine import sql_for_rules

    rules, skipped = rules_to_show(rule_paths, names)
    notes = "".join(f"-- not run: {_sql_comment(s.rule)}: {_sql_comment(s.reason)}\n"
                    for s in skipped)
    click.echo(notes + ("\n" if notes else "") + sql_for_rules(rules), nl=False)


def _sql_comment(text: str) -> str:
    """Keep a rule name or reason on its comment line."""
    return " ".join(text.split())
