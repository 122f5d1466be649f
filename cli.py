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
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape

from analyze.errors import RuleError

if TYPE_CHECKING:
    from analyze.run import RunResult
    from capture.record import RecordOptions, RecordProgress, RecordStats

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
    """Record Linux syscalls with eBPF into a Parquet trace (needs root), import captures.

    \b
    Example:
        capture doctor
        capture record -o trace.parquet --duration 1m
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
    """Show a trace's metadata: host, events, drops, time range, files, sizes and row order.

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


# --- capture record, doctor, recover ------------------------------------------------------------

# Kept in step with capture.bpf_render.PRESETS (a test checks it); listed here so that `--help`
# does not import the capture modules.
PRESET_CHOICES = ("default", "exec", "all")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


class Duration(click.ParamType):
    """Seconds: `30s`, `10m`, `1h30m`, `250ms`, or a plain number of seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        parts = list(_DURATION_PART.finditer(text))
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif parts and "".join(p.group(0) for p in parts) == text:
            seconds = sum(float(p.group(1)) * _SECONDS[p.group(2)] for p in parts)
        else:
            self.fail(f"{value!r} is not a duration; write e.g. 30s, 10m, 1h30m or 45.", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r}: the duration must be more than zero.", param, ctx)
        return seconds


class ByteSize(click.ParamType):
    """Bytes: `256MB`, `1.5G`, `512KiB`, or a plain number; K, M, G, T are powers of 1024."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        m = _SIZE.fullmatch(str(value).strip())
        if m is None:
            self.fail(f"{value!r} is not a size; write e.g. 256MB, 1G or 1048576.", param, ctx)
        size = int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " "))
        if size <= 0:
            self.fail(f"{value!r}: the size must be more than zero.", param, ctx)
        return size


def _comma_list(ctx: click.Context, param: click.Parameter, value: str | None
                ) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise click.BadParameter("name at least one syscall, e.g. --syscalls execve,openat.")
    return names


@capture.command("record")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="The trace file to write; with rotation, a directory of segments.")
@click.option("--duration", type=Duration(),
              help="Stop after this long (30s, 10m, 1h, or seconds). Default: until Ctrl-C or "
              "SIGTERM.")
@click.option("--preset", type=click.Choice(PRESET_CHOICES),
              help="The syscalls to record: default (what the rules need), exec (processes "
              "only) or all. [default: default]")
@click.option("--syscalls", callback=_comma_list,
              help="Record exactly these syscalls instead of a preset (comma-separated).")
@click.option("--rules", "rule_files", multiple=True, type=click.Path(exists=True),
              help="Record only the syscalls these rule files can match, instead of a preset "
              "(repeatable); those that keep the process and fd tables right are recorded "
              "too, but not written as rows.")
@click.option("--pid", "pids", type=click.IntRange(min=1), multiple=True,
              help="Only this process (repeatable).")
@click.option("--follow", "follow_pids", type=click.IntRange(min=1), multiple=True,
              help="Only this process and its descendants, forked after the start too "
              "(repeatable); filtered in the kernel.")
@click.option("--comm", "comms", multiple=True,
              help="Only processes with this command name (repeatable; 15 characters kept).")
@click.option("--exclude-comm", "exclude_comms", multiple=True,
              help="Not processes with this command name (repeatable); filtered in the kernel.")
@click.option("--container", "containers", multiple=True,
              help="Only processes in this container: its id (12 or 64 hex digits), its name "
              "(needs a runtime socket), or host (repeatable); filtered in the kernel by "
              "cgroup-v2 id where the machine allows, then in user space (names of containers "
              "started later: user space only).")
@click.option("--runtime-socket", "runtime_sockets", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="A container runtime socket to ask for container names and images "
              "(repeatable): Docker Engine API (Docker, podman) or CRI (containerd, CRI-O), "
              "each container asked in its runtime's API. Default: $DOCKER_HOST and "
              "$CONTAINER_RUNTIME_ENDPOINT (unix://), /var/run/docker.sock, "
              "/run/podman/podman.sock, /run/containerd/containerd.sock, /run/crio/crio.sock, "
              "/run/k3s/containerd/containerd.sock, those that exist.")
@click.option("--rotate-size", "rotate_bytes", type=ByteSize(),
              help="Start a new segment at this size (256MB, 1G); OUTPUT becomes a directory.")
