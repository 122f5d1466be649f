"""The replay engine: stream a trace through compiled rules, one row group at a time.

`ReplayEngine` implements `analyze.engine_api.Engine`. Each rule's condition is compiled once
(`analyze.replay_compile`); a trace is then read one Parquet row group at a time, in file order
(row groups hold increasing evt.num ranges; rows inside one are clustered by event type, which
no rule can tell: each event is evaluated on its own), so memory stays bounded by a row group of
the columns the rules touch:
- columns are decoded on first use (a rule whose first check already fails on a row group never
  pays for its other columns); string lists (`proc.aname`, ...) are read as dictionaries;
- Falco's event-type indexing: rules are grouped by the set of evt.type values they can match, and
  each group sees only the rows of those types (one `is_in` on the evt.type dictionary per group);
- `since_ns`/`until_ns` skip whole row groups using the Parquet statistics of evt.time, then rows.
Matches are kept as Arrow arrays (`MatchTable`), sorted by (evt.num, rule index) and reduced as
`apply_rule_matching` does.

Fields the trace does not record make their checks false; each rule that uses one gets a warning
(`ReplayEngine.warnings`). A rule the engine cannot run raises RuleError from `compile`, or is
reported as `Skipped` with `compile(..., skip_errors=True)`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analyze.engine_api import CompiledRule, MatchTable, RunFromTable, RunOptions, Skipped
from analyze.errors import RuleError, RuleWarning
from analyze.evttypes import matches_all
from analyze.replay_compile import CompiledCondition, Node, compile_condition
from analyze.trace_reader import TraceFormatError, open_trace
from schemas.elision import ELIDED, ELIDED_COLUMNS, NEEDS, expand_column
from schemas.trace import ANCESTOR_COLUMNS, COLUMN_BY_NAME

MISSING_FIELD_WARNING = "field-not-in-trace"
_FALSE = pa.scalar(False)
_NO_ROWS = pa.array([], pa.uint64())


# ---- runtime: the rows compiled conditions see -------------------------------------------------


class Frame:
    """One batch of events: columns loaded on first use, and per-batch caches."""

    def __init__(self, num_rows: int, load: Callable[[str], Any]) -> None:
        self.num_rows = num_rows
        self._load = load
        self._columns: dict[str, Any] = {}
        self.memo: dict[Hashable, Any] = {}

    @property
    def loaded(self) -> set[str]:
        """The columns read so far."""
        return set(self._columns)

    def column(self, name: str) -> Any:
        """The whole column (None when the batch lacks it), in the form evaluators expect."""
        if name not in self._columns:
            self._columns[name] = _normalized(name, self._load(name))
        return self._columns[name]

    def cached(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = compute()
        return hit


def _normalized(name: str, array: Any) -> Any:
    # Dictionary columns arrive as dictionaries from our writer; anything else (hand-built
    # tables) is encoded once here, so the per-batch dictionary invariant holds for all.
    if array is None:
        return None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    col = COLUMN_BY_NAME.get(name)
    want = col.arrow if col is not None else None
    if name in ANCESTOR_COLUMNS and pa.types.is_string(array.type.value_type):
        return array.cast(pa.list_(pa.dictionary(pa.int32(), pa.string())))
    if want is not None and pa.types.is_dictionary(want) and not pa.types.is_dictionary(
            array.type):
        return pc.dictionary_encode(array)
    return array


class View:
    """Some rows of a frame (`rows` indexes the frame; None = all) and results computed on them."""

    def __init__(self, frame: Frame, rows: Any = None) -> None:
        self.frame = frame
        self.rows = rows
        self.length = frame.num_rows if rows is None else len(rows)
        self._columns: dict[str, Any] = {}
        self._memo: dict[str, Any] = {}
        self._narrowed: dict[tuple[str, ...], View] = {}

    def column(self, name: str) -> Any:
        """The column restricted to these rows; all-null when the batch lacks it."""
        if name not in self._columns:
            full = self.frame.column(name)
            if full is None:
                col = COLUMN_BY_NAME.get(name)
                full = pa.nulls(self.frame.num_rows, col.arrow if col else pa.string())
            self._columns[name] = full if self.rows is None else full.take(self.rows)
        return self._columns[name]

    def run(self, node: Node) -> Any:
        hit = self._memo.get(node.key)
        if hit is None:
            hit = self._memo[node.key] = node.fn(self)
        return hit

    def narrow(self, key: tuple[str, ...], mask: Any) -> View:
        """The rows `mask` selects; `key` names the mask (the rows an and/or prefix leaves
        undecided), so rules sharing that prefix share the narrowed view and its results."""
        hit = self._narrowed.get(key)
        if hit is None:
            rows = pc.indices_nonzero(mask) if self.rows is None else self.rows.filter(mask)
            hit = self._narrowed[key] = View(self.frame, rows)
        return hit


# ---- the plan: compiled rules grouped by the event types they see -----------------------------


@dataclass(frozen=True)
class ReplayRule:
    rule: CompiledRule
    condition: CompiledCondition


@dataclass(frozen=True)
class TypeGroup:
    """Rules that can match the same evt.type values (None: every type)."""

    types: frozenset[str] | None
    rules: tuple[ReplayRule, ...]

    @property
    def value_set(self) -> Any:
        return None if self.types is None else _names(self.types)


@dataclass(frozen=True)
class ReplayPlan:
    """Compiled rules grouped by event types, and what compiling them reported."""

    groups: tuple[TypeGroup, ...]
    skipped: tuple[Skipped, ...]  # rules the engine cannot run (compile with skip_errors)
    warnings: tuple[RuleWarning, ...]  # fields the trace does not record, once per rule

    @property
    def rules(self) -> list[ReplayRule]:
        return sorted((r for g in self.groups for r in g.rules), key=lambda r: r.rule.index)

    @property
    def columns(self) -> frozenset[str]:
        """The columns the rules may read."""
        return frozenset().union(*(r.condition.columns for g in self.groups for r in g.rules))

    @property
    def value_set(self) -> Any:
        """Every evt.type some rule can match (None: some rule matches every type)."""
        if any(g.types is None for g in self.groups):
            return None
        return _names(frozenset().union(*(g.types or () for g in self.groups)))


@cache
def _names(types: frozenset[str]) -> Any:
    return pa.array(sorted(types), pa.string())


def compile_rules(rules: Sequence[CompiledRule], *, skip_errors: bool = False) -> ReplayPlan:
    """Compile every rule; a rule that cannot run raises RuleError, or is skipped with the
    reason when `skip_errors`."""
    compiled: list[ReplayRule] = []
    skipped: list[Skipped] = []
    warnings: list[RuleWarning] = []
    for rule in rules:
        assert rule.rule.ast is not None
        try:
            condition = compile_condition(rule.rule.ast, rule.rule.name)
        except RuleError as err:
            if not skip_errors:
                raise err.with_source(rule.rule.origin) from None
            skipped.append(Skipped(rule.rule.name, err.message))
            continue
        if condition.missing_fields:
            fields = ", ".join(condition.missing_fields)
            warnings.append(RuleWarning(
                MISSING_FIELD_WARNING,
                f"rule '{rule.rule.name}': traces do not record {fields}; "
                "checks on it are false", rule.rule.origin))
        if rule.evttypes:  # a rule that matches no event type never runs
            compiled.append(ReplayRule(rule, condition))
    return ReplayPlan(_group(compiled), tuple(skipped), tuple(warnings))


def _group(rules: list[ReplayRule]) -> tuple[TypeGroup, ...]:
    groups: dict[frozenset[str] | None, list[ReplayRule]] = {}
    for r in rules:
        types = None if matches_all(r.rule.evttypes) else r.rule.evttypes
        groups.setdefault(types, []).append(r)
    return tuple(TypeGroup(types, tuple(members)) for types, members in groups.items())


# ---- the engine --------------------------------------------------------------------------------


class ReplayEngine(RunFromTable):
    """Replays a trace through rules in-process, with vectorized Arrow evaluation.

        rules, skipped = selected_rules(load_rules(paths), options)
        matches = ReplayEngine().run(["trace.parquet"], rules, options)

    A rule the engine cannot run raises RuleError naming it; with `skip_errors=True` it is left
    out and listed in `skipped` instead. After a run, `warnings` holds one warning per rule that
    reads fields the trace does not record. To compile once and replay several traces:
    `plan = engine.compile(rules)`, then `engine.execute(plan, trace, options)` (a MatchTable).
    """

    name = "replay"

    def __init__(self, *, skip_errors: bool = False) -> None:
        self.skip_errors = skip_errors
        self.warnings: list[RuleWarning] = []
        self.skipped: list[Skipped] = []

    def compile(self, rules: Sequence[CompiledRule], *,
                skip_errors: bool | None = None) -> ReplayPlan:
        skip = self.skip_errors if skip_errors is None else skip_errors
        plan = compile_rules(rules, skip_errors=skip)
        self.warnings, self.skipped = list(plan.warnings), list(plan.skipped)
        return plan

    def run_table(self, trace: Sequence[str | Path], rules: Sequence[CompiledRule],
                  options: RunOptions) -> MatchTable:
        """`run`'s matches as Arrow arrays: no Python object per match, however many."""
        return self.execute(self.compile(rules), trace, options)

    def execute(self, plan: ReplayPlan, trace: Sequence[str | Path] | str | Path,
                options: RunOptions) -> MatchTable:
        parts: list[MatchTable] = []
        if plan.groups:
            likely = plan.columns | {"evt.type", "evt.num"}
            for path in open_trace(trace).paths:
                for frame in _frames(path, options, likely):
                    parts.extend(_scan(frame, plan, options))
        if not parts:
            return MatchTable.of(())
        table = MatchTable(pa.concat_arrays([p.evt_nums for p in parts]),
                           pa.concat_arrays([p.rule_indexes for p in parts]))
        return table.ordered(options.rule_matching)


