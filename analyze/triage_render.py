"""Render the triage results: rich reports (table), JSON-ready dicts, and timeline text lines.

Pure functions from the result dataclasses to renderables or data; the CLI prints them. Every
traced string (paths, command lines, process and container names) goes into a `Text`, never into
markup. Long lists are cut with a note saying how many more.
Times are UTC, as in `analyze run`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from analyze.alerts import clock_time, rfc3339
from analyze.run_render import format_duration
from analyze.triage_events import EventRow
from analyze.triage_explain import Activity, Explanation, ProcessNode
from analyze.triage_gaps import GapReport
from analyze.triage_info import TraceSummary
from analyze.triage_timeline import Timeline

MAX_ACTIVITY = 60  # activity lines shown per phase (before / after); JSON has them all
MAX_DESCENDANTS = 40  # descendants drawn in the process tree
# What every dynamically linked program reads as it starts: folded in the explain report.
LOADER_PREFIXES = ("/etc/ld.so.cache", "/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/",
                   "/usr/share/locale/", "/usr/lib/locale/")
CMDLINE_WIDTH = 120


# ---- analyze info -----------------------------------------------------------------------------


def info_report(s: TraceSummary) -> RenderableType:
    parts: list[RenderableType] = [info_panel(s), types_table(s), processes_table(s)]
    if s.containers:
        parts.append(containers_table(s))
    if s.users:
        parts.append(users_table(s))
    parts.append(gaps_panel(s.gaps))
    if len(s.segments) > 1:
        parts.append(segments_table(s))
    if s.findings:
        parts.append(Panel(Text("\n".join(s.findings)), title="Footer does not match the rows",
                           title_align="left", border_style="red"))
    return Group(*parts)


def info_panel(s: TraceSummary) -> Panel:
    info = s.info
    files = len(info.paths)
    lines = [
        ("Trace", ", ".join(str(p) for p in info.paths[:3])
         + (f" … ({files} segments)" if files > 3 else "")),
        ("Host", ", ".join(info.hostnames) or "unknown"),
        ("Kernel", ", ".join(info.kernels) or "unknown"),
        ("Source", ", ".join(info.sources)
         + (f" ({', '.join(info.source_files)})" if info.source_files else "")),
        ("Time", span_text(s.start_ns, s.end_ns)),
        ("Events", f"{s.events:,} of {s.types:,} types"
         + ("" if s.events == info.events else f" (footers say {info.events:,})")),
        ("Processes", f"{s.processes:,} pids, {s.threads:,} threads"),
        ("Drops", drops_text(info.dropped, info.drops)),
    ]
    text = Text()
    for i, (key, value) in enumerate(lines):
        text.append(f"{key + ':':<11}", style="bold")
        text.append(value + ("\n" if i < len(lines) - 1 else ""))
    return Panel(text, title="analyze info", title_align="left")


def span_text(start: int | None, end: int | None) -> str:
    if start is None or end is None:
        return "no events"
    return f"{rfc3339(start)} to {rfc3339(end)} ({format_duration(end - start)})"


def drops_text(dropped: int | None, drops: dict[str, int]) -> str:
    if dropped is None:
        return "unknown (imported or recovered captures do not record them)"
    detail = ", ".join(f"{k} {v:,}" for k, v in sorted(drops.items()) if v)
    return f"{dropped:,}" + (f" ({detail})" if detail else "")


def types_table(s: TraceSummary) -> RenderableType:
    table = Table(title="Events by type", title_justify="left")
    table.add_column("type")
    table.add_column("events", justify="right")
    table.add_column("share", justify="right")
    for c in s.by_type:
        table.add_row(Text(c.label), f"{c.events:,}", _share(c.events, s.events))
    rest = s.other_type_events
    if rest:
        table.add_row(Text(f"{s.types - len(s.by_type):,} other types", style="italic"),
                      f"{rest:,}", _share(rest, s.events))
    return table


def processes_table(s: TraceSummary) -> RenderableType:
    table = Table(title=f"Busiest processes (of {s.processes:,})", title_justify="left")
    for name, justify in (("pid", "right"), ("name", "left"), ("events", "right"),
                          ("seen", "left"), ("command line (latest)", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for p in s.top_processes:
        table.add_row("-" if p.pid is None else str(p.pid), Text(p.name), f"{p.events:,}",
                      f"{clock_time(p.first_ns)[:12]} - {clock_time(p.last_ns)[:12]}"
                      if p.first_ns else "", Text(_cut(p.cmdline)))
    return table


def containers_table(s: TraceSummary) -> RenderableType:
    table = Table(title="Containers", title_justify="left")
    for name in ("id", "name", "image", "events"):
        table.add_column(name, justify="right" if name == "events" else "left")
    for c in s.containers:
        table.add_row(Text(c.id or "-"), Text(c.name), Text(c.image), f"{c.events:,}")
    return table


def users_table(s: TraceSummary) -> RenderableType:
    table = Table(title="Users", title_justify="left")
    for name in ("uid", "name", "events"):
        table.add_column(name, justify="left" if name == "name" else "right")
    for u in s.users:
        table.add_row(u.key or "-", Text(u.label), f"{u.events:,}")
    return table


def gaps_panel(g: GapReport) -> Panel:
    lines: list[Text] = []
    if g.num_gaps:
        lines.append(Text(f"{g.num_gaps:,} gap(s) in evt.num, {g.missing_nums:,} number(s) "
                          "missing" + (" (expected in an imported capture: libsinsp numbers "
                                       "events sysdig does not print)" if g.expected_num_gaps
                                       else ": rows removed or a segment missing")))
        lines += [Text(f"  after {x.after:,}, before {x.before:,}: {x.missing:,} missing")
                  for x in g.num_gap_list]
        lines += _more(g.num_gaps - len(g.num_gap_list))
    if g.disorders:
        lines.append(Text(f"{g.disorders:,} place(s) where evt.num repeats or goes back: files "
                          "spliced or segments overlapping"))
        lines += [Text(f"  {d.num:,} after {d.previous:,} in {d.file}") for d in g.disorder_list]
        lines += _more(g.disorders - len(g.disorder_list))
    if g.time_gaps:
        lines.append(Text(f"{g.time_gaps:,} silence(s) longer than "
                          f"{format_duration(g.threshold_ns)} with no event at all"))
        lines += [Text(f"  {rfc3339(t.start_ns)} to {rfc3339(t.end_ns)} "
                       f"({format_duration(t.length_ns)}), between evt.num {t.after_num:,} and "
                       f"{t.before_num:,}") for t in g.time_gap_list]
        lines += _more(g.time_gaps - len(g.time_gap_list))
    if not lines:
        lines.append(Text(f"None: evt.num is continuous and no silence is longer than "
                          f"{format_duration(g.threshold_ns)}."))
    if g.missing_start:
        lines.append(Text(f"Note: the first event is evt.num {g.missing_start + 1:,}; the "
                          f"{g.missing_start:,} before it are not in these files (a later "
                          "segment of a rotated capture, or its start cut off).", style="dim"))
    suspicious = g.suspicious
    title = "Gaps: possible loss or tampering" if suspicious else "Gaps"
    return Panel(Text("\n").join(lines), title=title, title_align="left",
                 border_style="red" if suspicious else "green")


def segments_table(s: TraceSummary) -> RenderableType:
    table = Table(title="Segments", title_justify="left")
    for name in ("file", "events", "evt.num", "time", "dropped", "bytes"):
        table.add_column(name, justify="left" if name in ("file", "time", "evt.num") else "right")
    for seg in s.segments:
        nums = "-" if seg.first_num is None else f"{seg.first_num:,} - {seg.last_num:,}"
        table.add_row(Text(str(seg.path)), f"{seg.events:,}", nums,
                      span_text(seg.start_ns, seg.end_ns), drops_text(seg.dropped, {})
                      if seg.dropped is not None else "unknown", f"{seg.size_bytes:,}")
    return table


def info_json(s: TraceSummary) -> dict[str, Any]:
    g = s.gaps
    return {
        "files": [str(p) for p in s.info.paths],
        "hostnames": list(s.info.hostnames), "kernels": list(s.info.kernels),
        "sources": list(s.info.sources), "events": s.events, "footer_events": s.info.events,
        "start_ns": s.start_ns, "end_ns": s.end_ns, "duration_ns": s.duration_ns,
        "dropped": s.info.dropped, "drops": s.info.drops, "event_types": s.types,
        "by_type": {c.key: c.events for c in s.by_type},
        "other_type_events": s.other_type_events,
        "processes": s.processes, "threads": s.threads,
        "top_processes": [
            {"proc.pid": p.pid, "proc.name": p.name, "proc.cmdline": p.cmdline,
             "events": p.events, "first_ns": p.first_ns, "last_ns": p.last_ns}
            for p in s.top_processes],
        "containers": [{"container.id": c.id, "container.name": c.name,
                        "container.image": c.image, "events": c.events} for c in s.containers],
        "users": [{"user.uid": None if not u.key else int(u.key), "user.name": u.label,
                   "events": u.events} for u in s.users],
        "gaps": {
            "suspicious": g.suspicious, "expected_num_gaps": g.expected_num_gaps,
            "threshold_ns": g.threshold_ns, "missing_start": g.missing_start,
            "num_gaps": g.num_gaps,
            "missing_nums": g.missing_nums,
            "num_gap_list": [{"after": x.after, "before": x.before, "missing": x.missing,
                              "file": x.file} for x in g.num_gap_list],
            "disorders": g.disorders,
            "disorder_list": [{"previous": d.previous, "num": d.num, "file": d.file}
                              for d in g.disorder_list],
            "time_gaps": g.time_gaps,
            "time_gap_list": [{"start_ns": t.start_ns, "end_ns": t.end_ns,
                               "length_ns": t.length_ns, "after_num": t.after_num,
                               "before_num": t.before_num, "file": t.file}
                              for t in g.time_gap_list],
        },
        "segments": [{"file": str(x.path), "events": x.events, "first_num": x.first_num,
                      "last_num": x.last_num, "start_ns": x.start_ns, "end_ns": x.end_ns,
                      "dropped": x.dropped, "size_bytes": x.size_bytes} for x in s.segments],
        "findings": s.findings,
    }


# ---- analyze timeline -------------------------------------------------------------------------


def timeline_report(t: Timeline) -> RenderableType:
    table = Table(title=_timeline_title(t), title_justify="left")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("evt.num", justify="right")
    show_container = any(e.container_id not in ("", "host") for e in t.events)
    if show_container:
        table.add_column("container")
    table.add_column("process")
    table.add_column("event")
    table.add_column("summary", overflow="fold")
    table.add_column("result")
    for e in t.events:
        cells: list[RenderableType] = [clock_time(e.time_ns), str(e.num)]
        if show_container:
            cells.append(Text(e.container_name or e.container_id))
        cells += [Text(process_label(e)), Text(event_label(e)), Text(e.summary),
                  _result(e.result, e.failed)]
        table.add_row(*cells)
    return Group(table, Text(timeline_note(t), style="italic"))


def _timeline_title(t: Timeline) -> str:
    if not t.events:
        return "Timeline"
    first, last = t.events[0].time_ns, t.events[-1].time_ns
    return f"Timeline: {rfc3339(first)[:10]}, {len(t.events):,} of {t.matched:,} matching events" \
        + ("" if rfc3339(first)[:10] == rfc3339(last)[:10] else f" (to {rfc3339(last)[:10]})")


def timeline_note(t: Timeline) -> str:
    if not t.matched:
        return "No event matches."
    if t.more <= 0:
        return f"{t.matched:,} event(s)."
    return f"… {t.more:,} more; the next page starts with --from-evt {t.next_num}."


def timeline_lines(t: Timeline) -> str:
    """One line per event, like sysdig's: `time num container process(pid) dir type summary`."""
    lines = []
    for e in t.events:
        res = f" [{e.result}]" if e.failed else ""
        lines.append(f"{rfc3339(e.time_ns)} {e.num} {e.container_name or e.container_id or '-'} "
                     f"{process_label(e)} {e.dir or '?'} {e.type} {e.summary}{res}".rstrip())
    if t.more > 0:
        lines.append(f"# {timeline_note(t)}")
    return "".join(line + "\n" for line in lines)


