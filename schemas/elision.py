"""Values a trace stores once: row values that follow from other columns of the row.

Why: in path-heavy work (tar, a build) each row's path was stored up to seven times: `fd.name`,
`fd.filename`, `fd.directory`, `fd.nameraw`, `evt.arg.name`, `evt.arg.fd` ('<f>' + the path) and
twice inside the rendered `evt.args`. Each column has its own dictionary, so a trace of a tar of
/usr/include took 39.5 bytes/event, 33 of them in those columns. And `proc.duration` (ns since
the process started) changes on every row: once the paths were gone it was the largest column of
a build's trace (3.3 bytes/event), while `evt.time` minus the process's start (`proc.pid.ts`, one
value per process) gives it back.

How: the writer (`elide`) compares, row by row, each column below with its derivation from the
row's stored `fd.name` and `fd.typechar` (or `evt.time` and `proc.pid.ts`; never elided). Where
they are equal it stores null and sets the derivation's bit in the `sysreplay.elided` column
(uint16, null where nothing was elided). `evt.args` is stored as a template: the path and its
last component replaced by the control characters `\\x01` and `\\x02` (see `_template_args` for
why that always round-trips). Readers put the values back, each in its own way from the one
table below: `expand` and `expand_column` (Arrow: the replay engine's column loader) and
`sql_select` (DuckDB: the SQL engine, `analyze query`, triage). Lossless: a bit is set only
where the Arrow derivation gives back the stored value, and tests/test_elision.py holds the
DuckDB one to the Arrow one.

A trace written before this (schema 1.x) has no `sysreplay.elided` column; readers leave it as is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

import pyarrow as pa
import pyarrow.compute as pc

ELIDED = "sysreplay.elided"
ELIDED_TYPE = pa.uint16()
PATH_MARK = "\x01"  # in an evt.args template: the row's fd.name
BASE_MARK = "\x02"  # in an evt.args template: the last component of fd.name
# What derivations read; never elided.
SOURCES = ("fd.name", "fd.typechar", "evt.time", "proc.pid.ts")
PATH_SOURCES = ("fd.name", "fd.typechar")
DURATION_SOURCES = ("evt.time", "proc.pid.ts")

Columns = Mapping[str, pa.Array]


def _basename(name: pa.Array) -> pa.Array:
    # Everything after the last '/' ((?s): a newline in a path is an ordinary character).
    return pc.replace_substring_regex(name, r"(?s)^.*/", "")


def _dirname(name: pa.Array) -> pa.Array:
    # Everything before the last '/', '/' for a top-level entry, null without any '/'.
    head = pc.replace_substring_regex(name, r"(?s)/[^/]*$", "", max_replacements=1)
    head = pc.if_else(pc.equal(head, ""), pa.scalar("/"), head)
    return pc.if_else(pc.match_substring(name, "/"), head, pa.scalar(None, pa.string()))


class Rows:
    """The derivations' inputs for a batch of rows, each derived form computed once.

    Forms of the path are computed on its dictionary (a path recurs: opened, read, closed) and
    spread to the rows by index."""

    def __init__(self, src: Columns) -> None:
        self.src = src

    @cached_property
    def _name(self) -> pa.Array:
        return self.src["fd.name"]

    def _per_value(self, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
        name = self._name
        if pa.types.is_dictionary(name.type):
            return fn(name.dictionary).take(name.indices)
        return fn(name)

    @cached_property
    def path(self) -> pa.Array:
        return _plain(self._name)

    @cached_property
    def base(self) -> pa.Array:
        return self._per_value(_basename)

    @cached_property
    def dir(self) -> pa.Array:
        return self._per_value(_dirname)

    @cached_property
    def fd_arg(self) -> pa.Array:
        return pc.binary_join_element_wise("<", _plain(self.src["fd.typechar"]), ">", self.path,
                                           "")

    @cached_property
    def duration(self) -> pa.Array:
        return pc.subtract(self.src["evt.time"].cast(pa.int64()),
                           _plain(self.src["proc.pid.ts"]).cast(pa.int64()))

    def args(self, template: pa.Array) -> pa.Array:
        with_base = pc.binary_join(pc.split_pattern(template, BASE_MARK), self.base)
        return pc.binary_join(pc.split_pattern(with_base, PATH_MARK), self.path)


def expand_template(template: pa.Array, name: pa.Array) -> pa.Array:
    """An evt.args template with its marks replaced by the row's path and its last component."""
    return Rows({"fd.name": name}).args(template)