def _frames(path: Path, options: RunOptions, likely: frozenset[str]) -> Iterator[Frame]:
    """The row groups of one trace file that may hold events of the time window.

    While the caller evaluates one row group, a background thread decodes the next one's
    columns (decoding releases the GIL, so the two overlap): at first the columns the rules may
    read (`likely`), then those the earlier row groups did read. Anything else is decoded on
    first use.
    """
    leaves = pq.ParquetFile(path).schema
    paths = [leaves.column(i).path for i in range(len(leaves))]
    # Ancestor lists hold few distinct names: dictionaries decode several times faster.
    as_dict = [p for p in paths if p.split(".list.")[0] in ANCESTOR_COLUMNS]
    parquet = pq.ParquetFile(path, read_dictionary=as_dict)
    names = set(parquet.schema_arrow.names)
    meta = parquet.metadata
    groups = [i for i in range(meta.num_row_groups) if meta.row_group(i).num_rows
              and _may_hold(meta.row_group(i), paths, options)]
    # A second reader: one Parquet reader is not used from two threads at once.
    background = pq.ParquetFile(path, read_dictionary=as_dict)
    # An elided column is decoded with what puts its values back (schemas.elision).
    wanted, read = _with_needs(likely), set[str]()
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead: dict[int, Future[dict[str, Any]]] = {}
        for pos, index in enumerate(groups):
            for nxt in groups[pos:pos + 2]:
                if nxt not in ahead and wanted & names:
                    ahead[nxt] = pool.submit(_decode, background, nxt, sorted(wanted & names))
            frame = Frame(meta.row_group(index).num_rows,
                          _loader(path, parquet, index, names, ahead.pop(index, None)))
            yield frame
            read |= frame.loaded
            wanted = _with_needs(read)