def timeline_json(t: Timeline) -> dict[str, Any]:
    r = t.request
    return {
        "filters": {"pids": list(r.pids), "tree": r.tree, "containers": list(r.containers),
                    "types": list(r.types), "since_ns": t.since_ns, "until_ns": t.until_ns,
                    "from_num": r.from_num, "limit": r.limit},
        "matched": t.matched, "shown": len(t.events), "more": t.more, "next_from_evt": t.next_num,
        "events": [e.to_dict() for e in t.events],
    }


def process_label(e: EventRow) -> str:
    pid = "?" if e.pid is None else str(e.pid)
    tid = f"/{e.tid}" if e.tid is not None and e.tid != e.pid else ""
    return f"{e.process or '?'}({pid}{tid})"


def event_label(e: EventRow) -> str:
    return f"{e.dir} {e.type}" if e.dir else e.type


# ---- analyze explain --------------------------------------------------------------------------


def explain_report(x: Explanation, max_items: int = MAX_ACTIVITY,
                   fold: bool = True) -> RenderableType:
    """The event, the process tree, then the activity before and after; with `fold`, the
    read-only opens every program makes when it starts (loader, libraries, locale) are one line
    per process."""
    parts: list[RenderableType] = [event_panel(x), process_tree(x)]
    activity = fold_loader_reads(x.activity) if fold else list(x.activity)
    before = [a for a in activity if a.phase == "before"]
    after = [a for a in activity if a.phase == "after"]
    event_ns = x.event.time_ns
    parts.append(activity_table(
        f"Before: {format_duration(event_ns - x.window_start_ns)} up to the event"
        + _life_note(x, "before"), before, event_ns, max_items))
    parts.append(activity_table(
        f"After: {format_duration(x.window_end_ns - event_ns)} from the event"
        + _life_note(x, "after"), after, event_ns, max_items))
    return Group(*parts)