@click.option("--rotate-seconds", type=Duration(),
              help="Start a new segment after this long (600, 10m); OUTPUT becomes a directory.")
@click.option("--buffer-size", "buffer_bytes", type=ByteSize(), default="32MB",
              show_default=True,
              help="The kernel's ring buffer (a power of two, 1MB to 1GB): what a burst of "
              "events faster than the capture can take may fill before events are dropped.")
@click.option("--print-bpf", is_flag=True,
              help="Print the BPF C program these options load, and exit (no root needed).")
def record_cmd(output: str, duration: float | None, preset: str | None,
               syscalls: tuple[str, ...] | None, rule_files: tuple[str, ...],
               pids: tuple[int, ...],
               follow_pids: tuple[int, ...], comms: tuple[str, ...],
               exclude_comms: tuple[str, ...], containers: tuple[str, ...],
               runtime_sockets: tuple[str, ...], rotate_bytes: int | None,
               rotate_seconds: float | None, buffer_bytes: int, print_bpf: bool) -> None:
    """Record syscalls with eBPF into a trace, until --duration, Ctrl-C or SIGTERM (needs root).

    Every way of stopping leaves a complete trace. Until the end, events go to a spool next to
    OUTPUT (OUTPUT.spool), synced every second: after a crash or `kill -9`, `capture recover`
    turns it into a trace. Filters (--pid, --follow, --comm, --exclude-comm) run in the kernel;
    --comm and --exclude-comm look at the command name a syscall starts with: the execve that
    starts an excluded program is still recorded. --container runs in the kernel by the task's
    cgroup-v2 id (the selected containers' cgroups, nested ones included; a cgroup made during
    the capture is judged from its path before a process can enter it, so a container started
    later is recorded from its first exec), then again in user space, which has the final word.
    The exec, chdir and set*id calls of every process still reach user space: a container's
    first process descends from its runtime, outside it. A container name can only be matched
    in user space: a container started later reaches it until the runtime has named it. With
    no cgroup v2 hierarchy or cgroup tracepoints, or on a v1+v2 machine where a selected
    container has no v2 cgroup, --container runs in user space only; stderr and the trace's
    options (container_selection) say where it ran. Container names and images come from the
    runtime's API: the Docker Engine API for Docker and podman, the CRI (gRPC) for containerd
    and CRI-O. Progress shows on stderr; the last line sums up events, drops and bytes/event.

    \b
    Example:
        capture record -o trace.parquet --duration 10m
        capture record -o traces/ --rotate-size 256MB --exclude-comm sshd
        capture record -o nginx.parquet --comm nginx --preset all --duration 30s
        capture record -o build.parquet --follow 4242 --duration 5m
        capture record -o web.parquet --container web --runtime-socket /run/podman/podman.sock
        capture record -o pod.parquet --runtime-socket /run/k3s/containerd/containerd.sock
        capture record -o t.parquet --rules rules/sysreplay_rules.yaml --duration 1h
        capture record -o backup.parquet --comm tar --buffer-size 256MB
    """
    from capture.record import RecordOptions, container_plan, program_text

    if preset is not None and syscalls is not None:
        raise click.UsageError("Give --preset or --syscalls, not both.")
    if not 1 << 20 <= buffer_bytes <= 1 << 30 or buffer_bytes & (buffer_bytes - 1):
        raise click.BadParameter("the ring buffer is a power of two from 1MB to 1GB, e.g. "
                                 "64MB or 256MB.", param_hint="--buffer-size")
    if rule_files and (preset is not None or syscalls is not None):
        raise click.UsageError("--rules chooses the syscalls: give it without --preset and "
                               "--syscalls.")
    options = RecordOptions(
        duration=duration, preset=preset or "default", syscalls=syscalls, rules=rule_files,
        pids=pids,
        follow_pids=follow_pids, comms=comms, exclude_comms=exclude_comms,
        rotate_bytes=rotate_bytes, rotate_seconds=rotate_seconds, containers=containers,
        runtime_sockets=runtime_sockets, ringbuf_bytes=buffer_bytes,
    )
    text = program_text(options)  # checks the options before anything needs root
    if print_bpf:
        click.echo(text, nl=False)
        return
    if rule_files:
        click.echo(_rule_syscalls_line(options), err=True)
    elif options.recorded().state:
        recorded = options.recorded()
        click.echo(f"Rows of {', '.join(recorded.rows)}; for the process and fd tables only: "
                   f"{', '.join(recorded.state)}.", err=True)
    if (plan := container_plan(options)) is not None:
        click.echo(f"--container: filtered {plan.where}.", err=True)
    if not options.rotating and os.path.isdir(output):
        raise click.UsageError(f"{output} is a directory: name a file, or rotate (--rotate-size, "
                               "--rotate-seconds) to write segments into it.")
    _refuse_unless_capture_can_run()
    stats = _record_with_progress(options, output)
    click.echo(_record_summary(stats))
    if stats.dropped:
        counts = ", ".join(f"{k} {v:,}" for k, v in stats.drops.items() if v)
        advice = (" The ring buffer filled: record fewer syscalls (--preset exec) or processes "
                  "(--comm, --exclude-comm), or give bursts a larger buffer (--buffer-size "
                  f"{min(buffer_bytes * 4, 1 << 30) >> 20}MB)."
                  if stats.drops.get("ringbuf_full") else "")
        click.echo(f"Warning: {stats.dropped:,} events were dropped ({counts}).{advice}",
                   err=True)