def _with_needs(columns: Iterable[str]) -> set[str]:
    return {need for c in columns for need in NEEDS.get(c, (c,))}


def _decode(parquet: pq.ParquetFile, index: int, names: list[str]) -> dict[str, Any]:
    table = parquet.read_row_group(index, columns=names, use_threads=True)
    return dict(zip(table.column_names, table.columns, strict=True))


def _loader(path: Path, parquet: pq.ParquetFile, index: int, names: set[str],
            ahead: Future[dict[str, Any]] | None) -> Callable[[str], Any]:
    def fetch(name: str) -> Any:
        if name not in names:
            return None
        try:
            if ahead is not None:
                decoded = ahead.result()
                if name in decoded:
                    return decoded[name]
            return parquet.read_row_group(index, columns=[name], use_threads=False).column(0)
        except (pa.ArrowException, OSError) as exc:
            raise TraceFormatError(
                f"{path}: row group {index} cannot be read ({exc}); the file is damaged."
            ) from None

    def load(name: str) -> Any:
        stored = fetch(name)
        if stored is None or name not in ELIDED_COLUMNS or ELIDED not in names:
            return stored
        sources = {s: fetch(s) for s in NEEDS[name][2:]}
        if any(v is None for v in sources.values()):
            return stored
        bits = fetch(ELIDED)
        return expand_column(name, _chunk(stored), _chunk(bits),
                             {k: _chunk(v) for k, v in sources.items()})

    return load


