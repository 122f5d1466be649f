"""`analyze run`: replay a trace through Falco rules and collect the alerts.

The steps, each a function: open the trace (footers only), load and check the rules, select the
ones that run (`engine_api.selected_rules`: priority, tags, availability), resolve the time
window, run one engine, keep its matches compact (`MatchTable`). `RunResult` holds all a report
needs; rendering lives in `analyze.run_render`.

Memory does not grow with the alerts: `RunResult.alerts` is a `MatchedAlerts`, a sequence that
builds alerts from the matches when read, a chunk at a time, and counts them for the report with
DuckDB (`RunResult.stats`). Writers iterate it; reports slice the first few.

A rule the chosen engine cannot run does not stop the run: it is left out and listed with the
reason (`RunResult.engine_skipped`). An engine that can skip rules itself (the replay engine,
`skip_errors`) is asked to; for the others `analyze.engine_support` finds those rules first.
Rules reading fields no trace records run (their checks on those fields are false) and are
listed as warnings (`RunResult.engine_warnings`).

Engines are found by name in `ENGINE_MODULES` and imported only when asked for, so the CLI starts
fast and a build lacking one engine still runs the other. `auto` picks the first engine of
`AUTO_ORDER` that is present: the faster first, as measured (see AUTO_ORDER).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import inspect
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Protocol, TextIO, runtime_checkable

from analyze.alert_stats import TIMELINE_SLICES, AlertStats, alert_stats
from analyze.alerts import Alert
from analyze.engine_api import (
    CompiledRule,
    Engine,
    MatchTable,
    RunOptions,
    Skipped,
    TableEngine,
    selected_rules,
)
from analyze.engine_support import missing_field_warnings, runnable
from analyze.errors import RuleWarning
from analyze.matched_alerts import MatchedAlerts
from analyze.query import VIEW, connect
from analyze.resolve import load_rules
from analyze.trace_reader import Trace, TraceInfo, open_trace

ENGINE_MODULES = {"sql": "analyze.sql_engine", "replay": "analyze.replay"}
# Measured with falco_rules.yaml + rules/ (44 rules, bench/bench_engines.py): on 10M events the
# SQL engine ran at 9.2M events/s and the replay evaluator at 4.6M; on the 144k-event k8s capture
# the whole command takes 0.7 s with SQL, 0.5 s with replay (DuckDB's fixed costs: connecting,
# planning the rules). So SQL first, as the issue asks: the faster where speed matters.
AUTO_ORDER = ("sql", "replay")
ENGINE_CHOICES = ("auto", *ENGINE_MODULES)

# Exit statuses of `analyze run` (1 is every user error; click uses 2 for usage errors).
EXIT_NO_ALERTS = 0
EXIT_ALERTS = 3


class EngineUnavailableError(ValueError):
    """The engine asked for is not part of this build."""


@dataclass(frozen=True)
class RunRequest:
    """What `analyze run` was asked to do; `since`/`until` are still text (see parse_time)."""

    traces: tuple[str, ...]
    rule_paths: tuple[str, ...]
    engine: str = "auto"
    options: RunOptions = field(default_factory=RunOptions)
    since: str | None = None
    until: str | None = None


@dataclass(frozen=True)
class RunResult:
    """Everything the report shows about one run."""

    info: TraceInfo
    rule_files: tuple[str, ...]
    engine: str
    options: RunOptions
    window_start_ns: int | None  # the evt.time range analysed (trace range clipped to the window)
    window_end_ns: int | None
    events: int  # events in the window
    engine_seconds: float
    total_seconds: float
    rules_run: tuple[str, ...]
    skipped: tuple[Skipped, ...]  # left out by the selection: priority, tags, fields
    loader_warnings: int
    # In match order. From run_analysis a MatchedAlerts: read it by iterating (a chunk at a time)
    # or slicing, count it with `stats`; never turn it into a tuple.
    alerts: Sequence[Alert]
    engine_skipped: tuple[Skipped, ...] = ()  # selected, but the engine cannot run them
    engine_warnings: tuple[RuleWarning, ...] = ()  # rules reading fields no trace records

    @property
    def all_skipped(self) -> tuple[Skipped, ...]:
        return self.skipped + self.engine_skipped

    @property
    def events_per_second(self) -> float:
        return self.events / self.engine_seconds if self.engine_seconds > 0 else 0.0

    @property
    def alert_count(self) -> int:
        return len(self.alerts)

    @property
    def exit_code(self) -> int:
        return EXIT_ALERTS if self.alert_count else EXIT_NO_ALERTS

    def stats(self, slices: int = TIMELINE_SLICES) -> AlertStats:
        """The report's counts over every alert, the timeline cut into `slices` over the window."""
        return alert_stats(self.alerts, self.window_start_ns, self.window_end_ns, slices)


