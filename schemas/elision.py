"""Values a trace stores once: row values that follow from the row's `fd.name` are not repeated.

Why: in path-heavy work (tar, a build) each row's path was stored up to seven times: `fd.name`,
`fd.filename`, `fd.directory`, `fd.nameraw`, `evt.arg.name`, `evt.arg.fd` ('<f>' + the path) and
twice inside the rendered `evt.args`. Each column has its own dictionary, so a trace of a tar of
/usr/include took 39.5 bytes/event, 33 of them in those columns.

How: the writer (`elide`) compares, row by row, each column below with its derivation from the
row's stored `fd.name` and `fd.typechar` (never elided themselves). Where they are equal it stores
null and sets the derivation's bit in the `sysreplay.elided` column (uint16, null where nothing
was elided). `evt.args` is stored as a template: the path and its last component replaced by the
control characters `\\x01` and `\\x02`, where that substitution round-trips. Readers put the values
back, each in its own way from the one table below: `expand` (Arrow: the replay engine,
`read_table`) and `sql_select` (DuckDB: the SQL engine, `analyze query`, triage). Lossless by
construction: a bit is set only where the reader's derivation gives back the stored value, which
the writer checks with the same Arrow code.

A trace written before this (schema 1.x) has no `sysreplay.elided` column; readers leave it as is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

ELIDED = "sysreplay.elided"
ELIDED_TYPE = pa.uint16()
PATH_MARK = "\x01"  # in an evt.args template: the row's fd.name
BASE_MARK = "\x02"  # in an evt.args template: the last component of fd.name
SOURCES = ("fd.name", "fd.typechar")  # what derivations read; never elided

Columns = Mapping[str, pa.Array]


def _basename(name: pa.Array) -> pa.Array:
    # Everything after the last '/' ((?s): a newline in a path is an ordinary character).
    return pc.replace_substring_regex(name, r"(?s)^.*/", "")


def _dirname(name: pa.Array) -> pa.Array:
    # Everything before the last '/', '/' for a top-level entry, null without any '/'.
    head = pc.replace_substring_regex(name, r"(?s)/[^/]*$", "", max_replacements=1)
    head = pc.if_else(pc.equal(head, ""), pa.scalar("/"), head)
    return pc.if_else(pc.match_substring(name, "/"), head, pa.scalar(None, pa.string()))


def _path(src: Columns) -> pa.Array:
    return src["fd.name"]


def _base(src: Columns) -> pa.Array:
    return _basename(src["fd.name"])


def _dir(src: Columns) -> pa.Array:
    return _dirname(src["fd.name"])


def _fd_arg(src: Columns) -> pa.Array:
    return pc.binary_join_element_wise("<", src["fd.typechar"], ">", src["fd.name"], "")


def expand_template(template: pa.Array, name: pa.Array) -> pa.Array:
    """An evt.args template with its marks replaced by the row's path and its last component."""
    with_base = pc.binary_join(pc.split_pattern(template, BASE_MARK), _basename(name))
    return pc.binary_join(pc.split_pattern(with_base, PATH_MARK), name)


@dataclass(frozen=True)
class Elision:
    """A column whose value, where `bit` is set, is `derive` of the row's source columns."""

    bit: int
    column: str
    derive: Callable[[Columns], pa.Array]  # stored column values -> this column's values
    sql: str  # the same derivation over the stored columns, for DuckDB (our text only)


_SQL_PATH = '"fd.name"'
_SQL_BASE = "regexp_replace(\"fd.name\", '^.*/', '', 's')"
_SQL_DIR = ("CASE WHEN coalesce(strpos(\"fd.name\", '/'), 0) = 0 THEN NULL ELSE coalesce(nullif("
            "regexp_replace(\"fd.name\", '/[^/]*$', '', 's'), ''), '/') END")