def _chunk(array: Any) -> Any:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _may_hold(group: Any, paths: list[str], options: RunOptions) -> bool:
    if (options.since_ns is None and options.until_ns is None) or "evt.time" not in paths:
        return True
    stats = group.column(paths.index("evt.time")).statistics
    if stats is None or not stats.has_min_max:
        return True
    low, high = stats.min_raw, stats.max_raw
    return not ((options.since_ns is not None and high < options.since_ns)
                or (options.until_ns is not None and low > options.until_ns))


def _scan(frame: Frame, plan: ReplayPlan, options: RunOptions) -> list[MatchTable]:
    """Evaluate every rule group on its rows of one frame."""
    index = _TypeIndex(frame.column("evt.type"), _window(frame, options), plan.value_set)
    found: list[MatchTable] = []
    for group in plan.groups:
        rows = index.rows(group)
        if rows is not None and len(rows) == 0:
            continue
        view = View(frame, rows)
        for member in group.rules:
            mask = member.condition.evaluate(view)
            if mask.true_count:
                found.append(_matches(frame, view, mask, member.rule))
    return found


class _TypeIndex:
    """Which rows of a frame each rule group sees: its event types, inside the time window.

    The rows of any rule's type are found once (one pass over the frame); each group then
    only looks at those.
    """

    def __init__(self, evt_types: Any, window: Any, all_types: Any) -> None:
        self.evt_types = evt_types
        self.window = window
        self.num_rows = len(evt_types)
        if all_types is None:  # some group sees every type
            self.candidates, self.codes = None, None
            return
        wanted = pc.is_in(evt_types.dictionary, value_set=all_types).take(evt_types.indices)
        mask = _and_window(pc.fill_null(wanted, _FALSE), window)
        self.candidates = pc.indices_nonzero(mask)
        self.codes = evt_types.indices.take(self.candidates)

    def rows(self, group: TypeGroup) -> Any:
        """Row indices the group sees (None: every row of the frame)."""
        if group.types is None:
            mask = self.window
            if mask is None or mask.true_count == self.num_rows:
                return None
            return pc.indices_nonzero(mask)
        wanted = pc.is_in(self.evt_types.dictionary, value_set=group.value_set)
        if not wanted.true_count:
            return _NO_ROWS
        if self.candidates is None:
            mask = _and_window(pc.fill_null(wanted.take(self.evt_types.indices), _FALSE),
                               self.window)
            return pc.indices_nonzero(mask)
        return self.candidates.filter(pc.fill_null(wanted.take(self.codes), _FALSE))


def _and_window(mask: Any, window: Any) -> Any:
    return mask if window is None else pc.and_(mask, window)


def _window(frame: Frame, options: RunOptions) -> Any:
    """The rows inside [since, until] (None: all of them)."""
    if options.since_ns is None and options.until_ns is None:
        return None
    times = frame.column("evt.time").cast(pa.int64())
    mask = times.is_valid()
    if options.since_ns is not None:
        mask = pc.and_(mask, pc.greater_equal(times, pa.scalar(options.since_ns, pa.int64())))
    if options.until_ns is not None:
        mask = pc.and_(mask, pc.less_equal(times, pa.scalar(options.until_ns, pa.int64())))
    return pc.fill_null(mask, _FALSE)


def _matches(frame: Frame, view: View, mask: Any, rule: CompiledRule) -> MatchTable:
    rows = pc.indices_nonzero(mask) if view.rows is None else view.rows.filter(mask)
    nums = frame.column("evt.num").take(rows)
    nums = (nums.combine_chunks() if isinstance(nums, pa.ChunkedArray) else nums).cast(pa.int64())
    return MatchTable(nums, pa.repeat(pa.scalar(rule.index, pa.int32()), len(nums)))