def _rule_syscalls_line(options: RecordOptions) -> str:
    found = options.rule_syscalls()
    assert found is not None
    line = (f"{found.rules} rules: rows of {', '.join(found.rows) or 'no syscall'}; for the "
            f"process and fd tables only: {', '.join(found.state)}.")
    if found.not_capturable:
        line += f" Not captured: {', '.join(found.not_capturable)}."
    return line


def _refuse_unless_capture_can_run() -> None:
    """The doctor's checks (all but the test compile); any failure stops with its fix."""
    from capture.doctor import FAILED, run_checks

    failed = [c for c in run_checks(compile_program=False).checks if c.status == FAILED]
    if failed:
        lines = [f"  {c.name}: {c.detail}\n    fix: {c.fix}" for c in failed]
        raise click.ClickException(
            "capture cannot run on this machine:\n" + "\n".join(lines)
            + "\nRun `capture doctor` for every check."
        )


def _record_with_progress(options: RecordOptions, output: str) -> RecordStats:
    """`record()`, with a live status line on stderr when it is a terminal."""
    from rich.live import Live

    from capture.record import record

    console = Console(stderr=True)
    if not console.is_terminal:
        return record(options, output)
    with Live(f"starting the capture into {escape(output)} (Ctrl-C stops it)...",
              console=console, transient=True) as live:

        def show(p: RecordProgress) -> None:
            live.update(_progress_line(p, options.duration))

        return record(options, output, show)


def _progress_line(p: RecordProgress, duration: float | None) -> str:
    """One line that fits 80 columns: elapsed (remaining), events, rate, drops, bytes; the
    segments still to convert, once the capture has ended."""
    written = f"{p.dropped:,} dropped  {_megabytes(p.bytes_written)} written"
    if not p.capturing:
        plural = "s" if p.converting != 1 else ""
        return f"converting {p.converting} segment{plural}  {p.events:,} events  {written}"
    clock = _clock(p.elapsed)
    if duration is not None:
        clock += f" ({_clock(max(duration - p.elapsed, 0))} left)"
    converting = f", {p.converting} converting" if p.converting else ""
    return (f"recording {clock}  {p.events:,} events  {p.events_per_second:,.0f}/s  "
            f"{written}{converting}")


def _record_summary(stats: RecordStats) -> str:
    where = (str(stats.outputs[0]) if len(stats.outputs) == 1
             else f"{len(stats.outputs)} segments in {stats.outputs[0].parent}")
    ended = {"duration": "", "signal": ", stopped by a signal", "stop": ""}[stats.stopped_by]
    return (f"Recorded {stats.events:,} events ({stats.dropped:,} dropped) in "
            f"{stats.seconds:.1f} s{ended}: {stats.bytes_per_event:.1f} bytes/event, "
            f"{_megabytes(stats.output_bytes)} in {where}.")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


