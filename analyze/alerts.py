"""Alerts: what `analyze run` reports for each match, in Falco's shapes.

The engines return matches (`Match`, or a `MatchTable` of evt.nums and rule indexes).
`alert_chunks` turns them into `Alert` values a chunk at a time: one DuckDB query per chunk
fetches the matched events (the chunk's evt.nums registered as an Arrow table), and each rule's
output is filled the way Falco's formatter does. `build_alerts` is all the chunks as one list,
for small runs. `alert_json` gives Falco's JSON alert and `alert_line` its text line.

How values print (libsinsp's formatter, as far as an offline replay can follow it):
- a field the event lacks prints `<NA>` and is null in `output_fields`;
- numbers print plain, booleans `true`/`false`, I/O buffers with non-printable bytes as `.`;
- `%evt.time` prints `HH:MM:SS.nnnnnnnnn` and is ns since the epoch in `output_fields`, like
  Falco. Falco uses the machine's local zone; a replay uses UTC, so its output does not depend on
  where it runs. `%evt.time.s`, `%evt.time.iso8601`, `%evt.datetime`, `%evt.datetime.s` and
  `%evt.rawtime` are derived from the same column;
- `%proc.aname[2]` is element 2 of the ancestor list (0 = the process); a bare `%proc.aname`
  prints the ancestors from 1 up, comma-separated;
- `%proc.env[NAME]` reads NAME from `proc.env`; `%evt.arg.NAME` without a column of its own is
  read from `evt.args` (best effort: an argument whose value holds ` word=` is cut there);
- `%container.info` is replaced, before anything else, by
  `container_id=%container.id container_name=%container.name` (Falco 0.35-0.40's default);
- any other field with no trace column (`fd.ip`, `container.mount.dest[...]`, ...) is `<NA>`.

`output_fields` holds every `%field` of the output, plus `evt.time` (Falco's own prefix field) and
`evt.num` (always: it ties the alert to the event for `analyze query`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from analyze.engine_api import CompiledRule, Match, MatchTable
from analyze.output_format import OutputToken, output_tokens, render_output
from analyze.query import VIEW, connect
from analyze.ruleset import LoadedRule
from analyze.trace_reader import Trace
from schemas.trace import ANCESTOR_COLUMNS, Column, TraceError, column_for_field

CONTAINER_INFO = "%container.info"
CONTAINER_INFO_FMT = "container_id=%container.id container_name=%container.name"
# Fetched for every alert, whatever the output says: the report groups alerts by them.
CONTEXT_COLUMNS = ("evt.num", "evt.time", "proc.name", "container.id", "container.name",
                   "container.image")
# Alerts built per query (see alert_chunks): about 30 MB of rows and alerts at a time.
ALERT_CHUNK = 16_384
CHUNK_TABLE = "chunk_matches"  # a chunk's evt.nums, registered on the connection as Arrow
REPEATED_EVENTS = ("The trace files repeat event numbers, so they are not segments of one "
                   "capture; run them one at a time.")
TIME_FIELDS = frozenset({"evt.time", "evt.time.s", "evt.time.iso8601", "evt.datetime",
                         "evt.datetime.s", "evt.rawtime"})

JsonValue = int | bool | str | None


class AlertBuildError(TraceError):
    """The matched events could not be read back from the trace."""


@dataclass(frozen=True)
class Alert:
    """One rule firing on one event, with everything Falco puts in its alert."""

    evt_num: int
    time_ns: int
    rule: str
    priority: str
    source: str
    tags: tuple[str, ...]  # sorted
    hostname: str
    output: str  # the rule's output filled in, without Falco's "time: priority" prefix
    output_fields: Mapping[str, JsonValue]  # sorted by key
    proc_name: str | None
    container_id: str | None
    container_name: str | None
    container_image: str | None


def expand_container_info(output: str) -> str:
    return output.replace(CONTAINER_INFO, CONTAINER_INFO_FMT)


def needed_columns(rules: Iterable[CompiledRule], available: Sequence[str]) -> list[str]:
    """The trace columns the rules' outputs and the report read, in trace order."""
    wanted = set(CONTEXT_COLUMNS)
    for compiled in rules:
        for tok in output_tokens(expand_container_info(compiled.rule.output)):
            wanted.update(_source_columns(tok))
    return [c for c in available if c in wanted]


def _source_columns(tok: OutputToken) -> set[str]:
    if tok.name in TIME_FIELDS:
        return {"evt.time"}
    if tok.name == "proc.env":
        return {"proc.env"}
    column = column_for_field(tok.name)
    if column is not None:
        return {column.name}
    return {"evt.args"} if tok.name.startswith("evt.arg.") else set()