def event_panel(x: Explanation) -> Panel:
    e = x.event
    text = Text()
    rows: list[tuple[str, str]] = [
        ("time", rfc3339(e.time_ns)),
        ("event", f"{event_label(e)}  {e.summary}"),
        ("result", e.result or "-"),
        ("process", process_label(e) + (f" user {e.user}" if e.user else "")),
    ]
    rows += [(k, _cut(str(v), 400)) for k, v in x.details.items()
             if k not in ("user.name",)]
    if x.alert is not None:
        rows = [("alert", f"{x.alert.priority} {x.alert.rule} ({x.alert.where})"),
                ("output", x.alert.output), *rows]
    width = max(len(k) for k, _ in rows) + 2
    for i, (key, value) in enumerate(rows):
        text.append(f"{key + ':':<{width}}", style="bold")
        text.append(value + ("\n" if i < len(rows) - 1 else ""))
    style = "red" if e.failed else "blue"
    return Panel(text, title=f"Event {e.num:,}", title_align="left", border_style=style)


def process_tree(x: Explanation) -> Tree:
    """The ancestry (oldest first) down to the process, then its descendants by parent."""
    tree = Tree(Text("Process ancestry", style="bold"))
    branch = tree
    subject = x.ancestry[-1] if x.ancestry else None
    for node in x.ancestry:
        branch = branch.add(node_label(node, subject=node is subject))
    by_parent: dict[int | None, list[ProcessNode]] = {}
    for d in x.descendants:
        by_parent.setdefault(d.parent, []).append(d)
    root_pid = subject.pid if subject is not None else x.event.pid
    done: set[int | None] = set()
    _add_children(branch, root_pid, by_parent, done)
    if len(done) < len(x.descendants):
        branch.add(Text(f"… {len(x.descendants) - len(done):,} more descendants "
                        "(see --format json)", style="italic"))
    return tree