@capture.command("doctor")
@click.option("--fix", is_flag=True, help="Mount tracefs when it is missing (needs root).")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
)
def doctor_cmd(fix: bool, fmt: str) -> None:
    """Check that this machine can capture, and say exactly what to do where it cannot.

    Checks the architecture, root, the bpf() syscall, BPF ring buffers, tracefs and the
    tracepoints, BCC, the kernel headers, and compiles and loads a small program. Each failure
    comes with its fix; a check whose prerequisite failed is skipped. Exit status 1 when
    capture cannot run.

    \b
    Example:
        capture doctor
        capture doctor --fix --format json
    """
    from capture.doctor import render_report, run_checks

    report = run_checks(mount_tracefs=fix)
    if fmt == "json":
        _print_json(report.to_dict())
    else:
        click.echo(render_report(report))
    if not report.ok:
        sys.exit(1)


@capture.command("recover")
@click.argument("spool", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="The trace to write. Default: SPOOL without its .spool suffix.")
def recover_cmd(spool: str, output: str | None) -> None:
    """Turn the spool of a capture that was killed (OUT.spool) into a trace.

    The spool holds every event up to the last sync (one second before the end, at most); the
    trace's drop count is unknown, since the kernel's counters ended with the capture. The spool
    is removed once the trace is written.

    \b
    Example:
        capture recover trace.parquet.spool
        capture recover traces/segment-00003.parquet.spool -o last.parquet
    """
    from capture.record import SPOOL_SUFFIX, recover_spool

    meta = recover_spool(spool, output)
    target = output or spool.removesuffix(SPOOL_SUFFIX)
    click.echo(f"Recovered {meta.events:,} events into {target} (drops unknown).")


@capture.command("scenario")
@click.argument("names", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Record every scenario.")
@click.option("--list", "list_only", is_flag=True,
              help="Describe the scenarios and the rules each must fire, and exit.")
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="The directory to write NAME.parquet into (created if missing).")
def scenario_cmd(names: tuple[str, ...], run_all: bool, list_only: bool,
                 output: str | None) -> None:
    """Perform attack behaviours for real, safely, and record each into a trace (needs root).

    Each scenario (reading /etc/shadow, a shell in a container, a netcat reverse shell to a
    loopback listener, fileless exec from a memfd, ...) runs in a process of its own, and the
    capture follows only that process tree; containers are made from cgroups and namespaces,
    with no container engine. Scratch files are removed and traffic stays on loopback or in a
    network namespace of its own. `analyze run DIR/NAME.parquet -r rules/` then shows the alerts.

    \b
    Example:
        capture scenario --list
        capture scenario --all -o scenarios/
        capture scenario read-sensitive-file shell-in-container -o /tmp/sc
    """
    from capture.scenario_render import results_table, scenarios_table
    from capture.scenarios import select

    if names and run_all:
        raise click.UsageError("Name scenarios or give --all, not both.")
    scenarios = select(names)  # an unknown name is an error, even with --list
    if list_only:
        Console().print(scenarios_table(scenarios))
        return
    if not names and not run_all:
        raise click.UsageError("Name the scenarios to record, or give --all (--list shows them).")
    if output is None:
        raise click.UsageError("Give the output directory: -o DIR.")
    _refuse_unless_capture_can_run()
    from capture.scenario_runner import run_scenarios

    results = run_scenarios(scenarios, output)
    Console().print(results_table(results))
    failed = [r.scenario.name for r in results if not r.ok]
    if failed:
        raise click.ClickException(f"{len(failed)} scenario(s) failed: {', '.join(failed)} "
                                   "(their traces are still written).")


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
    Without ORDER BY, rows come in storage order, which is not event order (traces cluster the
    rows of each row group by event type): add order by "evt.num" for that.

    \b
    Example:
        analyze query trace.parquet 'select "proc.name", count(*) from events group by 1'
        analyze query trace.parquet 'select * from events where "evt.num" = 42' --format json
        analyze query trace.parquet 'select "evt.num", "evt.type" from events order by 1 limit 5'
    """
    from analyze.query import format_result, run_query

    console = Console()
    width = console.width if console.is_terminal else None
    click.echo(format_result(run_query(trace, sql), fmt, width), nl=False)


def _report_console() -> Console:
    """The terminal's width, or 160 columns into a file or pipe (rich would use 80)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