@dataclass(frozen=True)
class Elision:
    """A column whose value, where `bit` is set, is `derive` of the row's source columns."""

    bit: int
    column: str
    derive: Callable[[Rows, pa.Array], pa.Array]  # (sources, the stored column) -> values
    sql: str  # the same derivation over the stored columns, for DuckDB (our text only)
    sources: tuple[str, ...] = PATH_SOURCES  # what `derive` reads besides the column itself


_SQL_PATH = '"fd.name"'
_SQL_BASE = "regexp_replace(\"fd.name\", '^.*/', '', 's')"
_SQL_DIR = ("CASE WHEN coalesce(strpos(\"fd.name\", '/'), 0) = 0 THEN NULL ELSE coalesce(nullif("
            "regexp_replace(\"fd.name\", '/[^/]*$', '', 's'), ''), '/') END")

ELISIONS: tuple[Elision, ...] = (
    Elision(1, "evt.arg.fd", lambda r, _: r.fd_arg,
            "'<' || \"fd.typechar\" || '>' || \"fd.name\""),
    Elision(2, "fd.filename", lambda r, _: r.base, _SQL_BASE),
    Elision(4, "fd.directory", lambda r, _: r.dir, _SQL_DIR),
    Elision(8, "evt.arg.name", lambda r, _: r.path, _SQL_PATH),
    Elision(16, "fd.nameraw", lambda r, _: r.path, _SQL_PATH),
    Elision(32, "fd.nameraw", lambda r, _: r.base, _SQL_BASE),
    Elision(64, "evt.args", lambda r, stored: r.args(stored),
            "replace(replace(\"evt.args\", chr(2), " + _SQL_BASE + "), chr(1), \"fd.name\")"),
    Elision(128, "proc.duration", lambda r, _: r.duration,
            'epoch_ns("evt.time") - "proc.pid.ts"', DURATION_SOURCES),
)
ELIDED_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(e.column for e in ELISIONS))
# What a reader of each elided column also needs.
NEEDS: dict[str, tuple[str, ...]] = {
    c: tuple(dict.fromkeys([c, ELIDED, *(s for e in ELISIONS if e.column == c for s in e.sources)]))
    for c in ELIDED_COLUMNS
}
# The footer's description of the encoding, for readers other than ours.
DESCRIPTION = (
    "Where bit B of sysreplay.elided is set the column holds null and its value is derived: "
    + "; ".join(f"{e.bit}: {e.column} = {e.sql}" for e in ELISIONS)
)


# ---- writing ----------------------------------------------------------------------------------


def elide(table: pa.Table) -> pa.Table:
    """`table` with derivable values replaced by null and their bits set in `ELIDED`.

    Bits already set (a trace being rewritten) are kept with their nulls."""
    if not all(name in table.column_names for name in (*SOURCES, *ELIDED_COLUMNS, ELIDED)):
        return table
    src = {s: table.column(s).combine_chunks() for s in SOURCES}
    usable = {s for s, values in src.items() if values.null_count < len(values)}
    if not usable:
        return table
    rows = Rows(src)
    bits = pc.fill_null(table.column(ELIDED).combine_chunks().cast(pa.uint16()), 0)
    columns = {c: table.column(c).combine_chunks() for c in ELIDED_COLUMNS}
    for elision in ELISIONS:
        if elision.column == "evt.args" or not usable.issuperset(elision.sources):
            continue
        stored = columns[elision.column]
        same = pc.fill_null(pc.equal(_plain(stored), elision.derive(rows, stored)), False)
        if pc.any(same).as_py():
            bits = pc.if_else(same, pc.bit_wise_or(bits, pa.scalar(elision.bit, pa.uint16())),
                              bits)
            columns[elision.column] = _nulled(stored, same)
    if "fd.name" in usable:
        columns["evt.args"], bits = _template_args(columns["evt.args"], rows, bits)
    bits = pc.if_else(pc.equal(bits, 0), pa.scalar(None, pa.uint16()), bits)
    out = table
    for column, values in (*columns.items(), (ELIDED, bits)):
        index = out.schema.get_field_index(column)
        field = out.schema.field(index)
        out = out.set_column(index, field, values.cast(field.type))
    return out