def _add_children(branch: Tree, pid: int | None, by_parent: dict[int | None, list[ProcessNode]],
                  done: set[int | None]) -> None:
    for child in by_parent.get(pid, []):
        if child.pid in done or len(done) >= MAX_DESCENDANTS:
            continue
        done.add(child.pid)
        _add_children(branch.add(node_label(child)), child.pid, by_parent, done)


def node_label(n: ProcessNode, subject: bool = False) -> Text:
    text = Text()
    text.append(f"{n.name or '?'} ({'?' if n.pid is None else n.pid})",
                style="bold yellow" if subject else "bold")
    if n.exepath and n.exepath.rsplit("/", 1)[-1] != n.name:
        text.append(f" {n.exepath}", style="dim")
    if n.cmdline:
        text.append(f"  {_cut(n.cmdline)}")
    notes = []
    if n.user:
        notes.append(f"user {n.user}")
    if n.exec_num is not None and n.exec_ns is not None:
        notes.append(f"exec at evt.num {n.exec_num} ({clock_time(n.exec_ns)})")
    if n.events == 0 and not subject:
        notes.append("no event of its own in the trace")
    elif n.events:
        notes.append(f"{n.events:,} event{'' if n.events == 1 else 's'}")
    if notes:
        text.append("  [" + ", ".join(notes) + "]", style="dim")
    if subject:
        text.append("  ◀ the event's process", style="yellow")
    return text