@analyze.command("info")
@click.argument("traces", nargs=-1, required=True)
@click.option("--gap", type=Duration(), default="5s", show_default=True,
              help="Report every stretch longer than this with no event at all (a paused or "
              "cut capture).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Event types and processes listed.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
)
def triage_info_cmd(traces: tuple[str, ...], gap: float, top: int, fmt: str) -> None:
    """Sum up what a trace holds, read from its events, and flag gaps (loss or tampering).

    Shows the time span, host, kernel, source, drops, events by type, the busiest processes,
    containers, users, and gaps: missing evt.num ranges, evt.num going back (spliced files), and
    silences longer than --gap. A live capture numbers every event it keeps, so a missing
    number means rows were removed; an imported capture has small gaps by nature. Segments of a
    multi-file trace are listed with their own spans.

    \b
    Example:
        analyze info trace.parquet
        analyze info traces/ --gap 2s --format json
    """
    from analyze.triage_info import summarize_trace
    from analyze.triage_render import info_json, info_report

    summary = summarize_trace(list(traces), gap_ns=round(gap * 1e9), top=top)
    if fmt == "json":
        _print_json(info_json(summary))
    else:
        _report_console().print(info_report(summary))


def _comma_values(ctx: click.Context, param: click.Parameter,
                  value: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.strip() for item in value for v in item.split(",") if v.strip())


@analyze.command("timeline")
@click.argument("traces", nargs=-1, required=True)
@click.option("--pid", "pids", type=int, multiple=True,
              help="Only this process, all its threads (repeatable); a thread id works too.")
@click.option("--tree", is_flag=True, help="With --pid: its descendants too.")
@click.option("--container", "containers", multiple=True,
              help="Only this container: id, short id or name (repeatable).")
@click.option("--type", "types", multiple=True, callback=_comma_values,
              help="Only this event type (repeatable, or comma-separated: openat,execve).")
@click.option("--since", help="Only events at or after this time: ISO, epoch ns, or +30s.")
@click.option("--until", help="Only events at or before this time: ISO, epoch ns, or +5m.")
@click.option("--from-evt", "from_num", type=click.IntRange(min=0),
              help="Start at this evt.num (the next page: the note under the table names it).")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="Events shown; a note says how many more match.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "text", "json"]), default="table",
    show_default=True, help="text: one line per event, like sysdig's.",
)
def timeline_cmd(traces: tuple[str, ...], pids: tuple[int, ...], tree: bool,
                 containers: tuple[str, ...], types: tuple[str, ...], since: str | None,
                 until: str | None, from_num: int | None, limit: int, fmt: str) -> None:
    """Show a trace's events in order, one readable line each, with filters.

    Each line has the time, evt.num, container, process (pid, and thread when it differs),
    event type, what it touched (path, rename, connection, executed command line) and the
    errno of a failure. Filters combine with AND; a repeated option means any of its values.
    Times are as in `analyze run` (ISO, epoch ns, +30s from the first event).

    \b
    Example:
        analyze timeline trace.parquet --pid 4242 --tree --since +1m --limit 50
        analyze timeline trace.parquet --container nginx --type openat,execve --format text
    """
    from analyze.triage_render import timeline_json, timeline_lines, timeline_report
    from analyze.triage_timeline import TimelineRequest, timeline

    if tree and not pids:
        raise click.UsageError("--tree needs --pid: the processes whose descendants to show.")
    request = TimelineRequest(pids=pids, tree=tree, containers=containers, types=types,
                              since=since, until=until, from_num=from_num, limit=limit)
    result = timeline(list(traces), request)
    if fmt == "json":
        _print_json(timeline_json(result))
    elif fmt == "text":
        click.echo(timeline_lines(result), nl=False)
    else:
        _report_console().print(timeline_report(result))


@analyze.command("explain")
@click.argument("traces", nargs=-1, required=True)
@click.option("--evt", "evt_num", type=click.IntRange(min=0), help="The event's evt.num.")
@click.option("--alert", "alert_value",
              help="An alert of `analyze run --format json`: its JSON text, a file of them "
              "(one per line), or - to read standard input.")
@click.option("--index", type=click.IntRange(min=1),
              help="Which alert of the --alert file (1-based); needed when it holds several.")
@click.option("--before", type=Duration(), default="30s", show_default=True,
              help="How far back to show the activity.")
@click.option("--after", type=Duration(), default="30s", show_default=True,
              help="How far forward to show the activity.")
@click.option("--max-items", type=click.IntRange(min=1), default=60, show_default=True,
              help="Activity lines shown before and after (json has them all).")
