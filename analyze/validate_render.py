"""Render a `ValidationReport`: a rich summary for people, Falco-style JSON for machines.

Pure functions build renderables; the CLI prints them. Every traced or user-written string goes
through `escape()` or `Text` so a `[` in a rule name or condition never reads as markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from analyze.engine_support import ENGINES, EngineError
from analyze.error_render import error_snippet
from analyze.errors import RuleError, RuleWarning, SourceRef
from analyze.validate import RuleSummary, ValidationReport


def _where(source: SourceRef | None) -> str:
    return str(source) if source is not None else "-"


def _error_block(err: RuleError) -> RenderableType:
    head = Text()
    head.append(_where(err.source), style="bold")
    head.append("\n" + err.message)
    if err.position is not None:
        pos = err.position
        head.append(f"  ({err.text_label} line {pos.line}, column {pos.col})")
    snippet = error_snippet(err)
    body: list[RenderableType] = [head]
    if snippet is not None:
        body.append(snippet)
    return Panel(Group(*body), title="error", title_align="left", border_style="red")


def _summary(report: ValidationReport) -> RenderableType:
    applicable = sum(1 for r in report.rules if r.applicable)
    status = "[bold green]OK[/]" if report.ok else f"[bold red]{len(report.errors)} error(s)[/]"
    lines = [
        f"Files:    {len(report.files)}  " + escape(", ".join(report.files)),
        f"Rules:    {len(report.rules)} ({applicable} for syscalls, "
        f"{len(report.rules) - applicable} for other sources or skipped, not applicable)",
        f"Macros:   {report.macros}    Lists: {report.lists}",
        f"Warnings: {len(report.warnings)}    Not evaluable here: {len(report.not_evaluable)}",
        "Engines:  " + _engines_line(report),
        f"Result:   {status}",
    ]
    return Panel("\n".join(lines), title="analyze validate", title_align="left")


def _engines_line(report: ValidationReport) -> str:
    gaps = [f"{e} cannot run {len(report.unsupported(e))}" for e in ENGINES
            if report.unsupported(e)]
    text = (", ".join(gaps) + " rule(s) (see Engine support)" if gaps
            else "every evaluable rule runs on " + " and ".join(ENGINES))
    missing = len(report.reading_missing_fields)
    if missing:
        text += f"; {missing} rule(s) read fields traces do not record"
    return text


def _rules_table(rules: tuple[RuleSummary, ...]) -> Table:
    table = Table(title="Rules", show_lines=False, expand=True)
    table.add_column("rule", overflow="fold", ratio=3)
    table.add_column("priority")
    table.add_column("evt.type", overflow="fold", ratio=2)
    table.add_column("fields", overflow="fold", ratio=4)
    table.add_column("status", overflow="fold", ratio=2)
    for r in rules:
        if r.evttypes is None:
            types = "-"
        elif r.all_evttypes:
            types = f"all ({len(r.evttypes)})"
        else:
            types = ", ".join(r.evttypes)
        status = _status(r)
        if not r.enabled:
            status = "disabled; " + status
        table.add_row(
            Text(r.name), r.priority, Text(types), Text(", ".join(r.fields)), Text(status)
        )
    return table


def _status(r: RuleSummary) -> str:
    if not r.evaluable:
        return r.reason or "not applicable"
    engines = [e for e in ENGINES if r.runs_on(e) is not False]
    if len(engines) == len(ENGINES):
        return "ok"
    return f"{engines[0]} engine only" if engines else "no engine can run it"


def _engine_table(rules: tuple[RuleSummary, ...]) -> Table:
    """The rules some engine cannot run, with each engine's reason."""
    table = Table(title="Engine support", expand=True)
    table.add_column("rule", overflow="fold", ratio=2)
    for engine in ENGINES:
        table.add_column(engine, overflow="fold", ratio=3)
    for r in rules:
        assert r.engines is not None
        cells = [_engine_cell(r.engines.error(e)) for e in ENGINES]
        table.add_row(Text(r.name), *cells)
    return table


def _engine_cell(error: EngineError | None) -> Text:
    return Text("ok") if error is None else Text("cannot run: " + error.why, style="red")


def _warnings_table(warnings: tuple[RuleWarning, ...]) -> Table:
    table = Table(title="Warnings", expand=True)
    table.add_column("code")
    table.add_column("where", overflow="fold")
    table.add_column("message", overflow="fold")
    for w in warnings:
        table.add_row(w.code, Text(_where(w.source)), Text(w.message))
    return table


def render_report(report: ValidationReport, *, show_rules: bool = True) -> RenderableType:
    parts: list[RenderableType] = [_summary(report)]
    parts.extend(_error_block(e) for e in report.errors)
    if report.warnings:
        parts.append(_warnings_table(report.warnings))
    if report.engine_gaps:
        parts.append(_engine_table(report.engine_gaps))
    if show_rules and report.rules:
        parts.append(_rules_table(report.rules))
    return Group(*parts)


# ---- JSON (shaped like Falco's load results, plus per-rule details) ---------------------------


def _location(source: SourceRef | None) -> dict[str, Any]:
    if source is None:
        return {}
    kind, _, name = source.item.partition(" ")
    return {
        "item_type": kind,
        "item_name": name.strip("'"),
        "position": {"name": source.path, "line": source.line, "column": source.col},
    }


def error_json(err: RuleError) -> dict[str, Any]:
    out: dict[str, Any] = {"code": err.code, "message": err.message}
    context: dict[str, Any] = {"locations": [_location(err.source)] if err.source else []}
    if err.position is not None:
        context["condition_position"] = {
            "line": err.position.line, "column": err.position.col, "offset": err.position.offset,
        }
        context["snippet"] = err.text
    out["context"] = context
    return out


def warning_json(w: RuleWarning) -> dict[str, Any]:
    out: dict[str, Any] = {"code": w.code, "message": w.message}
    out["context"] = {"locations": [_location(w.source)] if w.source else []}
    return out


def rule_json(r: RuleSummary) -> dict[str, Any]:
    return {
        "name": r.name, "priority": r.priority, "source": r.source, "enabled": r.enabled,
        "applicable": r.applicable, "evaluable": r.evaluable, "reason": r.reason,
        "fields": list(r.fields), "unavailable_fields": list(r.unavailable_fields),
        "evttypes": list(r.evttypes) if r.evttypes is not None else None,
        "matches_all_evttypes": r.all_evttypes, "tags": list(r.tags),
        "engines": engines_json(r), "missing_fields": list(r.missing_fields),
        "location": _location(r.origin),
    }


def engines_json(r: RuleSummary) -> dict[str, Any] | None:
    """{"replay": true, "sql": false, "sql_error": "..."}; None when the rule was not tried."""
    if r.engines is None:
        return None
    out: dict[str, Any] = {}
    for engine in ENGINES:
        error = r.engines.error(engine)
        out[engine] = error is None
        if error is not None:
            out[f"{engine}_error"] = error.why
    return out


def report_json(report: ValidationReport) -> dict[str, Any]:
    return {
        "successful": report.ok,
        "files": list(report.files),
        "counts": {
            "rules": len(report.rules), "macros": report.macros, "lists": report.lists,
            "errors": len(report.errors), "warnings": len(report.warnings),
            "not_evaluable": len(report.not_evaluable),
            "engine_unsupported": {e: len(report.unsupported(e)) for e in ENGINES},
            "fields_not_in_trace": len(report.reading_missing_fields),
        },
        "errors": [error_json(e) for e in report.errors],
        "warnings": [warning_json(w) for w in report.warnings],
        "rules": [rule_json(r) for r in report.rules],
    }