def activity_table(title: str, items: Sequence[Activity], event_ns: int,
                   max_items: int) -> RenderableType:
    if not items:
        return Text(f"{title}: no activity of these kinds.", style="italic")
    table = Table(title=title, title_justify="left")
    table.add_column("offset", justify="right", no_wrap=True)
    table.add_column("evt.num", justify="right")
    table.add_column("process")
    table.add_column("what")
    table.add_column("item", overflow="fold")
    table.add_column("count", justify="right")
    table.add_column("result")
    for a in items[:max_items]:
        table.add_row(_offset(a.first_ns - event_ns), str(a.first_num),
                      Text(f"{a.process}({a.pid})"), a.kind, Text(a.item),
                      f"{a.count:,}" if a.count > 1 else "", _result(a.result, bool(a.result)))
    more = len(items) - max_items
    if more > 0:
        return Group(table, Text(f"… {more:,} more (see --format json)", style="italic"))
    return table


def explain_json(x: Explanation) -> dict[str, Any]:
    def node(n: ProcessNode) -> dict[str, Any]:
        return {"proc.pid": n.pid, "proc.name": n.name, "proc.exepath": n.exepath,
                "proc.cmdline": n.cmdline, "user.name": n.user, "proc.ppid": n.parent,
                "events": n.events, "first_ns": n.first_ns, "exec_num": n.exec_num,
                "exec_ns": n.exec_ns}

    return {
        "event": x.event.to_dict(),
        "details": {k: _plain(v) for k, v in x.details.items()},
        "alert": None if x.alert is None else {
            "where": x.alert.where, "rule": x.alert.rule, "priority": x.alert.priority,
            "output": x.alert.output},
        "ancestry": [node(n) for n in x.ancestry],
        "descendants": [node(n) for n in x.descendants],
        "window": {"start_ns": x.window_start_ns, "end_ns": x.window_end_ns,
                   "born_num": x.born_num, "ended_num": x.ended_num},
        "activity": [
            {"phase": a.phase, "kind": a.kind, "proc.pid": a.pid, "proc.name": a.process,
             "item": a.item, "evt.res": a.result or None, "count": a.count,
             "first_num": a.first_num, "first_ns": a.first_ns, "last_ns": a.last_ns}
            for a in x.activity],
    }


def fold_loader_reads(items: Sequence[Activity]) -> list[Activity]:
    """`items` with the read-only opens below LOADER_PREFIXES folded into one line per (phase,
    process), placed at the first of them. Writes there are never folded."""
    kept: list[Activity] = []
    folded: dict[tuple[str, int | None, str], list[Activity]] = {}
    for a in items:
        path = a.item.removesuffix(" (read)")
        if a.kind == "open" and a.item.endswith(" (read)") and path.startswith(LOADER_PREFIXES):
            group = folded.setdefault((a.phase, a.pid, a.process), [])
            if not group:
                kept.append(a)  # a placeholder where the folded line goes
            group.append(a)
        else:
            kept.append(a)
    out = []
    for a in kept:
        group = folded.get((a.phase, a.pid, a.process), [])
        if group and a is group[0]:
            failed = sum(g.count for g in group if g.result)
            a = Activity(a.phase, "open", a.pid, a.process,
                         f"{len(group):,} libraries and locale files (read"
                         + (f"; {failed:,} not found)" if failed else ")"),
                         "", sum(g.count for g in group), min(g.first_num for g in group),
                         min(g.first_ns for g in group), max(g.last_ns for g in group))
        out.append(a)
    return out


def _life_note(x: Explanation, phase: str) -> str:
    if phase == "before" and x.born_num is not None:
        return f" (the process was created at evt.num {x.born_num})"
    if phase == "after" and x.ended_num is not None:
        return f" (the process ended at evt.num {x.ended_num})"
    return ""


# ---- shared bits ------------------------------------------------------------------------------


def _result(result: str, failed: bool) -> Text:
    if not failed:
        return Text("")
    return Text(result or "failed", style="red")


def _offset(ns: int) -> str:
    sign = "-" if ns < 0 else "+"
    return sign + format_duration(abs(ns))


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _cut(text: str, width: int = CMDLINE_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _more(count: int) -> list[Text]:
    return [Text(f"  … {count:,} more", style="italic")] if count > 0 else []


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)

