"""The SQL engine: DuckDB evaluates every rule in one query over the trace's Parquet files.

    engine = SqlEngine()
    rules, skipped = selected_rules(load_rules(paths), options)
    matches = engine.run(["trace.parquet"], rules, options)

`build_query` makes the statement; `sql_for_rules` shows it, values inlined, to people:
- each rule's condition is a boolean from `analyze.sql_translate`, evaluated only for the event
  types it can match (Falco's evt.type index, applied as the replay engine applies it: no
  restriction for a rule matching every type; a rule matching no type never runs);
- rules are grouped by those types, so each event tests one evt.type guard per group rather than
  one per rule, and a rule's own evt.type checks are decided by its group's types where they can
  be (`SqlGenerator.event_types`: `evt.type in (open, openat, openat2)` is true behind that guard);
- one scan, restricted to the time window and to the union of the rules' types, lists per event
  the positions of the rules that match; UNNEST keeps the events with some match:

      SELECT "evt.num" AS evt_num, unnest(list_concat(
          CASE WHEN <types of group 1> THEN list_concat(CASE WHEN <rule 0> THEN [0] END,
                                                        CASE WHEN <rule 1> THEN [1] END,
                                                        ...) END,
          CASE WHEN <types of group 2> THEN ... END, ...)) AS hit
      FROM events WHERE <window> AND "evt.type" IN (SELECT unnest(<union>))

  one row per (event, rule that matches it); the engine sorts them in Arrow (`MatchTable`), so
  no aggregate or sort in DuckDB holds every match;

  Each condition appears once in the statement: DuckDB plans it once, and evaluates it once per
  event of its types. (The earlier form, a WHERE over per-rule flags computed in a subquery, had
  DuckDB copy every condition into its filter, and tested every rule's types on every event.)

Decoding the ancestor LIST columns (proc.aname, ...) costs about as much as every other column a
rule set reads, and most events never get as far as an ancestor check. So `run` makes two passes:
the first with every check on those columns relaxed (true, or false under `not`: a superset of
the matches, see SqlGenerator.relax), exact for the rules that do not read them; the second, only
if rules that read them have candidates, runs those rules exactly on the candidate events.

What bounds the speed: the scan. DuckDB decodes a column 2048 rows at a time and skips only the
vectors in which no row passed the scan's filter, and each row group costs it a fixed price per
column. The writer orders the rows of each row group by event type (schemas.trace.
CLUSTERED_ORDER), so the 4.5% of events whose type some rule looks at (the bench's k8s trace)
sit side by side instead of in 79% of the vectors, and makes row groups of 128k rows. On the
bench's 10M events (the 44 stable and shipped rules, 43 columns read, a shared 2-core machine)
the run takes 0.66 s of CPU where the evt.num-ordered, 64k-row-group layout took 1.93 s; the
scan alone (the bench's `scan`, no rule evaluated) 0.47 s where it took 1.40 s. Of the scan,
~0.2 s decodes the 43 columns for the 453,600 events of the rules' types and ~0.1 s is the fixed
price of 77 row groups. The rest is the conditions, evaluated once per event of their types
(~0.2 s), and two fixed costs on one thread: opening the trace and defining the macros
(~0.07 s), planning the statement (~0.07 s).

Security: rule values are bound parameters, never SQL text; the connection comes from
`analyze.query.connect`, which leaves DuckDB able to read the trace's files and nothing else
(no other file, no network, no extension; configuration locked).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from analyze import ast
from analyze.engine_api import CompiledRule, MatchTable, RunFromTable, RunOptions
from analyze.errors import RuleError
from analyze.evttypes import matches_all
from analyze.query import VIEW, connect
from analyze.sql_translate import (
    MACROS,
    Params,
    SqlGenerator,
    SqlTranslateError,
    compact,
    inline_params,
    quote_ident,
)
from analyze.trace_reader import Trace, open_trace
from schemas.trace import ANCESTOR_COLUMNS

EVT_NUM = quote_ident("evt.num")
EVT_TYPE = quote_ident("evt.type")
EVT_TIME = quote_ident("evt.time")
# Columns the first pass does not read (see the module docstring).
DEFERRED = frozenset(ANCESTOR_COLUMNS)
# Past this many candidate events the second pass scans the window rather than look them up.
CANDIDATE_LOOKUP_MAX = 100_000


class SqlEngineError(RuleError):
    """A rule the SQL engine cannot translate or run; the message names the rule."""

    def __init__(self, rule: CompiledRule, why: str) -> None:
        super().__init__(f"the SQL engine cannot run rule '{rule.rule.name}': {why}",
                         source=rule.rule.origin, code="sql-unsupported")


@dataclass(frozen=True)
class RuleQuery:
    """A statement over `rules` yielding (evt_num, hit) pairs: `hit` is the position (in
    `rules`) of a rule that matches the event; for a relaxed rule, one that may match it."""

    sql: str
    params: tuple[object, ...]
    rules: tuple[CompiledRule, ...]
    relaxed: frozenset[int] = frozenset()  # positions of rules whose flag is only a candidate

    def inline(self) -> str:
        return inline_params(self.sql, self.params)


def build_query(rules: Sequence[CompiledRule], options: RunOptions, *,
                relax: frozenset[str] = frozenset(),
                events: Sequence[int] | None = None) -> RuleQuery:
    """One query over the `events` view yielding an (evt_num, hit) pair per event and rule that
    matches it. A rule reading a `relax` column is relaxed (see SqlGenerator.relax) and only
    sets `candidate`; `events` limits the scan to those evt.nums."""
    runnable = tuple(r for r in rules if r.evttypes)  # no event type: the rule never fires
    relaxed = frozenset(i for i, r in enumerate(runnable) if _reads(r, relax))
    generator = SqlGenerator(Params(), relax=relax, indent=4)
    lists = [_group_hits(generator, runnable, types, positions)
             for types, positions in _groups(runnable).items()]
    where = _where(generator, runnable, options, events)
    pad = "\n" + " " * 12
    each = f"list_concat({pad}{f',{pad}'.join(lists)})" if lists else "[]::INTEGER[]"
    # One row per (event, matching rule), unsorted: no aggregate holds every matching event
    # (a GROUP BY with a list per event took 1.3 GB for 10M matches); Arrow sorts the pairs.
    sql = (f"SELECT {EVT_NUM} AS evt_num, unnest({each}) AS hit\n"
           f"FROM {VIEW}\nWHERE {where}")
    statement = compact(sql, generator.params.values)
    return RuleQuery(statement.sql, statement.params, runnable, relaxed)


def _groups(rules: Sequence[CompiledRule]) -> dict[frozenset[str] | None, list[int]]:
    """Rule positions by the event types they can match (None: every type)."""
    groups: dict[frozenset[str] | None, list[int]] = {}
    for position, rule in enumerate(rules):
        types = None if matches_all(rule.evttypes) else frozenset(rule.evttypes)
        groups.setdefault(types, []).append(position)
    return groups


def _group_hits(generator: SqlGenerator, rules: Sequence[CompiledRule],
                types: frozenset[str] | None, positions: Sequence[int]) -> str:
    """The positions of the group's rules that match, for an event of the group's types (NULL
    for other events): the conditions are translated knowing those types."""
    generator.event_types = types
    try:
        cases = [f"-- r{i}: {json.dumps(rules[i].rule.name)}\n"
                 f"                CASE WHEN {_condition(generator, rules[i])} THEN [{i}] END"
                 for i in positions]
    finally:
        generator.event_types = None
    pad = "\n" + " " * 16
    found = f"list_concat({pad}{f',{pad}'.join(cases)})"
    if types is None:
        return found
    return f"CASE WHEN {generator.member(EVT_TYPE, sorted(types))} THEN {found} END"


def _condition(generator: SqlGenerator, rule: CompiledRule) -> str:
    assert rule.rule.ast is not None
    try:
        return generator.sql(rule.rule.ast)
    except SqlTranslateError as err:
        raise SqlEngineError(rule, str(err)) from None


def _where(generator: SqlGenerator, rules: Sequence[CompiledRule], options: RunOptions,
           events: Sequence[int] | None) -> str:
    """The time window, the event types any rule looks at, and the events asked for."""
    add = generator.params.add
    terms = []
    if options.since_ns is not None:
        terms.append(f"{EVT_TIME} >= make_timestamp_ns({add(options.since_ns)})")
    if options.until_ns is not None:
        terms.append(f"{EVT_TIME} <= make_timestamp_ns({add(options.until_ns)})")
    if rules and not any(matches_all(r.evttypes) for r in rules):
        # A semi join on one list: the fastest form measured (an IN list of constants becomes
        # a scan hint plus a join anyway; an OR chain or a regex cost more per event).
        types = tuple(sorted(frozenset().union(*(r.evttypes for r in rules))))
        terms.append(f"{EVT_TYPE} IN (SELECT unnest({add(types)}))")
    if events is not None and not events:
        terms.append("false")
    elif events is not None:
        # DuckDB pushes the looked-up values into the scan, which skips the other events.
        terms.append(f"{EVT_NUM} IN (SELECT unnest({add(tuple(events))}))")
    return " AND ".join(terms) or "true"


def sql_for_rules(rules: Sequence[CompiledRule], options: RunOptions | None = None) -> str:
    """The macros and the query that decides the matches of `rules`, values shown as escaped
    literals (`analyze sql`). The engine binds the values as parameters, and runs the query
    after a pre-pass that skips the ancestor columns (see the module docstring)."""
    query = build_query(rules, options or RunOptions())
    macros = ";\n".join(MACROS)
    return (f"-- macros the SQL engine defines on its connection\n{macros};\n\n"
            "-- the rules (values inlined for reading; the engine binds them as parameters)\n"
            f"{query.inline()};\n")


class SqlEngine(RunFromTable):
    """Runs rules as DuckDB queries over the trace's Parquet files (see the module docstring)."""

    name = "sql"

    def run_table(self, trace: Sequence[str | Path], rules: Sequence[CompiledRule],
                  options: RunOptions) -> MatchTable:
        """`run`'s matches as Arrow arrays: no Python object per match, however many."""
        first = build_query(rules, options, relax=DEFERRED)  # translation errors before I/O
        if not first.rules:
            return MatchTable.of(())
        con = _connect(open_trace(trace))
        try:
            found, candidates = _matches(con, first)
            parts = [found]
            if len(candidates):
                deferred = [first.rules[i] for i in sorted(first.relaxed)]
                lookup = len(candidates) <= CANDIDATE_LOOKUP_MAX
                events = candidates.to_pylist() if lookup else None
                second = build_query(deferred, options, events=events)
                parts.append(_matches(con, second)[0])
        finally:
            con.close()
        table = MatchTable(pa.concat_arrays([p.evt_nums for p in parts]),
                           pa.concat_arrays([p.rule_indexes for p in parts]))
        return table.ordered(options.rule_matching)