ELISIONS: tuple[Elision, ...] = (
    Elision(1, "evt.arg.fd", _fd_arg, "'<' || \"fd.typechar\" || '>' || \"fd.name\""),
    Elision(2, "fd.filename", _base, _SQL_BASE),
    Elision(4, "fd.directory", _dir, _SQL_DIR),
    Elision(8, "evt.arg.name", _path, _SQL_PATH),
    Elision(16, "fd.nameraw", _path, _SQL_PATH),
    Elision(32, "fd.nameraw", _base, _SQL_BASE),
    Elision(64, "evt.args", lambda src: expand_template(src["evt.args"], src["fd.name"]),
            "replace(replace(\"evt.args\", chr(2), " + _SQL_BASE + "), chr(1), \"fd.name\")"),
)
ELIDED_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(e.column for e in ELISIONS))
# What a reader of each elided column also needs.
NEEDS: dict[str, tuple[str, ...]] = {c: (c, ELIDED, *SOURCES) for c in ELIDED_COLUMNS}
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
    name = _plain(table.column("fd.name"))
    if name.null_count == len(name):
        return table
    src = {"fd.name": name, "fd.typechar": _plain(table.column("fd.typechar"))}
    bits = pc.fill_null(table.column(ELIDED).combine_chunks().cast(pa.uint16()), 0)
    columns = {c: table.column(c).combine_chunks() for c in ELIDED_COLUMNS}
    for elision in ELISIONS:
        if elision.column == "evt.args":
            continue
        stored = columns[elision.column]
        same = pc.fill_null(pc.equal(_plain(stored), elision.derive(src)), False)
        if pc.any(same).as_py():
            bits = pc.if_else(same, pc.bit_wise_or(bits, pa.scalar(elision.bit, pa.uint16())),
                              bits)
            columns[elision.column] = _nulled(stored, same)
    columns["evt.args"], bits = _template_args(columns["evt.args"], name, bits)
    bits = pc.if_else(pc.equal(bits, 0), pa.scalar(None, pa.uint16()), bits)
    out = table
    for column, values in (*columns.items(), (ELIDED, bits)):
        index = out.schema.get_field_index(column)
        field = out.schema.field(index)
        out = out.set_column(index, field, values.cast(field.type))
    return out


def _template_args(args: pa.Array, name: pa.Array, bits: pa.Array) -> tuple[pa.Array, pa.Array]:
    """evt.args as templates where the path occurs in it and the substitution round-trips."""
    bit = next(e.bit for e in ELISIONS if e.column == "evt.args")
    texts, names, done = args.to_pylist(), name.to_pylist(), bits.to_pylist()
    base = _basename(name).to_pylist()
    changed = False
    for i, text in enumerate(texts):
        path = names[i]
        if not text or not path or done[i] & bit or path not in text:
            continue
        if PATH_MARK in text or BASE_MARK in text:
            continue
        template = text.replace(path, PATH_MARK)
        last = base[i]
        if last and PATH_MARK not in last and BASE_MARK not in last:
            template = template.replace(last, BASE_MARK)
        if template.replace(BASE_MARK, last or "").replace(PATH_MARK, path) != text:
            continue
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
    plain = {k: _plain(v) for k, v in src.items()}
    out = _plain(stored)
    for elision in ELISIONS:
        if elision.column != column:
            continue
        mask = pc.not_equal(pc.bit_wise_and(bits, pa.scalar(elision.bit, pa.uint16())), 0)
        if not pc.any(mask).as_py():
            continue
        inputs = {**plain, "evt.args": out} if column == "evt.args" else plain
        out = pc.if_else(mask, elision.derive(inputs), out)
    return out


def expand(table: pa.Table) -> pa.Table:
    """`table` with every elided value put back and the `ELIDED` column dropped."""
    if ELIDED not in table.column_names:
        return table
    bits = table.column(ELIDED).combine_chunks()
    missing = [s for s in SOURCES if s not in table.column_names]
    if missing:
        raise ValueError(f"expanding elided values needs the columns {', '.join(missing)}")
    src = {s: table.column(s).combine_chunks() for s in SOURCES}
    for column in ELIDED_COLUMNS:
        if column in table.column_names:
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
        if column not in present:
            continue
        cases = " ".join(f'WHEN ("{ELIDED}" & {e.bit}) <> 0 THEN {e.sql}'
                         for e in ELISIONS if e.column == column)
        replaced.append(f'CASE {cases} ELSE "{column}" END AS "{column}"')
    return f'* EXCLUDE ("{ELIDED}") REPLACE ({", ".join(replaced)})'