@click.option("--all", "show_all", is_flag=True,
              help="List each library and locale file read at program start; by default they "
              "are one line per process.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
)
def explain_cmd(traces: tuple[str, ...], evt_num: int | None, alert_value: str | None,
                index: int | None, before: float, after: float, max_items: int,
                show_all: bool, fmt: str) -> None:
    """Tell the story around one event: its process, the ancestry, and what they did.

    Shows the event; its process as a tree from the oldest known ancestor down, with command
    lines, users and exec times, and the descendants seen around the event; then what the
    process and its descendants did before and after it: executions, files opened, written,
    renamed, unlinked, linked and chmod-ed, directories made, connections, accepts and listens,
    in time order, repeats folded with a count. Name the event with --evt, or with --alert and
    an alert of `analyze run --format json` (its output_fields hold evt.num).

    \b
    Example:
        analyze explain trace.parquet --evt 52117
        analyze run trace.parquet -r rules/ --format json -o alerts.json
        analyze explain trace.parquet --alert alerts.json --index 3 --before 2m
    """
    from analyze.triage_alert import read_alert
    from analyze.triage_explain import explain
    from analyze.triage_render import explain_json, explain_report

    if (evt_num is None) == (alert_value is None):
        raise click.UsageError("Name the event: give --evt N or --alert ALERT, one of them.")
    if index is not None and alert_value is None:
        raise click.UsageError("--index picks an alert of --alert; give --alert too.")
    alert = None
    if alert_value is not None:
        alert = read_alert(alert_value, index, sys.stdin)
    result = explain(list(traces), evt_num, alert, before_ns=round(before * 1e9),
                     after_ns=round(after * 1e9))
    if fmt == "json":
        _print_json(explain_json(result))
    else:
        _report_console().print(explain_report(result, max_items=max_items, fold=not show_all))


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
    help="auto: the faster engine present (today SQL, then the replay evaluator).",
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
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False),
    help="Also write the report as one self-contained HTML page (timeline chart, no scripts).",
)
@click.option(
    "--html-max-alerts", type=click.IntRange(min=0), default=10_000, show_default=True,
    help="Alerts listed in the HTML report (the counts always cover them all).",
)
@click.pass_context
def run_cmd(ctx: click.Context, traces: tuple[str, ...], rule_paths: tuple[str, ...],
            engine: str, fmt: str, output: str | None, min_priority: str,
            tags: tuple[str, ...], skip_tags: tuple[str, ...], rule_matching: str,
            since: str | None, until: str | None, max_alerts: int, html_path: str | None,
            html_max_alerts: int) -> None:
    """Replay a trace through Falco rules and report the alerts, like Falco would have.

    TRACES is a trace file, a directory of segments or a glob; several name the segments of one
    capture. Times (--since/--until) are ISO (2024-01-01T03:12:00Z; UTC unless a zone is
    given), ns since the epoch, or an offset from the trace's first event (+30s, +1m30s).

    Exit status: 0 when no rule matched, 3 when there are alerts, 1 on any error (a bad rule
    file, a missing or foreign trace), 2 on a bad option. The json format is Falco's, one alert
    per line, with evt.num always in output_fields; the text format is Falco's alert line.
    --html writes the report as a page to attach to a ticket, whatever the --format.

    \b
    Example:
        analyze run trace.parquet -r rules/
        analyze run trace.parquet -r falco_rules.yaml --min-priority warning -T mitre_discovery
        analyze run trace.parquet -r rules/ --format json -o alerts.json --since +30s
        analyze run trace.parquet -r rules/ --html report.html
    """
    from analyze.engine_api import RunOptions
    from analyze.run import RunRequest, check_output_path, open_atomic, run_analysis, write_atomic

    for path in (output, html_path):
        if path is not None:
            check_output_path(path)
    if output is not None and html_path is not None and (
            os.path.abspath(output) == os.path.abspath(html_path)):
        raise click.UsageError("-o and --html name the same file.")
    options = RunOptions(min_priority=min_priority, tags=tags, skip_tags=skip_tags,
                         rule_matching="all" if rule_matching == "all" else "first")
    result = run_analysis(RunRequest(traces, rule_paths, engine, options, since, until))
    if fmt != "table":
        # The report lists skipped rules and field warnings; json/text keep stdout for alerts.
        from analyze.run_render import engine_notes

        for line in engine_notes(result):
            click.echo(line, err=True)
        if not result.rules_run:
            click.echo("Warning: no rule ran (see --format table for why each was skipped).",
                       err=True)
    if html_path is not None:
        from analyze.report_html import render_html

        write_atomic(html_path, render_html(result, max_alerts=html_max_alerts))
        click.echo(f"Wrote report to {html_path}.", err=True)
    if output is None:
        _print_run(result, fmt, max_alerts)
    else:
        with open_atomic(output) as out:
            _write_run(result, fmt, max_alerts, out.write)
        click.echo(f"Wrote {result.alert_count:,} alert(s) to {output}.", err=True)
    ctx.exit(result.exit_code)


