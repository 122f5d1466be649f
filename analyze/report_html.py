"""`analyze run --html`: the run's report as one self-contained HTML page, to attach to a ticket.

The same sections as the terminal report (`analyze.run_render`, whose counts it reuses): summary,
alerts by priority, a timeline chart (`analyze.report_svg`), alerts by rule, process and
container, the alert list, skipped rules and rule warnings.

Self-contained and inert: inline CSS, no script, no URL of any kind (fonts, images, links), and a
Content-Security-Policy that forbids scripts and every fetch, so even a page a bug left
unescaped could run nothing. Every string from the trace or the rule files passes through
`report_svg.esc` (HTML-escaped, quotes too, control and bidi characters shown as escapes).

Bounded for noisy runs: the counts cover every alert (`RunResult.stats`, counted without
building the alerts), but the alert list stops at `max_alerts` rows (with a note of how many
more; only those alerts are built), outputs longer than OUTPUT_CHARS are cut, and process and
container tables keep their TOP_* most frequent rows: a million alerts give a page of 5 MB.

Deterministic: the same result gives the same bytes, so two reports can be diffed. The engine
timings of the terminal summary are left out for that reason (they change on every run).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version

from analyze.alert_stats import AlertStats, RuleCount
from analyze.alerts import Alert, clock_time, rfc3339
from analyze.engine_api import Skipped
from analyze.errors import RuleWarning
from analyze.report_svg import esc, stack_by_priority, timeline_svg
from analyze.run import RunResult
from analyze.run_render import drops_text, format_duration, time_range

# Rows of the alert list. Measured (bench/bench_report_html.py): 10,000 rows make a 4.6 MB page
# that headless chromium opens in about 2 s, start included; all 143,904 rows of a run made 56 MB
# and took 12.5 s.
HTML_MAX_ALERTS = 10_000
HTML_SLICES = 60  # timeline bars
TOP_PROCESSES = 50
TOP_CONTAINERS = 50
OUTPUT_CHARS = 2_000  # of one alert's output; --format json has them whole
# The alert list is cut into tables of CHUNK_ROWS rows, each in a box the browser lays out only
# when it scrolls near (content-visibility): 10,000 rows opened in 1.7-2.4 s instead of 3.2-4.2 s
# in headless chromium (a loaded 2-core machine). Fixed column widths keep the tables aligned.
CHUNK_ROWS = 250
ALERT_COLUMNS = (("time", "10.5em"), ("#evt.num", "6.5em"), ("priority", "7.5em"),
                 ("rule", "22%"), ("output", "auto"))

PRIORITY_COLORS = {
    "Emergency": "#67000d", "Alert": "#a50f15", "Critical": "#cb181d", "Error": "#ef3b2c",
    "Warning": "#f39c12", "Notice": "#3182bd", "Informational": "#31a354", "Debug": "#969696",
}
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;
padding:16px 24px;color:#1b1f23;background:#fff}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:28px 0 8px;
border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #eaecef;padding:4px 8px;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
th{background:#f6f8fa;position:sticky;top:0}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.t{white-space:nowrap;font-family:ui-monospace,monospace}
td.o{font-family:ui-monospace,monospace;white-space:pre-wrap}
dl.summary{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}
dl.summary dt{font-weight:600}dl.summary dd{margin:0;overflow-wrap:anywhere}
.p{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;font-size:12px;
font-weight:600;white-space:nowrap;background:#888888}
table.narrow{width:auto;min-width:24em}
table.list{table-layout:fixed}
table.list.head{position:sticky;top:0;z-index:1}
.chunk{content-visibility:auto;contain-intrinsic-size:auto 6500px}
.tag{display:inline-block;background:#eef1f4;border-radius:3px;padding:0 4px;margin:1px;
font-size:12px}
.more{font-style:italic;color:#57606a}
.legend{list-style:none;padding:0;margin:4px 0;display:flex;gap:14px;flex-wrap:wrap}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;
vertical-align:-1px}
svg.timeline{width:100%;height:auto;font-size:11px;fill:#444}
footer{margin-top:32px;color:#57606a;font-size:12px}
""" + "".join(f".p-{name}{{background:{color}}}" for name, color in PRIORITY_COLORS.items())