def alert_chunks(trace: Trace, rules: Sequence[CompiledRule], matches: MatchTable,
                 hostname: str, *, size: int = ALERT_CHUNK) -> Iterator[list[Alert]]:
    """The alerts of `matches`, in match order, `size` at a time.

    One query per chunk fetches its events: memory holds one chunk's rows and alerts, however
    many matches there are, and the chunk's evt.num range lets DuckDB skip the row groups
    outside it (a trace's row groups hold increasing ranges of evt.num), so the chunks together
    read the trace about once."""
    plans = {r.index: OutputPlan.of(r.rule) for r in rules}
    columns = needed_columns(rules, trace_columns(trace))
    con = connect(trace)
    try:
        for start in range(0, len(matches), size):
            part = matches.slice(start, start + size)
            rows = fetch_rows(con, part.evt_nums, columns)
            yield [make_alert(plans[index], _row(rows, num), hostname)
                   for num, index in part.pairs()]
    finally:
        con.close()


def build_alerts(trace: Trace, rules: Sequence[CompiledRule],
                 matches: Sequence[Match] | MatchTable, hostname: str) -> list[Alert]:
    """An Alert per match, in match order (event, then rule definition order)."""
    table = matches if isinstance(matches, MatchTable) else MatchTable.of(matches)
    return [alert for chunk in alert_chunks(trace, rules, table, hostname) for alert in chunk]


def fetch_rows(con: duckdb.DuckDBPyConnection, evt_nums: pa.Array,
               columns: Sequence[str]) -> dict[int, dict[str, Any]]:
    """The rows of the events `evt_nums` on `con` (a `query.connect` of the trace), keyed by
    evt.num; evt.time as int ns."""
    if len(evt_nums) == 0:
        return {}
    low, high = pc.min_max(evt_nums).values()
    select = ", ".join(_select_item(c) for c in columns)
    sql = (f'SELECT {select} FROM {VIEW} WHERE "evt.num" BETWEEN ? AND ? '
           f'AND "evt.num" IN (SELECT evt_num FROM {CHUNK_TABLE})')
    try:
        con.register(CHUNK_TABLE, pa.table({"evt_num": evt_nums}))
        cursor = con.execute(sql, [low.as_py(), high.as_py()])
        names = [d[0] for d in cursor.description or ()]
        records = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except duckdb.Error as exc:
        raise AlertBuildError(f"Could not read the matched events back from the trace "
                              f"({str(exc).strip().splitlines()[0]}).") from None
    rows = {int(r["evt.num"]): r for r in records}
    if len(rows) != len(records):
        raise AlertBuildError(REPEATED_EVENTS)
    return rows


def _row(rows: Mapping[int, dict[str, Any]], evt_num: int) -> dict[str, Any]:
    row = rows.get(evt_num)
    if row is None:
        raise AlertBuildError(missing_event(evt_num))
    return row


def missing_event(evt_num: int) -> str:
    return f"The engine matched event {evt_num}, which the trace does not hold."


def _select_item(column: str) -> str:
    quoted = '"' + column.replace('"', '""') + '"'
    return f"epoch_ns({quoted}) AS {quoted}" if column == "evt.time" else quoted


def trace_columns(trace: Trace) -> list[str]:
    """The columns of the trace's files (their union, first seen first)."""
    names: dict[str, None] = {}
    for f in trace.files:
        names.update(dict.fromkeys(f.columns))
    return list(names)


@dataclass(frozen=True)
class OutputPlan:
    """A rule and its output with `%container.info` expanded and the tokens found, once per
    rule rather than once per alert."""

    rule: LoadedRule
    output: str
    tokens: tuple[OutputToken, ...]

    @staticmethod
    def of(rule: LoadedRule) -> OutputPlan:
        output = expand_container_info(rule.output)
        return OutputPlan(rule, output, tuple(output_tokens(output)))


def make_alert(plan: OutputPlan, row: Mapping[str, Any], hostname: str) -> Alert:
    """Fill one rule's output from one event's row."""
    rule = plan.rule
    values: dict[str, JsonValue] = {}
    for tok in plan.tokens:
        values[tok.text] = field_value(tok.name, tok.arg, row)
    text = render_output(plan.output, {k: field_text(k, v) for k, v in values.items()})
    fields = {**values, "evt.num": int(row["evt.num"]), "evt.time": int(row["evt.time"])}
    return Alert(
        evt_num=int(row["evt.num"]), time_ns=int(row["evt.time"]), rule=rule.name,
        priority=rule.priority, source=rule.source, tags=tuple(sorted(rule.tags)),
        hostname=hostname, output=text, output_fields=dict(sorted(fields.items())),
        proc_name=row.get("proc.name"), container_id=row.get("container.id"),
        container_name=row.get("container.name"), container_image=row.get("container.image"),
    )