def run_analysis(request: RunRequest) -> RunResult:
    """Run the rules over the trace and build the alerts (raises user errors as exceptions)."""
    started = time.monotonic()
    trace = open_trace(request.traces)
    info = trace.info()
    ruleset = load_rules(request.rule_paths)
    since = parse_time(request.since, info, "--since")
    until = parse_time(request.until, info, "--until")
    if since is not None and until is not None and since > until:
        raise ValueError("--since is after --until: the time window is empty.")
    options = dataclasses.replace(request.options, since_ns=since, until_ns=until)
    rules, skipped = selected_rules(ruleset, options)
    engine = pick_engine(request.engine, skip_errors=True)
    ran = run_engine(engine, trace.paths, rules, options)
    alerts = MatchedAlerts(trace, ran.rules, ran.matches, _hostname(info))
    alerts.check()  # a matched event the trace lacks (or repeats) fails now, before any output
    start, end = _clip(info, since, until)
    return RunResult(
        info=info, rule_files=ruleset.files, engine=engine.name, options=options,
        window_start_ns=start, window_end_ns=end, events=_events_in(trace, info, since, until),
        engine_seconds=ran.seconds, total_seconds=time.monotonic() - started,
        rules_run=tuple(r.rule.name for r in ran.rules), skipped=tuple(skipped),
        loader_warnings=len(ruleset.warnings), alerts=alerts,
        engine_skipped=ran.skipped, engine_warnings=ran.warnings,
    )


@runtime_checkable
class SkippingEngine(Engine, Protocol):
    """An engine that leaves out the rules it cannot run and says which (see ReplayEngine)."""

    skip_errors: bool
    skipped: list[Skipped]
    warnings: list[RuleWarning]


@dataclass(frozen=True)
class EngineRun:
    """What one engine did: the rules it ran, their matches, and what it left out."""

    rules: tuple[CompiledRule, ...]
    matches: MatchTable
    seconds: float
    skipped: tuple[Skipped, ...]
    warnings: tuple[RuleWarning, ...]


def run_engine(engine: Engine, paths: Sequence[str | Path], rules: Sequence[CompiledRule],
               options: RunOptions) -> EngineRun:
    """Run `rules`, leaving out, with the reason, those the engine cannot run."""
    if not rules:
        return EngineRun((), MatchTable.of(()), 0.0, (), ())
    if isinstance(engine, SkippingEngine) and engine.skip_errors:
        matches, seconds = _timed(engine, paths, rules, options)
        left_out = {s.rule for s in engine.skipped}
        ran = tuple(r for r in rules if r.rule.name not in left_out)
        return EngineRun(ran, matches, seconds, tuple(engine.skipped), tuple(engine.warnings))
    kept, skipped = runnable(engine.name, rules)
    matches, seconds = _timed(engine, paths, kept, options)
    return EngineRun(tuple(kept), matches, seconds, tuple(skipped),
                     tuple(missing_field_warnings(kept)))


def _timed(engine: Engine, paths: Sequence[str | Path], rules: Sequence[CompiledRule],
           options: RunOptions) -> tuple[MatchTable, float]:
    """The engine's matches as a MatchTable (its own if it makes one), and its run time."""
    if not rules:
        return MatchTable.of(()), 0.0
    started = time.monotonic()
    if isinstance(engine, TableEngine):
        table = engine.run_table(paths, rules, options)
        return table, time.monotonic() - started
    matches = engine.run(paths, rules, options)
    seconds = time.monotonic() - started
    return MatchTable.of(matches), seconds  # the Match objects go when this returns


def _hostname(info: TraceInfo) -> str:
    return info.hostnames[0] if info.hostnames else ""


def _clip(info: TraceInfo, since: int | None, until: int | None) -> tuple[int | None, int | None]:
    start, end = info.capture_start_ns, info.capture_end_ns
    if since is not None:
        start = since if start is None else max(start, since)
    if until is not None:
        end = until if end is None else min(end, until)
    return start, end


def _events_in(trace: Trace, info: TraceInfo, since: int | None, until: int | None) -> int:
    """Events the engine looked at: the metadata count, or a count over the window."""
    if since is None and until is None:
        return info.events
    low = since if since is not None else -(2**63)
    high = until if until is not None else 2**63 - 1
    con = connect(trace)
    try:
        row = con.execute(
            f'SELECT count(*) FROM {VIEW} WHERE epoch_ns("evt.time") BETWEEN ? AND ?',
            [low, high],
        ).fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def rules_to_show(rule_paths: Sequence[str], names: Sequence[str] = (),
                  options: RunOptions | None = None) -> tuple[list[CompiledRule], list[Skipped]]:
    """`analyze sql`: the rules that would run (only `names` if given) and those skipped, the
    rules the SQL engine cannot run among them.

    A name that is no rule, or a rule that would not run, is an error saying why.
    """
    ruleset = load_rules(rule_paths)
    rules, skipped = selected_rules(ruleset, options or RunOptions())
    rules, unsupported = runnable("sql", rules)
    skipped += unsupported
    if not names:
        return rules, skipped
    reasons = {s.rule: s.reason for s in skipped}
    known = {r.name for r in ruleset.rules}
    for name in names:
        if name in reasons:
            raise ValueError(f"The rule {name!r} does not run: {reasons[name]}.")
        if name not in known:
            raise ValueError(f"No rule named {name!r} in {', '.join(ruleset.files)}.")
        if not any(r.rule.name == name for r in rules):
            raise ValueError(f"The rule {name!r} does not run: it is disabled.")
    return [r for r in rules if r.rule.name in names], []