def render_html(result: RunResult, *, max_alerts: int = HTML_MAX_ALERTS) -> str:
    """The whole page; `max_alerts` caps the alert list, never the counts."""
    stats = result.stats(HTML_SLICES)
    count = result.alert_count
    body = [f"<h1>sysreplay analyze run: {count:,} alert{'' if count == 1 else 's'}</h1>",
            summary_section(result, stats)]
    if count:
        body += [
            priority_section(stats), timeline_section(result.alerts, stats),
            rules_section(stats.by_rule),
            processes_section(stats.processes), containers_section(stats.containers),
            alerts_section(result.alerts, max_alerts),
        ]
    else:
        body.append('<section id="alerts"><h2>Alerts</h2><p>No alerts.</p></section>')
    if result.all_skipped:
        body.append(skipped_section(result.all_skipped))
    if result.engine_warnings:
        body.append(warnings_section(result.engine_warnings))
    body.append(f"<footer>Generated by sysreplay {esc(_version())} <code>analyze run</code>."
                "</footer>")
    return _page(_title(result), "\n".join(body))


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n"
        "</html>\n"
    )


def _title(result: RunResult) -> str:
    names = ", ".join(p.name for p in result.info.paths)
    return esc(f"sysreplay: {result.alert_count:,} alerts in {names}")


# ---- sections ---------------------------------------------------------------------------------


def summary_section(result: RunResult, stats: AlertStats) -> str:
    info = result.info
    rows = [
        ("Trace", "<br>".join(esc(str(p)) for p in info.paths)),
        ("Host", esc(", ".join(info.hostnames)) or "unknown"),
        ("Time", esc(time_range(result))),
        ("Events", f"{result.events:,} analysed"),
        ("Drops", drops_text(result, esc)),
        ("Engine", f"{esc(result.engine)}, rule matching: {esc(result.options.rule_matching)}"),
        ("Rule files", "<br>".join(esc(f) for f in result.rule_files) or "none"),
        ("Rules", f"{len(result.rules_run):,} run, {len(result.all_skipped):,} skipped"
                  + "".join(f"; {esc(bit)}" for bit in _rule_filters(result))),
        ("Alerts", f"{result.alert_count:,} " + " ".join(
            f"{_badge(p)} {n:,}" for p, n in stats.by_priority)),
    ]
    items = "\n".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<section id="summary"><h2>Summary</h2>\n<dl class="summary">\n{items}\n</dl></section>'


def _rule_filters(result: RunResult) -> list[str]:
    """The selection that applied, as the terminal summary words it (plain text, unescaped)."""
    opts = result.options
    bits = [f"from {len(result.rule_files)} file(s)"]
    if opts.min_priority != "Debug":
        bits.append(f"priority >= {opts.min_priority}")
    if opts.tags:
        bits.append("tags " + ", ".join(opts.tags))
    if opts.skip_tags:
        bits.append("not tags " + ", ".join(opts.skip_tags))
    if result.loader_warnings:
        bits.append(f"{result.loader_warnings} loader warning(s), see `analyze validate`")
    return bits


def priority_section(stats: AlertStats) -> str:
    rows = [[_badge(p), _num(n)] for p, n in stats.by_priority]
    return _section("by-priority", "Alerts by priority",
                    _table(["priority", "#alerts"], rows, narrow=True))


def timeline_section(alerts: Sequence[Alert], stats: AlertStats) -> str:
    """The chart, its legend, and the same counts as a table for copying and screen readers."""
    slices = stack_by_priority(alerts, stats)
    legend = "".join(
        f'<li><span class="swatch" style="background:{PRIORITY_COLORS.get(p, "#888888")}">'
        f"</span>{esc(p)}</li>" for p, _ in stats.by_priority)
    rows = [[_num_cell("+" + format_duration(s.start_ns)), _num(s.total),
             esc(", ".join(f"{p} {n:,}" for p, n in s.counts))] for s in slices]
    head = (f"<p>From {esc(rfc3339(stats.timeline_start_ns))}, "
            f"{esc(format_duration(stats.slice_ns))} per bar.</p>")
    table = _table(["offset", "#alerts", "by priority"], rows)
    body = (f'{head}\n{timeline_svg(slices, stats.slice_ns, PRIORITY_COLORS)}\n'
            f'<ul class="legend">{legend}</ul>\n'
            f"<details><summary>Counts per bar</summary>\n{table}\n</details>")
    return _section("timeline", "Timeline", body)


def rules_section(rows: Sequence[RuleCount]) -> str:
    cells = [[esc(r.rule), _badge(r.priority),
              "".join(f'<span class="tag">{esc(t)}</span>' for t in r.tags),
              _num(r.count), _time_cell(r.first_ns), _time_cell(r.last_ns)] for r in rows]
    table = _table(["rule", "priority", "tags", "#alerts", "first", "last"], cells)
    return _section("by-rule", f"Alerts by rule ({len(rows):,})", table)


def processes_section(rows: Sequence[tuple[str, int]]) -> str:
    cells = [[esc(name), _num(n)] for name, n in rows[:TOP_PROCESSES]]
    table = _table(["proc.name", "#alerts"], cells, narrow=True)
    table += _more(len(rows) - TOP_PROCESSES, "processes")
    return _section("by-process", "Top processes", table)