# ---- field values -------------------------------------------------------------------------------


def field_value(name: str, arg: str | None, row: Mapping[str, Any]) -> JsonValue:
    """A field's value for `output_fields`: int, bool, str or None (missing)."""
    if name in TIME_FIELDS:
        return _time_value(name, row.get("evt.time"))
    if name == "proc.env":
        return _env_value(row.get("proc.env"), arg)
    column = _column(name)
    if column is None:
        return _arg_from_args(name, row.get("evt.args")) if name.startswith("evt.arg.") else None
    value = row.get(column.name)
    if column.name in ANCESTOR_COLUMNS:
        return _ancestor_value(value, arg)
    return _scalar(value)


def field_text(key: str, value: JsonValue) -> str | None:
    """How Falco prints a value inside the output text (None prints as <NA>)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if key == "evt.time" and isinstance(value, int):
        return clock_time(value)
    return str(value)


@cache
def _column(name: str) -> Column | None:
    return column_for_field(name)


def _scalar(value: Any) -> JsonValue:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, bytes):
        return "".join(chr(b) if 32 <= b < 127 else "." for b in value)
    return str(value)


def _ancestor_value(value: Any, arg: str | None) -> JsonValue:
    items = list(value or [])
    if arg is None:
        rest = [str(v) for v in items[1:] if v is not None]
        return ",".join(rest) if rest else None
    try:
        index = int(arg)
    except ValueError:
        return None
    return _scalar(items[index]) if 0 <= index < len(items) else None


def _env_value(env: Any, name: str | None) -> JsonValue:
    if not isinstance(env, str):
        return None
    if name is None:
        return env
    # NAME=value pairs are space-separated, and values may hold spaces: a pair starts where a
    # space is followed by WORD=.
    for m in re.finditer(r"(?:^| )([A-Za-z_][A-Za-z0-9_]*)=(.*?)(?= [A-Za-z_][A-Za-z0-9_]*=|$)",
                         env):
        if m.group(1) == name:
            return m.group(2)
    return None


def _arg_from_args(name: str, args: Any) -> JsonValue:
    if not isinstance(args, str):
        return None
    wanted = name[len("evt.arg."):]
    pattern = rf"(?:^| ){re.escape(wanted)}=(.*?)(?= [A-Za-z_][A-Za-z0-9_]*=|\s*$)"
    m = re.search(pattern, args)
    return m.group(1) if m else None


def _time_value(name: str, ns: Any) -> JsonValue:
    if ns is None:
        return None
    ns = int(ns)
    if name in ("evt.time", "evt.rawtime"):
        return ns
    stamp = _utc(ns)
    frac = f".{ns % 1_000_000_000:09d}"
    if name == "evt.time.s":
        return stamp.strftime("%H:%M:%S")
    if name == "evt.datetime":
        return stamp.strftime("%Y-%m-%d %H:%M:%S") + frac
    if name == "evt.datetime.s":
        return stamp.strftime("%Y-%m-%d %H:%M:%S")
    return rfc3339(ns)  # evt.time.iso8601


def _utc(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC)


def clock_time(ns: int) -> str:
    """`HH:MM:SS.nnnnnnnnn` (UTC): Falco's %evt.time."""
    return _second(ns // 1_000_000_000, "%H:%M:%S") + f".{ns % 1_000_000_000:09d}"


def rfc3339(ns: int) -> str:
    """`2024-01-01T03:12:00.123456789Z`: Falco's JSON `time`."""
    return _second(ns // 1_000_000_000, "%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


@lru_cache(maxsize=1024)
def _second(seconds: int, fmt: str) -> str:
    """A whole second (UTC) in `fmt`: each alert prints its time twice or more, and alerts
    come many to a second, so each second is formatted once (a tenth of a noisy run's time)."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime(fmt)


# ---- Falco's shapes -----------------------------------------------------------------------------


def alert_line(alert: Alert) -> str:
    """Falco's text alert: `03:12:00.123456789: Warning <output>`."""
    return f"{clock_time(alert.time_ns)}: {alert.priority} {alert.output}"


def alert_json(alert: Alert) -> dict[str, Any]:
    """Falco's JSON alert (keys in Falco's order, which is alphabetical)."""
    return {
        "hostname": alert.hostname,
        "output": alert_line(alert),
        "output_fields": dict(alert.output_fields),
        "priority": alert.priority,
        "rule": alert.rule,
        "source": alert.source,
        "tags": list(alert.tags),
        "time": rfc3339(alert.time_ns),
    }