def _template_args(args: pa.Array, rows: Rows, bits: pa.Array) -> tuple[pa.Array, pa.Array]:
    """evt.args as templates where the path occurs in it.

    A loop in Python (Arrow has no replace by a per-row pattern), over the rows with a path.
    It round-trips whenever the text holds no mark and neither does the last component (the
    path, being in the text, holds none either): every path becomes PATH_MARK, then every
    occurrence of the last component in what is left becomes BASE_MARK, and the reader
    replaces BASE_MARK and then PATH_MARK back (tests/test_elision.py checks it on random
    text)."""
    bit = next(e.bit for e in ELISIONS if e.column == "evt.args")
    texts, done = args.to_pylist(), bits.to_pylist()
    with_path = pc.indices_nonzero(pc.and_kleene(pc.is_valid(rows.path), pc.is_valid(args)))
    paths, bases = rows.path.take(with_path).to_pylist(), rows.base.take(with_path).to_pylist()
    changed = False
    for i, path, last in zip(with_path.to_pylist(), paths, bases, strict=True):
        text = texts[i]
        if not path or done[i] & bit or PATH_MARK in text or BASE_MARK in text:
            continue
        template = text.replace(path, PATH_MARK)
        if template == text:
            continue
        if last and PATH_MARK not in last and BASE_MARK not in last:
            template = template.replace(last, BASE_MARK)
        texts[i] = template
        done[i] |= bit
        changed = True
    if not changed:
        return args, bits
    return pa.array(texts, args.type), pa.array(done, pa.uint16())


def _plain(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.cast(pa.string()) if pa.types.is_dictionary(array.type) else array


def _nulled(stored: pa.Array, mask: pa.Array) -> pa.Array:
    none = pa.scalar(None, pa.int32())
    if pa.types.is_dictionary(stored.type):
        indices = pc.if_else(mask, none.cast(stored.indices.type), stored.indices)
        return pa.DictionaryArray.from_arrays(indices, stored.dictionary)
    return pc.if_else(mask, pa.scalar(None, stored.type), stored)


# ---- reading ----------------------------------------------------------------------------------


def expand_column(column: str, stored: pa.Array, bits: pa.Array | None,
                  src: Columns) -> pa.Array:
    """A column's values with its elided rows put back (`src`: the row's SOURCES, stored)."""
    if bits is None or bits.null_count == len(bits):
        return stored
    bits = pc.fill_null(bits.cast(pa.uint16()), 0)
    rows = Rows(src)
    out = _plain(stored)
    for elision in ELISIONS:
        if elision.column != column:
            continue
        mask = pc.not_equal(pc.bit_wise_and(bits, pa.scalar(elision.bit, pa.uint16())), 0)
        if not pc.any(mask).as_py():
            continue
        out = pc.if_else(mask, elision.derive(rows, out), out)
    return out


def expand(table: pa.Table) -> pa.Table:
    """`table` with every elided value put back and the `ELIDED` column dropped (a column
    whose derivation's sources the table lacks is left as stored)."""
    if ELIDED not in table.column_names:
        return table
    bits = table.column(ELIDED).combine_chunks()
    src = {s: table.column(s).combine_chunks() for s in SOURCES if s in table.column_names}
    for column in ELIDED_COLUMNS:
        if column in table.column_names and set(NEEDS[column]) <= set(table.column_names):
            index = table.schema.get_field_index(column)
            values = expand_column(column, table.column(column).combine_chunks(), bits, src)
            field = table.schema.field(index)
            table = table.set_column(index, field, values.cast(field.type))
    return table.drop_columns([ELIDED])


def sql_select(present: frozenset[str] | set[str]) -> str:
    """The select list of a DuckDB view of trace files whose columns are `present`: every
    column, elided values put back, `ELIDED` hidden. Only our fixed text goes in it."""
    if ELIDED not in present:
        return "*"
    replaced = []
    for column in ELIDED_COLUMNS:
        if not set(NEEDS[column]) <= present:
            continue
        cases = " ".join(f'WHEN ("{ELIDED}" & {e.bit}) <> 0 THEN {e.sql}'
                         for e in ELISIONS if e.column == column)
        replaced.append(f'CASE {cases} ELSE "{column}" END AS "{column}"')
    return f'* EXCLUDE ("{ELIDED}") REPLACE ({", ".join(replaced)})'