def containers_section(rows: Sequence[tuple[tuple[str, str, str], int]]) -> str:
    cells = [[esc(cid or "<NA>"), esc(name or "<NA>"), esc(image or "<NA>"), _num(n)]
             for (cid, name, image), n in rows[:TOP_CONTAINERS]]
    table = _table(["container.id", "container.name", "container.image", "#alerts"], cells)
    return _section("by-container", "Top containers",
                    table + _more(len(rows) - TOP_CONTAINERS, "containers"))


def alerts_section(alerts: Sequence[Alert], limit: int) -> str:
    """The first `limit` alerts (only those are built), and how many more there are."""
    total = len(alerts)
    listed = alerts[:limit]
    shown = len(listed)
    title = f"Alerts (all {total:,})" if shown == total else (
        f"Alerts (first {shown:,} of {total:,})")
    cols = "<colgroup>" + "".join(f'<col style="width:{w}">' for _, w in ALERT_COLUMNS) + (
        "</colgroup>")
    parts = [f'<table class="list head">{cols}<thead>{_head_row([h for h, _ in ALERT_COLUMNS])}'
             "</thead></table>"]
    for first in range(0, shown, CHUNK_ROWS):
        rows = _body_rows([_time_cell(a.time_ns), _num(a.evt_num), _badge(a.priority),
                           esc(a.rule), _output_cell(a.output)]
                          for a in listed[first:first + CHUNK_ROWS])
        parts.append(f'<div class="chunk"><table class="list">{cols}<tbody>\n{rows}\n</tbody>'
                     "</table></div>")
    more = total - shown
    parts.append(_more(more, f"alert{'s' if more != 1 else ''}; use --format json (or "
                             "--html-max-alerts) to see them all"))
    return _section("alerts", title, "\n".join(parts))


def skipped_section(skipped: Sequence[Skipped]) -> str:
    """Skipped rules grouped by reason, every name (a rule set has hundreds at most)."""
    groups: dict[str, list[str]] = {}
    for s in skipped:
        groups.setdefault(s.reason, []).append(s.rule)
    rows = [[esc(reason), _num(len(names)), esc(", ".join(names))]
            for reason, names in sorted(groups.items(), key=lambda kv: -len(kv[1]))]
    return _section("skipped", f"Skipped rules ({len(skipped):,})",
                    _table(["reason", "#rules", "names"], rows))


def warnings_section(warnings: Sequence[RuleWarning]) -> str:
    rows = [[esc(w.code), esc(w.message)] for w in warnings]
    return _section("warnings", f"Rule warnings ({len(warnings):,})",
                    _table(["code", "message"], rows))


# ---- pieces -----------------------------------------------------------------------------------


def _section(ident: str, title: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{esc(title)}</h2>\n{body}\n</section>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, narrow: bool = False) -> str:
    tag = '<table class="narrow">' if narrow else "<table>"
    return (f"{tag}\n<thead>{_head_row(headers)}</thead>\n<tbody>\n{_body_rows(rows)}\n"
            "</tbody>\n</table>")


def _head_row(headers: Sequence[str]) -> str:
    """A header starting with `#` is a number column: right-aligned, the `#` dropped."""
    return "<tr>" + "".join(f'<th class="n">{esc(h[1:])}</th>' if h.startswith("#") else
                            f"<th>{esc(h)}</th>" for h in headers) + "</tr>"


def _body_rows(rows: Iterable[Sequence[str]]) -> str:
    """`rows` hold cell HTML, already escaped; a cell starting with `<td` is used as is."""
    return "\n".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row)
                     + "</tr>" for row in rows)


def _num(n: int) -> str:
    return f'<td class="n">{n:,}</td>'


def _num_cell(text: str) -> str:
    return f'<td class="n">{esc(text)}</td>'


def _time_cell(ns: int) -> str:
    return f'<td class="t" title="{rfc3339(ns)}">{clock_time(ns)}</td>'


def _output_cell(output: str) -> str:
    if len(output) <= OUTPUT_CHARS:
        return f'<td class="o">{esc(output)}</td>'
    cut = len(output) - OUTPUT_CHARS
    return (f'<td class="o">{esc(output[:OUTPUT_CHARS])}<span class="more">… {cut:,} more '
            "characters</span></td>")


def _badge(priority: str) -> str:
    known = f" p-{priority}" if priority in PRIORITY_COLORS else ""
    return f'<span class="p{known}">{esc(priority)}</span>'


def _more(count: int, what: str) -> str:
    return f'<p class="more">… {count:,} more {esc(what)}</p>' if count > 0 else ""


def _version() -> str:
    try:
        return version("sysreplay")
    except PackageNotFoundError:
        return "(version unknown)"