def _print_run(result: RunResult, fmt: str, max_alerts: int) -> None:
    from analyze.run_render import render_report

    if fmt == "table":
        Console().print(render_report(result, max_alerts=max_alerts))
    else:
        _write_run(result, fmt, max_alerts, lambda text: click.echo(text, nl=False))


# Alert lines written at a time: the alerts are built a chunk at a time, never all at once.
WRITE_LINES = 4096


def _write_run(result: RunResult, fmt: str, max_alerts: int,
               write: Callable[[str], object]) -> None:
    """Write the run's output: alert lines, JSON lines, or the report uncoloured (a file's)."""
    from io import StringIO

    from analyze.alerts import alert_json, alert_line
    from analyze.run_render import render_report

    if fmt == "table":
        out = StringIO()
        Console(file=out, width=120, color_system=None).print(
            render_report(result, max_alerts=max_alerts)
        )
        write(out.getvalue())
        return
    lines: list[str] = []
    for alert in result.alerts:
        lines.append(json.dumps(alert_json(alert), ensure_ascii=False, separators=(",", ":"))
                     if fmt == "json" else alert_line(alert))
        if len(lines) == WRITE_LINES:
            write("\n".join(lines) + "\n")
            lines.clear()
    if lines:
        write("\n".join(lines) + "\n")


@analyze.command("test")
@click.argument("specs", nargs=-1, required=True)
@click.option(
    "--engine", type=click.Choice(("both", "replay", "sql")), default="both", show_default=True,
    help="both: every test runs on each engine and they must agree.",
)
@click.option("--junit", type=click.Path(dir_okay=False),
              help="Also write the verdicts as JUnit XML to this file (for CI).")
@click.option("--update", is_flag=True,
              help="Rewrite the expectations from the current results (golden files), "
              "keeping the rest of each spec, comments included.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
)
@click.pass_context
def test_cmd(ctx: click.Context, specs: tuple[str, ...], engine: str, junit: str | None,
             update: bool, fmt: str) -> None:
    """Run rule regression tests: replay traces through rules and check the alerts per rule.

    SPECS are YAML test specs (a directory stands for its *.yaml files): the rules, the traces,
    and per rule the exact alert count and/or evt.nums, its priority and output, and the rules
    that must not fire (see README, "Rule regression tests"). Reports TP/FP/FN per rule and a
    diff per failure. Exit status: 0 all passed, 3 a test failed, 1 a bad spec, rule file or
    trace, 2 a bad option.

    \b
    Example:
        analyze test tests/specs/
        analyze test my_rules.spec.yaml --junit results.xml
        analyze test my_rules.spec.yaml --engine replay --update
    """
    from analyze.run import check_output_path, write_atomic
    from analyze.spec_junit import junit_xml
    from analyze.spec_render import render_report, report_json
    from analyze.spec_suite import engines_for, run_suite

    if junit is not None:
        check_output_path(junit)
    result = run_suite(specs, engines_for(engine), update=update)
    for path, tests in result.updated:
        click.echo(f"Updated {path}: {', '.join(tests)}.", err=True)
    if update and not result.updated:
        click.echo("Nothing to update: every expectation matches.", err=True)
    if junit is not None:
        write_atomic(junit, junit_xml(result.specs))
    if fmt == "json":
        _print_json(report_json(result.specs))
    else:
        console = Console()
        if not console.is_terminal:  # a fixed width: the same bytes on every machine
            console = Console(width=120)
        console.print(render_report(result.specs))
    ctx.exit(result.exit_code)


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