def _reads(rule: CompiledRule, columns: frozenset[str]) -> bool:
    assert rule.rule.ast is not None
    return any(f.name in columns for f in ast.fields_of(rule.rule.ast))


def install_macros(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Create the translator's SQL macros on `con`; close it if that fails."""
    try:
        for macro in MACROS:
            con.execute(macro)
    except duckdb.Error:
        con.close()
        raise
    return con


def _connect(trace: Trace) -> duckdb.DuckDBPyConnection:
    return install_macros(connect(trace))


def _matches(con: duckdb.DuckDBPyConnection, query: RuleQuery) -> tuple[MatchTable, pa.Array]:
    """The exact rules' matches, and the events some relaxed rule may match (sorted)."""
    try:
        # execute(), not sql(): a relation binds the statement once to learn its columns and
        # again to run it, and planning the rules is a fixed cost of every run. DuckDB warns
        # that Arrow from execute() copies the rows: they are the matches only (two integers
        # each), which costs less than binding the statement twice.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Arrow output on a DB-API result", UserWarning)
            rows: pa.Table = con.execute(query.sql, list(query.params)).to_arrow_table()
    except duckdb.Error as exc:
        raise _culprit(con, query, exc) from None
    nums = rows.column("evt_num").combine_chunks().cast(pa.int64())
    hits = rows.column("hit").combine_chunks().cast(pa.int32())
    relaxed = pc.is_in(hits, pa.array(sorted(query.relaxed), pa.int32()))
    exact = pc.invert(relaxed)
    # Positions index query.rules; matches carry the rules' definition indexes.
    rule_index = pa.array([r.index for r in query.rules], pa.int32())
    found = MatchTable(nums.filter(exact), rule_index.take(hits.filter(exact)))
    candidates = pc.unique(nums.filter(relaxed)).sort()
    return found, candidates


def _culprit(con: duckdb.DuckDBPyConnection, query: RuleQuery, exc: duckdb.Error) -> Exception:
    """The error to report for a failed query: the first rule that fails on its own (an
    invalid RE2 pattern, say), else DuckDB's error."""
    for rule in query.rules:
        alone = build_query([rule], RunOptions())
        try:
            con.execute(alone.sql + " LIMIT 1", list(alone.params)).fetchall()
        except duckdb.Error as err:
            return SqlEngineError(rule, _first_line(err))
    return RuntimeError(f"the SQL engine's query failed: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