# ---- engines ----------------------------------------------------------------------------------


def pick_engine(name: str, *, skip_errors: bool = False) -> Engine:
    """The engine called `name`, or with `auto` the first of AUTO_ORDER this build has."""
    if name != "auto":
        return load_engine(name, skip_errors=skip_errors)
    reasons = []
    for candidate in AUTO_ORDER:
        try:
            return load_engine(candidate, skip_errors=skip_errors)
        except EngineUnavailableError as exc:
            reasons.append(str(exc))
    raise EngineUnavailableError("No engine is available: " + " ".join(reasons))


def load_engine(name: str, *, skip_errors: bool = False) -> Engine:
    """Import the engine's module and instantiate its engine class (see `_engine_class`).

    With `skip_errors`, an engine class that takes `skip_errors` is made to leave out the rules
    it cannot run (listing them in `skipped`) rather than raise."""
    module_name = ENGINE_MODULES.get(name)
    if module_name is None:
        raise EngineUnavailableError(
            f"Unknown engine {name!r}; choose one of {', '.join(ENGINE_CHOICES)}."
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise EngineUnavailableError(
            f"The {name} engine ({module_name}) is not part of this build."
        ) from None
    cls = _engine_class(module, name)
    takes_skip = "skip_errors" in inspect.signature(cls).parameters
    engine: Engine = cls(skip_errors=True) if skip_errors and takes_skip else cls()
    return engine


def _engine_class(module: ModuleType, name: str) -> type:
    """The class defined in `module` with a `run` method and a `name`; `name` breaks ties."""
    found = [
        obj for obj in vars(module).values()
        if inspect.isclass(obj) and obj.__module__ == module.__name__
        and callable(getattr(obj, "run", None)) and isinstance(getattr(obj, "name", None), str)
    ]
    if len(found) > 1:
        found = [cls for cls in found if getattr(cls, "name", None) == name]
    if len(found) != 1:
        raise EngineUnavailableError(
            f"The {name} engine module {module.__name__} defines no single engine class."
        )
    return found[0]


# ---- times ------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d)")
_UNIT_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
            "d": 86400 * 10**9}
_ISO = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?"
)
TIME_HELP = (
    "an ISO time (2024-01-01T03:12:00.5Z; no zone means UTC), ns since the epoch "
    "(1704078720000000000), or an offset from the trace's first event (+30s, +1m30s, +250ms)"
)


def parse_time(text: str | None, info: TraceInfo, option: str) -> int | None:
    """`text` as ns since the epoch (see TIME_HELP); None stays None."""
    if text is None:
        return None
    text = text.strip()
    if text.startswith("+"):
        if info.capture_start_ns is None:
            raise ValueError(f"{option} {text}: the trace records no start time to count from.")
        return info.capture_start_ns + parse_duration(text[1:], option)
    if text.isdigit():
        return int(text)
    m = _ISO.fullmatch(text)
    if m is None:
        raise ValueError(f"{option} {text!r} is not a time: use {TIME_HELP}.")
    return _iso_ns(m, text, option)


def parse_duration(text: str, option: str) -> int:
    """`1m30s`, `250ms`, `1.5s` as ns."""
    parts = list(_DURATION.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        raise ValueError(
            f"{option} +{text}: not a duration; write e.g. +30s, +1m30s, +250ms (units ns, us, "
            "ms, s, m, h, d)."
        )
    total = sum(float(p.group(1)) * _UNIT_NS[p.group(2)] for p in parts)
    return round(total)


def _iso_ns(m: re.Match[str], text: str, option: str) -> int:
    base, frac, zone = m.group(1), m.group(2) or "", m.group(3) or "Z"
    zone = "+00:00" if zone == "Z" else zone
    try:
        stamp = dt.datetime.fromisoformat(base.replace(" ", "T") + zone)
    except ValueError as exc:
        raise ValueError(f"{option} {text!r} is not a valid time ({exc}).") from None
    return int(stamp.timestamp()) * 10**9 + int(frac.ljust(9, "0") or 0)


# ---- output -----------------------------------------------------------------------------------


def check_output_path(path: str | Path) -> None:
    """Fail before a long run, not after it, when `path` cannot be written."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"Cannot write {path}: the directory {parent} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"Cannot write {path}: the directory {parent} is not writable.")
    if path.is_dir():
        raise ValueError(f"Cannot write {path}: it is a directory.")


def write_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` so that it holds its old content or the new one, never a part."""
    with open_atomic(path) as out:
        out.write(text)


@contextmanager
def open_atomic(path: str | Path) -> Iterator[TextIO]:
    """A text file to write `path` through: a temporary file in the same directory, renamed over
    `path` when the block ends, removed if it raises. So the output can be written as it is
    made (a chunk of alerts at a time) and `path` still holds either its old content or the
    complete new one, never a partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yield out
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
