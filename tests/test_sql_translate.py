"""The SQL translator: golden translations, quoting, hostile values, and the SQL macros, which
must compute exactly what `analyze.semantics` computes (checked value by value in DuckDB)."""

from __future__ import annotations

import ipaddress
import random
import re
from dataclasses import dataclass

import duckdb
import pytest

from analyze import ast, semantics
from analyze.parser import parse_condition
from analyze.sql_translate import (
    MACROS,
    Params,
    SqlGenerator,
    SqlTranslateError,
    UnsupportedNodeError,
    compact,
    getopt_sets,
    inline_params,
    ip_key,
    quote_ident,
    sql_literal,
    translate,
)

L = "coalesce"  # a NULL check is false: coalesce(<condition>, false), and under each `not`

# (condition, the translation with values inlined). Values are parameters when the engine runs.
GOLDEN = [
    ("proc.name = cat", f"""{L}(("proc.name" = 'cat'::VARCHAR), false)"""),
    ("proc.name == cat", f"""{L}(("proc.name" = 'cat'::VARCHAR), false)"""),
    ("proc.name != cat", f"""{L}(("proc.name" <> 'cat'::VARCHAR), false)"""),
    ("evt.rawres < 0", f"""{L}(("evt.rawres" < 0::BIGINT), false)"""),
    ("user.uid <= 104", f"""{L}(("user.uid" <= 104::BIGINT), false)"""),
    ("user.uid = -1", f"""{L}(("user.uid" = 4294967295::BIGINT), false)"""),
    ("fd.cport > 30000", f"""{L}(("fd.cport" > 30000::BIGINT), false)"""),
    ("fd.lport = http", f"""{L}(("fd.lport" = 80::BIGINT), false)"""),
    ("evt.failed = false", f"""{L}(("evt.failed" = FALSE::BOOLEAN), false)"""),
    ("proc.name contains ku", f"""{L}(contains("proc.name", 'ku'::VARCHAR), false)"""),
    ("proc.name icontains KU",
     f"""{L}(contains(translate("proc.name", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', """
     """'abcdefghijklmnopqrstuvwxyz'), 'ku'::VARCHAR), false)"""),
    ("fd.name startswith /etc", f"""{L}(starts_with("fd.name", '/etc'::VARCHAR), false)"""),
    ("fd.name endswith .so", f"""{L}(ends_with("fd.name", '.so'::VARCHAR), false)"""),
    ('fd.name glob "/etc/*.conf"',
     f"""{L}(regexp_full_match("fd.name", '(?:\\x2fetc\\x2f(?s:.)*\\x2econf)'::VARCHAR), false)"""),
    ('proc.name iglob "IP?"',
     f"""{L}(regexp_full_match("proc.name", '(?:[iI][pP](?s:.))'::VARCHAR), false)"""),
    ('proc.name regex "a+"', f"""{L}(regexp_full_match("proc.name", '(?:a+)'::VARCHAR), false)"""),
    ("fd.name pmatch (/etc, /usr/lib)",
     f"""{L}(regexp_full_match("fd.name", '(?s:/*(?:etc|usr/+lib)(?:/.*)?)'::VARCHAR), false)"""),
    ("evt.buffer bcontains 474554",
     f"""{L}(regexp_matches(hex("evt.buffer"), '^(?:[0-9A-F]{{2}})*?474554'::VARCHAR), false)"""),
    ("evt.buffer bstartswith 48", f"""{L}(starts_with(hex("evt.buffer"), '48'::VARCHAR), false)"""),
    ("evt.buffer = GET", f"""{L}(("evt.buffer" = unhex('474554')::BLOB), false)"""),
    ("proc.name in (a, b)",
     f"""{L}(("proc.name" = 'a'::VARCHAR OR "proc.name" = 'b'::VARCHAR), false)"""),
    ("proc.name in (a, b, c, d, e)",
     f"""{L}(regexp_full_match("proc.name", '(?s)(?:a|b|c|d|e)'::VARCHAR), false)"""),
    ("proc.name intersects (a)", f"""{L}(("proc.name" = 'a'::VARCHAR), false)"""),
    ("fd.sport in (53, 8080)",
     f"""{L}(("fd.sport" = 53::BIGINT OR "fd.sport" = 8080::BIGINT), false)"""),
    ("fd.name exists", f"""{L}(("fd.name" IS NOT NULL), false)"""),
    ("not fd.name exists", f"""(NOT {L}(("fd.name" IS NOT NULL), false))"""),
    # NULL flows through and/or (monotone): one coalesce around them, and one under each `not`
    ("fd.num = 1 or fd.num = 2",
     f"""{L}((("fd.num" = 1::BIGINT) OR ("fd.num" = 2::BIGINT)), false)"""),
    ("proc.name = a and not fd.num = 2",
     f"""{L}((("proc.name" = 'a'::VARCHAR) AND """
     f"""(NOT {L}(("fd.num" = 2::BIGINT), false))), false)"""),
    # long and/or: one item per line, indented by depth (`analyze sql` shows this text)
    ("proc.name = a and (fd.num = 1 or not fd.num = 2)",
     f"""{L}((\n{" " * 12}("proc.name" = 'a'::VARCHAR)\n{" " * 12}AND """
     f"""(("fd.num" = 1::BIGINT) OR (NOT {L}(("fd.num" = 2::BIGINT), false)))), false)"""),
    # ancestors: bare = any from the parent up (SQL index 2); [N] = SQL index N + 1
    ("proc.aname = bash",
     f"""{L}(list_bool_or(list_transform("proc.aname"[2:], lambda v1: """
     f"""{L}((v1 = 'bash'::VARCHAR), false))), false)"""),
    ("proc.aname[0] = bash", f"""{L}(("proc.aname"[1] = 'bash'::VARCHAR), false)"""),
    ("proc.aname[-1] = bash", f"""{L}(("proc.aname"[1] = 'bash'::VARCHAR), false)"""),
    ("proc.apid[2] exists", f"""{L}(("proc.apid"[3] IS NOT NULL), false)"""),
    ("proc.aname allof startswith s",
     f"""{L}(list_bool_and(list_transform("proc.aname"[2:], lambda v1: """
     f"""{L}(starts_with(v1, 's'::VARCHAR), false))), false)"""),
    ("proc.aname oneof = s",
     f"""{L}(len(list_filter("proc.aname"[2:], lambda v1: """
     f"""{L}((v1 = 's'::VARCHAR), false))) = 1, false)"""),
    # filter-only fd fields
    ("fd.ip = 8.8.8.8",
     f"""{L}(((sysreplay_ip_key("fd.cip") = '4:{"00001000" * 4}'::VARCHAR) """
     f"""OR (sysreplay_ip_key("fd.sip") = '4:{"00001000" * 4}'::VARCHAR)), false)"""),
    ("fd.port != 53",
     f"""{L}(list_bool_and(list_filter([("fd.cport" <> 53::BIGINT), ("fd.sport" <> 53::BIGINT)], """
     """lambda c: c IS NOT NULL)), false)"""),
    ("fd.snet = 10.0.0.0/8",
     f"""{L}(regexp_matches(sysreplay_ip_key("fd.sip"), '^(?:4:00001010)'::VARCHAR), false)"""),
    # transformers, right-hand fields, derived fields
    ("toupper(proc.name) = A",
     f"""{L}((translate("proc.name", 'abcdefghijklmnopqrstuvwxyz', """
     """'ABCDEFGHIJKLMNOPQRSTUVWXYZ') = 'A'::VARCHAR), false)"""),
    ("basename(proc.exepath) = bash",
     f"""{L}((string_split("proc.exepath", '/')[-1] = 'bash'::VARCHAR), false)"""),
    ("len(proc.name) = 3", f"""{L}((strlen("proc.name") = 3::BIGINT), false)"""),
    ("b64(proc.name) exists",
     f"""{L}((sysreplay_charbuf(sysreplay_b64_decode("proc.name")) IS NOT NULL), false)"""),
    ('concat(proc.name, "@", user.name) = x',
     f"""{L}((("proc.name" || '@'::VARCHAR || "user.name") = 'x'::VARCHAR), false)"""),
    ('getopt(("-w", proc.name), "w:") exists',
     """(sysreplay_getopt(list_filter(list_value(CAST('-w'::VARCHAR AS VARCHAR), """
     """CAST("proc.name" AS VARCHAR)), lambda v1: v1 IS NOT NULL), 'w'::VARCHAR, 'w'::VARCHAR) """
     """IS NOT NULL)"""),
    ("proc.name = val(proc.pname)", f"""{L}(("proc.name" = "proc.pname"), false)"""),
    ("proc.env[HOME] = /root",
     f"""{L}((sysreplay_strip(regexp_extract("proc.env", '(?:^| )HOME=([^ ]*)'::VARCHAR, 1)) """
     """= '/root'::VARCHAR), false)"""),
    ("evt.type.is.open = 1",
     f"""{L}((CAST("evt.type" = 'open'::VARCHAR AS UINTEGER) = 1::BIGINT), false)"""),
    ("evt.rawtime > 0", f"""{L}((epoch_ns("evt.time") > 0::BIGINT), false)"""),
    # fields a trace has no column for: missing, so the check is false
    ("proc.acmdline = x", "false"),
    ("evt.arg[0] = x", "false"),
    ("proc.aname[16] = x", "false"),
]


