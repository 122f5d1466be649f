"""Render a `RunResult`: the rich report of `analyze run --format table`.

Two layers: `analyze.alert_stats` counts what the report shows (by rule, priority, process,
container, time slice: `RunResult.stats`), and `render_report` builds the renderables from the
result and those counts, purely; the CLI prints them. Of the alerts, only those the table lists
are built (`result.alerts[:max_alerts]`). Traced strings (paths, process and container names,
outputs) go through `Text` or `escape()`, never straight into markup. Long lists are cut with a
note saying how many were left out, so a noisy run still fits on a screen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from analyze.alert_stats import AlertStats, RuleCount
from analyze.alert_stats import alert_stats as alert_stats  # re-exported: it was defined here
from analyze.alerts import Alert, clock_time, rfc3339
from analyze.engine_api import Skipped
from analyze.errors import RuleWarning
from analyze.run import RunResult
from analyze.trace_reader import TraceInfo

TOP_RULES = 20
TOP_PROCESSES = 10
TOP_CONTAINERS = 10
BAR_WIDTH = 40
SKIPPED_NAMES = 5  # rule names shown per skip reason

PRIORITY_STYLE = {
    "Emergency": "bold red", "Alert": "bold red", "Critical": "bold red", "Error": "red",
    "Warning": "yellow", "Notice": "cyan", "Informational": "green", "Debug": "dim",
}


# ---- rendering --------------------------------------------------------------------------------


def render_report(result: RunResult, *, max_alerts: int = 20) -> RenderableType:
    """The whole report: summary, then the alert sections, then the skipped rules (those the
    engine could not run among them) and the rules reading fields no trace records."""
    stats = result.stats()
    parts: list[RenderableType] = [summary_panel(result, stats)]
    if result.alert_count:
        parts += [
            rules_table(stats.by_rule),
            processes_table(stats.processes),
            containers_table(stats.containers),
            timeline_table(stats),
            alerts_table(result.alerts, max_alerts),
        ]
    else:
        parts.append(Text("No alerts."))
    if result.all_skipped:
        parts.append(skipped_table(result.all_skipped))
    if result.engine_warnings:
        parts.append(warnings_table(result.engine_warnings))
    return Group(*parts)


def summary_panel(result: RunResult, stats: AlertStats) -> Panel:
    info = result.info
    lines = [
        "Trace:    " + escape(", ".join(str(p) for p in info.paths))
        + (f"  (host {escape(', '.join(info.hostnames))})" if info.hostnames else ""),
        "Time:     " + time_range(result),
        f"Events:   {result.events:,} analysed in {result.engine_seconds:.3f} s "
        f"({result.events_per_second:,.0f} events/s); wall time {result.total_seconds:.3f} s",
        "Drops:    " + drops_text(result),
        f"Engine:   {escape(result.engine)}, rule matching: {result.options.rule_matching}",
        f"Rules:    {len(result.rules_run):,} run, {len(result.all_skipped):,} skipped"
        + _rule_filters(result),
        f"Alerts:   {result.alert_count:,}" + _priorities(stats.by_priority),
    ]
    return Panel("\n".join(lines), title="analyze run", title_align="left")


def time_range(result: RunResult) -> str:
    """The analysed window: `<start> to <end> (<duration>)`, the date once when both share it."""
    start, end = result.window_start_ns, result.window_end_ns
    if start is None or end is None:
        return "unknown (the trace records no time range)"
    clipped = result.options.since_ns is not None or result.options.until_ns is not None
    note = ", clipped by --since/--until" if clipped else ""
    until = rfc3339(end)
    if until[:10] == rfc3339(start)[:10]:
        until = clock_time(end)  # same day: the date once is enough
    return f"{rfc3339(start)} to {until} ({format_duration(end - start)}{note})"


def drops_text(result: RunResult, quote: Callable[[str], str] = escape) -> str:
    """The trace's drops and their kinds; `quote` makes a kind (trace metadata) safe for the
    output: rich markup escaping here, HTML escaping in the page."""
    info = result.info
    if info.dropped is None:
        return "unknown (the capture does not record its drops)"
    detail = ", ".join(f"{k} {v:,}" for k, v in sorted(info.drops.items()) if v)
    return f"{info.dropped:,}" + (f" ({quote(detail)})" if detail else "")


def _rule_filters(result: RunResult) -> str:
    opts = result.options
    bits = [f"from {len(result.rule_files)} file(s)"]
    if opts.min_priority != "Debug":
        bits.append(f"priority >= {opts.min_priority}")
    if opts.tags:
        bits.append("tags " + escape(", ".join(opts.tags)))
    if opts.skip_tags:
        bits.append("not tags " + escape(", ".join(opts.skip_tags)))
    if result.loader_warnings:
        bits.append(f"{result.loader_warnings} loader warning(s), see `analyze validate`")
    return "; " + "; ".join(bits)


def _priorities(by_priority: Sequence[tuple[str, int]]) -> str:
    if not by_priority:
        return ""
    return "  (" + ", ".join(
        f"[{PRIORITY_STYLE[p]}]{p}[/] {n:,}" for p, n in by_priority
    ) + ")"


def rules_table(rows: Sequence[RuleCount]) -> RenderableType:
    table = Table(title="Alerts by rule", title_justify="left", expand=True)
    table.add_column("rule", overflow="fold", ratio=3)
    table.add_column("priority")
    table.add_column("alerts", justify="right")
    table.add_column("first")
    table.add_column("last")
    for r in rows[:TOP_RULES]:
        table.add_row(Text(r.rule), _priority(r.priority), f"{r.count:,}",
                      clock_time(r.first_ns), clock_time(r.last_ns))
    return _with_more(table, len(rows) - TOP_RULES, "rules")


def processes_table(rows: Sequence[tuple[str, int]]) -> RenderableType:
    table = Table(title="Top processes", title_justify="left")
    table.add_column("proc.name", overflow="fold")
    table.add_column("alerts", justify="right")
    for name, n in rows[:TOP_PROCESSES]:
        table.add_row(Text(name), f"{n:,}")
    return _with_more(table, len(rows) - TOP_PROCESSES, "processes")


def containers_table(rows: Sequence[tuple[tuple[str, str, str], int]]) -> RenderableType:
    table = Table(title="Top containers", title_justify="left")
    table.add_column("container.id", overflow="fold")
    table.add_column("container.name", overflow="fold")
    table.add_column("container.image", overflow="fold")
    table.add_column("alerts", justify="right")
    for (cid, name, image), n in rows[:TOP_CONTAINERS]:
        table.add_row(Text(cid or "<NA>"), Text(name or "<NA>"), Text(image or "<NA>"), f"{n:,}")
    return _with_more(table, len(rows) - TOP_CONTAINERS, "containers")


def timeline_table(stats: AlertStats) -> RenderableType:
    """Alerts per time slice as a bar chart: offset from the start, bar, count."""
    peak = max((s.count for s in stats.timeline), default=0)
    title = Text(f"Timeline from {rfc3339(stats.timeline_start_ns)}, "
                 f"{format_duration(stats.slice_ns)} per row", style="italic")
    table = Table(show_header=False, box=None)
    table.add_column(justify="right")
    table.add_column()
    table.add_column(justify="right")
    for s in stats.timeline:
        bar = "█" * (round(BAR_WIDTH * s.count / peak) if peak else 0)
        if s.count and not bar:
            bar = "▏"  # a slice with alerts never looks empty
        table.add_row("+" + format_duration(s.start_ns), bar, f"{s.count:,}")
    return Group(title, table)


def alerts_table(alerts: Sequence[Alert], limit: int) -> RenderableType:
    """The first `limit` alerts (only those are built), and how many more there are."""
    total = len(alerts)
    shown = min(limit, total)
    title = f"Alerts (all {total:,})" if shown == total else (
        f"Alerts (first {shown:,} of {total:,})")
    table = Table(title=title, title_justify="left", expand=True)
    table.add_column("time", no_wrap=True)
    table.add_column("priority")
    table.add_column("rule", overflow="fold", ratio=1)
    table.add_column("output", overflow="fold", ratio=3)
    for a in alerts[:limit]:
        table.add_row(clock_time(a.time_ns), _priority(a.priority), Text(a.rule), Text(a.output))
    more = total - limit
    if more <= 0:
        return table
    note = Text(f"… {more:,} more alert{'s' if more != 1 else ''}; use --format json "
                "(or --max-alerts) to see them all", style="italic")
    return Group(table, note)


def skipped_table(skipped: Sequence[Skipped]) -> Table:
    """Skipped rules grouped by reason, a few names each: never silent, never a wall."""
    groups: dict[str, list[str]] = {}
    for s in skipped:
        groups.setdefault(s.reason, []).append(s.rule)
    table = Table(title=f"Skipped rules ({len(skipped):,})", title_justify="left", expand=True)
    table.add_column("reason", overflow="fold", ratio=2)
    table.add_column("rules", justify="right")
    table.add_column("names", overflow="fold", ratio=3)
    for reason, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(names[:SKIPPED_NAMES])
        if len(names) > SKIPPED_NAMES:
            shown += f", … {len(names) - SKIPPED_NAMES:,} more"
        table.add_row(Text(reason), f"{len(names):,}", Text(shown))
    return table


def warnings_table(warnings: Sequence[RuleWarning]) -> Table:
    """What the engine warned about the rules it ran (fields no trace records: checks false)."""
    table = Table(title=f"Rule warnings ({len(warnings):,})", title_justify="left", expand=True)
    table.add_column("code")
    table.add_column("message", overflow="fold", ratio=1)
    for w in warnings:
        table.add_row(w.code, Text(w.message))
    return table


def engine_notes(result: RunResult) -> list[str]:
    """One stderr line per rule the engine could not run and per rule warning, for the json and
    text formats, whose output has no room for them."""
    lines = [f"Warning: rule {s.rule!r} skipped: {s.reason}" for s in result.engine_skipped]
    lines += [f"Warning: {w.message} [{w.code}]" for w in result.engine_warnings]
    return lines


def _priority(priority: str) -> Text:
    return Text(priority, style=PRIORITY_STYLE.get(priority, ""))


def _with_more(table: Table, more: int, what: str) -> RenderableType:
    if more <= 0:
        return table
    return Group(table, Text(f"… {more:,} more {what}", style="italic"))


def format_duration(ns: int) -> str:
    """A short human duration: 850ns, 12.5us, 3.2ms, 1.25s, 2m05s, 1h02m."""
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.1f}us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f}ms"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# ---- capture info -----------------------------------------------------------------------------


def trace_info_table(info: TraceInfo) -> Table:
    """`capture info`: a trace's metadata as a two-column table."""
    table = Table(title="Trace", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    span = info.duration_ns
    rows = [
        ("files", "\n".join(str(p) for p in info.paths)),
        ("host", ", ".join(info.hostnames) or "unknown"),
        ("kernel", ", ".join(info.kernels) or "unknown"),
        ("source", ", ".join(info.sources) + (
            f" ({', '.join(info.source_files)})" if info.source_files else "")),
        ("events", f"{info.events:,}"),
        ("dropped", "unknown" if info.dropped is None else f"{info.dropped:,}"),
        ("start", rfc3339(info.capture_start_ns) if info.capture_start_ns is not None else "-"),
        ("end", rfc3339(info.capture_end_ns) if info.capture_end_ns is not None else "-"),
        ("duration", format_duration(span) if span is not None else "-"),
        ("schema", ", ".join(info.schema_versions)),
        ("size", f"{info.size_bytes:,} bytes in {info.row_groups:,} row group(s)"),
        ("order", "; ".join(f"rows by {o.replace(',', ', ')} in each row group"
                            for o in info.row_orders) or "-"),
    ]
    rows += [(f"drops: {k}", f"{v:,}") for k, v in sorted(info.drops.items())]
    for key, value in rows:
        table.add_row(key, Text(value))
    return table
