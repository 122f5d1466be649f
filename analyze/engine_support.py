"""Which engine can run which rule, and which fields of a rule no trace records.

Both engines walk the same resolved AST, yet each has constructs the other runs and it cannot:
the SQL translator wants getopt()'s optstring as a literal, the replay compiler wants concat()'s
arguments to be single values, DuckDB refuses a pattern RE2 cannot compile, and so on. A rule
one engine cannot run is never dropped silently: `analyze validate` lists it per engine with the
reason (`check_rules`), and `analyze run` leaves it out with a warning (`runnable`).

How each engine is asked, through its public entry points only:
- replay: `replay_compile.compile_condition`, which raises RuleError for what it cannot run;
- SQL: `sql_translate.translate` for the condition, then `sql_engine.build_query` run on an
  empty table of the trace schema, so DuckDB binds every function and pattern without data.

A field the trace schema has no column for (`syscall.type`, `evt.arg[N]`, `proc.acmdline`, ...)
makes every check on it false in both engines: `missing_field_warnings` says so per rule, with
the warning the replay engine gives at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyze import ast
from analyze.engine_api import CompiledRule, RunOptions, Skipped
from analyze.errors import RuleError, RuleWarning
from analyze.evttypes import evttypes
from analyze.ruleset import LoadedRule, RuleSet
from analyze.typecheck import fields_needing_unavailable_data

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

ENGINES = ("replay", "sql")
MISSING_FIELD_WARNING = "field-not-in-trace"  # the code (and text) analyze.replay warns with


@dataclass(frozen=True)
class EngineError:
    """An engine that cannot run a rule: `message` names the rule, `why` is the reason alone."""

    engine: str
    message: str
    why: str


@dataclass(frozen=True)
class RuleSupport:
    """What the engines make of one rule."""

    rule: str
    errors: tuple[EngineError, ...]  # one per engine that cannot run it
    missing_fields: tuple[str, ...]  # fields no trace records: checks on them are false

    def runs_on(self, engine: str) -> bool:
        return self.error(engine) is None

    def error(self, engine: str) -> EngineError | None:
        return next((e for e in self.errors if e.engine == engine), None)


def evaluable_rules(ruleset: RuleSet) -> list[CompiledRule]:
    """Every rule an engine would be asked to run, enabled or not: applicable to syscalls,
    resolved, and reading only fields a syscall trace can supply."""
    rules = []
    for index, rule in enumerate(ruleset.rules):
        tree = rule.ast
        if rule.applicable and tree is not None and not fields_needing_unavailable_data(tree):
            rules.append(CompiledRule(index, rule, evttypes(tree)))
    return rules


def check_rules(rules: Sequence[CompiledRule]) -> dict[int, RuleSupport]:
    """Rule index -> which engines can run the rule and which of its fields no trace records."""
    replay, missing = replay_errors(rules)
    sql = sql_errors(rules)
    out = {}
    for rule in rules:
        errors = tuple(e for e in (replay.get(rule.index), sql.get(rule.index)) if e)
        out[rule.index] = RuleSupport(rule.rule.name, errors, missing.get(rule.index, ()))
    return out


def runnable(engine: str, rules: Sequence[CompiledRule]) -> tuple[list[CompiledRule],
                                                                  list[Skipped]]:
    """The rules `engine` can run, and the others with the reason. An engine this module does
    not know is trusted with every rule."""
    checks = {"replay": lambda: replay_errors(rules)[0], "sql": lambda: sql_errors(rules)}
    if engine not in checks:
        return list(rules), []
    errors = checks[engine]()
    kept = [r for r in rules if r.index not in errors]
    skipped = [Skipped(r.rule.name, errors[r.index].message) for r in rules if r.index in errors]
    return kept, skipped


# ---- the replay engine ---------------------------------------------------------------------------


def replay_errors(rules: Sequence[CompiledRule]) -> tuple[dict[int, EngineError],
                                                          dict[int, tuple[str, ...]]]:
    """Rule index -> why the replay engine cannot run it; and -> the fields no trace records."""
    from analyze.replay_compile import compile_condition

    errors: dict[int, EngineError] = {}
    missing: dict[int, tuple[str, ...]] = {}
    for rule in rules:
        assert rule.rule.ast is not None
        try:
            fields = compile_condition(rule.rule.ast, rule.rule.name).missing_fields
        except RuleError as err:
            errors[rule.index] = _engine_error("replay", rule, err.message)
            fields = fields_without_column(rule.rule.ast)
        if fields:
            missing[rule.index] = fields
    return errors, missing


def fields_without_column(tree: ast.Expr) -> tuple[str, ...]:
    """The fields of `tree` the trace does not record, each asked of the replay compiler alone
    (for a condition it cannot compile as a whole)."""
    from analyze.replay_compile import compile_condition

    found: list[str] = []
    for f in dict.fromkeys(ast.fields_of(tree)):
        try:
            found.extend(compile_condition(ast.UnaryCheck(f, "exists")).missing_fields)
        except RuleError:
            continue  # a field the compiler rejects is reported by the rule's own error
    return tuple(dict.fromkeys(found))


def missing_field_warnings(rules: Sequence[CompiledRule]) -> list[RuleWarning]:
    """One warning per rule reading fields no trace records, as the replay engine warns."""
    _, missing = replay_errors(rules)
    return [missing_field_warning(r.rule, missing[r.index]) for r in rules if r.index in missing]


def missing_field_warning(rule: LoadedRule, fields: Sequence[str]) -> RuleWarning:
    return RuleWarning(
        MISSING_FIELD_WARNING,
        f"rule '{rule.name}': traces do not record {', '.join(fields)}; checks on it are false",
        rule.origin)


def _engine_error(engine: str, rule: CompiledRule, message: str) -> EngineError:
    # Both engines say "the <engine> engine cannot run rule '<name>': <why>".
    _, marker, why = message.partition(f"rule '{rule.rule.name}': ")
    return EngineError(engine, message, why if marker else message)


# ---- the SQL engine ------------------------------------------------------------------------------


def sql_errors(rules: Sequence[CompiledRule]) -> dict[int, EngineError]:
    """Rule index -> why the SQL engine cannot run it: the translator refuses the condition, or
    DuckDB refuses the query (bound on an empty table, one rule at a time if all fail)."""
    from analyze.sql_engine import SqlEngineError
    from analyze.sql_translate import SqlTranslateError, translate

    errors: dict[int, EngineError] = {}
    for rule in rules:
        assert rule.rule.ast is not None
        try:
            translate(rule.rule.ast)
        except SqlTranslateError as exc:
            errors[rule.index] = _engine_error("sql", rule, SqlEngineError(rule, str(exc)).message)
    translated = [r for r in rules if r.index not in errors]
    if not translated:
        return errors
    con = _empty_trace()
    try:
        if _bind_error(con, translated) is not None:
            for rule in translated:
                why = _bind_error(con, [rule])
                if why is not None:
                    message = SqlEngineError(rule, why).message
                    errors[rule.index] = _engine_error("sql", rule, message)
    finally:
        con.close()
    return errors


def _bind_error(con: DuckDBPyConnection, rules: Sequence[CompiledRule]) -> str | None:
    """DuckDB's first line of complaint about the rules' query over the empty trace, if any."""
    import duckdb

    from analyze.sql_engine import SqlEngineError, build_query

    try:
        query = build_query(rules, RunOptions())
        con.execute(query.sql, list(query.params)).fetchall()
    except SqlEngineError as err:
        return err.message
    except duckdb.Error as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        return lines[0] if lines else type(exc).__name__
    return None


def _empty_trace() -> DuckDBPyConnection:
    """An in-memory DuckDB with an empty `events` table of the trace schema and the SQL
    engine's macros: the query binds as on a real trace, without any file access."""
    import duckdb

    from analyze.query import VIEW
    from analyze.sql_engine import install_macros
    from schemas.trace import arrow_schema

    con = duckdb.connect(":memory:", config={"enable_external_access": False})
    try:
        con.register(VIEW, arrow_schema().empty_table())
    except duckdb.Error:
        con.close()
        raise
    return install_macros(con)