@pytest.mark.parametrize(("condition", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden(condition: str, expected: str) -> None:
    assert translate(parse_condition(condition)).inline() == expected


def test_every_node_type_has_a_handler() -> None:
    generator = SqlGenerator()
    for node_type in ast.NODE_TYPES:
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", node_type.__name__).lower() + "_sql"
        assert callable(getattr(generator, name, None)), f"no {name} for {node_type.__name__}"


def test_a_node_without_handler_fails_loudly() -> None:
    @dataclass(frozen=True)
    class Mystery(ast.Node):
        pass

    with pytest.raises(UnsupportedNodeError, match="no handler for Mystery nodes"):
        SqlGenerator().sql(Mystery())
    with pytest.raises(SqlTranslateError, match="'nope' is not a defined macro"):
        translate(ast.MacroRef("nope"))


def test_operand_nodes_render_as_sql() -> None:
    generator = SqlGenerator()
    assert generator.sql(ast.Field("proc.name")) == '"proc.name"'
    assert generator.sql(ast.Literal("x")) == "$1::VARCHAR"
    assert generator.sql(ast.ValueList((ast.Literal("x"), ast.Literal("y")))) == \
        "($1::VARCHAR, $2::VARCHAR)"
    assert generator.sql(ast.Val(ast.Field("proc.pname"))) == '"proc.pname"'
    assert generator.sql(ast.Transformer("len", (ast.Field("proc.name"),))) == 'strlen("proc.name")'
    assert generator.sql(ast.TransformerList((ast.Field("proc.name"),))).startswith("list_filter")


# ---- quoting and hostile values ----------------------------------------------------------------

HOSTILE = [
    "x'); COPY (SELECT 1) TO '/tmp/sysreplay-pwn' --",
    "'",
    "''",
    "a\\b\\",
    "\\x27",
    "nul\x00byte",
    "new\nline\r\ttab",
    "é ü 日本 \U0001f600",
    "\u2028\u2029\x7f\x85",
    '"quoted"',
    "$99::VARCHAR",
    "-- comment",
    "/* comment",
    "",
]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for macro in MACROS:
        con.execute(macro)
    return con


@pytest.mark.parametrize("value", HOSTILE)
def test_sql_literal_round_trips(con: duckdb.DuckDBPyConnection, value: str) -> None:
    assert con.execute(f"SELECT {sql_literal(value)}").fetchone() == (value,)
    # and as a parameter, the way the engine binds it
    assert con.execute("SELECT $1::VARCHAR", [value]).fetchone() == (value,)


def test_sql_literal_other_types(con: duckdb.DuckDBPyConnection) -> None:
    values = [None, True, False, 0, -5, 2**63 + 1, b"\x00\xff'", ("a", "b'c")]
    for value in values:
        got = con.execute(f"SELECT {sql_literal(value)}").fetchone()
        assert got is not None
        assert got[0] == (list(value) if isinstance(value, tuple) else value)
    with pytest.raises(SqlTranslateError, match="not valid Unicode"):
        sql_literal("\ud800")
    with pytest.raises(SqlTranslateError, match="not valid Unicode"):
        Params().add("\ud800")


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_parameters(value: str) -> None:
    """Rule text never reaches the SQL: values, field arguments and glob keys are bound."""
    text = ast.quote(value)
    for condition in (f"proc.name = {text}", f"proc.name in ({text}, x)",
                      f"proc.name contains {text}", f"proc.env[{text}] exists",
                      f"container.mount.dest[{text}] exists", f"proc.name glob {text}"):
        tree = parse_condition(condition)
        translation = translate(tree)
        if len(value) > 3:
            assert value not in translation.sql
        assert "COPY" not in translation.sql and "--" not in translation.sql
        assert all(isinstance(p, str | int | bool | bytes) for p in translation.params)


def test_quote_ident_only_takes_schema_columns() -> None:
    assert quote_ident("proc.name") == '"proc.name"'
    for bad in ('proc.name" OR 1=1 --', "nope", 'x"y'):
        with pytest.raises(SqlTranslateError, match="is not a trace column"):
            quote_ident(bad)


def test_params_are_typed_shared_and_compacted() -> None:
    params = Params()
    assert params.add("a") == "$1::VARCHAR"
    assert params.add(1) == "$2::BIGINT"
    assert params.add("a") == "$1::VARCHAR"
    assert params.add(2**64 - 1) == "$3::HUGEINT"
    assert params.add(b"x") == "$4::BLOB"
    assert params.add(("a", "b")) == "$5::VARCHAR[]"
    assert params.add((1, 2)) == "$6::BIGINT[]"
    with pytest.raises(SqlTranslateError):
        params.add(object())
    out = compact("f($4::BLOB, $2::BIGINT, $4::BLOB)", params.values)
    assert out.sql == "f($1::BLOB, $2::BIGINT, $1::BLOB)" and out.params == (b"x", 1)
    assert inline_params(out.sql, out.params) == \
        "f(unhex('78')::BLOB, 1::BIGINT, unhex('78')::BLOB)"


# ---- the macros compute what analyze.semantics computes ----------------------------------------


def _each(con: duckdb.DuckDBPyConnection, sql: str, values: list[object],
          sql_type: str = "VARCHAR", params: tuple[object, ...] = ()) -> dict[object, object]:
    """`sql` (over a column `x`, with `params` as $1...) evaluated for each value, in one query."""
    number = len(params) + 1
    rows = con.execute(f"SELECT x, {sql} FROM (SELECT unnest(${number}::{sql_type}[]) AS x)",
                       [*params, values]).fetchall()
    return {(tuple(x) if isinstance(x, list) else x): y for x, y in rows}


def test_ip_key_macro(con: duckdb.DuckDBPyConnection) -> None:
    rnd = random.Random(3)
    texts = ["::1", "0:0:0:0:0:0:0:1", "2001:db8::3", "::", "1::", "::ffff:1.2.3.4", "10.0.0.1",
             "bad", "1.2.3", "01.2.3.4", "1::2::3", "256.1.1.1", ":::1", "", "1:2:3:4:5:6:7:8:9",
             "1:2:3:4:5:6:7::8", "12345::1", "1.2.3.4.5"]
    for _ in range(200):
        v6 = ipaddress.IPv6Address(rnd.getrandbits(128) & rnd.choice([2**128 - 1, 2**64 - 1]))
        texts += [str(v6), v6.exploded, str(ipaddress.IPv4Address(rnd.getrandbits(32)))]
    got = _each(con, "sysreplay_ip_key(x)", list(texts))
    for text in texts:
        addr = semantics.ip_of(text)
        assert got[text] == (None if addr is None else ip_key(addr)), text


def test_b64_macros(con: duckdb.DuckDBPyConnection) -> None:
    rnd = random.Random(4)
    values = ["", "YQ", "YQ==", "YQ=", "YR==", "a", "kubelet", "aGVsbG8", "=", "a===", "abc\0",
              "é", "AP8=", "wyg=", "4pyT", "8J+YgA", "7aCA", "AGE="]
    values += ["".join(rnd.choice("ABCabc0189+/=") for _ in range(rnd.randint(0, 9)))
               for _ in range(400)]
    got = _each(con, "sysreplay_charbuf(sysreplay_b64_decode(x))", list(values))
    for value in values:
        decoded = semantics.b64_decode(value)
        assert got[value] == (None if decoded is None else semantics.as_charbuf(decoded)), value


def test_charbuf_macro_replaces_bad_utf8_like_python(con: duckdb.DuckDBPyConnection) -> None:
    rnd = random.Random(5)
    values = [bytes(rnd.choice([rnd.randrange(256), rnd.randrange(0x80, 0xC0),
                                rnd.choice([0xE0, 0xED, 0xF0, 0xF4, 0xC2, 0xEF, 0xF1])])
                    for _ in range(rnd.randint(0, 8))) for _ in range(600)]
    got = _each(con, "sysreplay_charbuf(x)", list(values), "BLOB")
    for data in values:
        assert got[data] == semantics.as_charbuf(data), data.hex()


def _column_operand(node: ast.Node, column: str) -> tuple[str, tuple[object, ...]]:
    """An operand's SQL reading `x` in place of `column`, and its parameters."""
    generator = SqlGenerator()
    sql = generator.operand(node).sql.replace(quote_ident(column), "x")
    return sql, tuple(generator.params.values)


def test_env_lookup(con: duckdb.DuckDBPyConnection) -> None:
    envs = ["A=1 B=2", "HOME=/root  X=y", "A=\t1\x0b B=", "", "AA=1 A=2", "A==b", "x A=3", "A"]
    for key in ("A", "B", "HOME", "X", "AA", "Z", "A=", ".", "A B"):
        sql, params = _column_operand(ast.Field("proc.env", key), "proc.env")
        got = _each(con, sql, list(envs), params=params)
        for env in envs:
            assert got[env] == semantics.env_lookup(env, key), (env, key)


def test_mount_lookup(con: duckdb.DuckDBPyConnection) -> None:
    mounts = ["a:b:rw,shared:true:shared,c:d:ro:false:rprivate", "/x:/y::true:rprivate", "a:b",
              "a:b:c:d:e:f", "", ",,", "p:q:r:s", "x:y:z"]
    for name in semantics.MOUNT_FIELDS:
        for arg in ("0", "1", "2", "-1", "a", "/x", "*", "c", "q", "/y", "[ac]", " 1", "+1"):
            sql, params = _column_operand(ast.Field(name, arg), "container.mounts")
            got = _each(con, sql, list(mounts), params=params)
            for value in mounts:
                assert got[value] == semantics.mount_lookup(value, name, arg), (value, name, arg)


def test_getopt(con: duckdb.DuckDBPyConnection) -> None:
    rnd = random.Random(6)
    tokens = ["-a", "-b", "-c", "-ab", "-abc", "-cfoo", "--", "--long", "x", "-", "-:", "-é", "",
              "-bc", "val"]
    cases = [[rnd.choice(tokens) for _ in range(rnd.randint(0, 5))] for _ in range(300)]
    for optstring in ("ab", "a:b", "c:", ":ab:c", "abc:", "", "b:c:", "a-:"):
        valid, with_value = getopt_sets(optstring)
        got = _each(con, "sysreplay_getopt(x, $1, $2)", list(cases), "VARCHAR[]",
                    (valid, with_value))
        for args in cases:
            assert got[tuple(args)] == semantics.getopt(args, optstring), (args, optstring)


# ---- the pre-pass relaxation -------------------------------------------------------------------


def test_relax_keeps_a_superset() -> None:
    relaxed = SqlGenerator(relax=frozenset({"proc.aname"}))
    tree = parse_condition("proc.name = a and not proc.aname = b and (proc.aname[1] = c or "
                           "fd.num = 1)")
    sql = inline_params(relaxed.sql(tree), relaxed.params.values)
    assert " ".join(sql.split()) == (
        """(("proc.name" = 'a'::VARCHAR) AND (NOT false) AND (true OR ("fd.num" = 1::BIGINT)))""")


# ---- evt.type checks behind the engine's evt.type guard ----------------------------------------


@pytest.mark.parametrize(("condition", "expected"), [
    ("evt.type in (open, openat, openat2)", "true"),
    ("evt.type = open", None),  # openat events differ: left to SQL
    ("evt.type == execve", "false"),
    ("evt.type != execve", "true"),
    ("evt.type != open", None),
    ("evt.type in (execve, clone)", "false"),
    ("not evt.type in (open, openat)", "(NOT true)"),
    ("evt.type startswith open", None),  # only =, ==, != and in are decided
    ("toupper(evt.type) = OPEN", None),
])
def test_event_types_decide_evt_type_checks(condition: str, expected: str | None) -> None:
    generator = SqlGenerator(event_types=frozenset({"open", "openat"}))
    sql = generator.sql(parse_condition(condition))
    if expected is None:
        assert '"evt.type"' in sql
    else:
        assert sql == expected
    assert '"evt.type"' in SqlGenerator().sql(parse_condition(condition))
