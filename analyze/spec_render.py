"""`analyze test` reports: a rich table per spec, a diff per failure, a summary line; or JSON.

Pure functions from `analyze.spec_check` verdicts to renderables and data; nothing here reads a
clock, the host or the file system, so the same verdicts always render to the same bytes (at a
given console width).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from analyze.spec_check import CaseCheck, Got, RuleCheck, SpecCheck, failure_diff, summary_counts
from analyze.spec_format import RuleExpectation

SHOWN_NUMS = 4  # evt.nums shown in a table cell; the diff and JSON have them all
_DIFF_STYLES = (("+++", "bold"), ("---", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))


def render_report(specs: Sequence[SpecCheck]) -> RenderableType:
    parts: list[RenderableType] = [spec_table(s) for s in specs]
    failures = failure_blocks(specs)
    if failures:
        parts += [Text(""), Text("Failures", style="bold red")]
        for block in failures:
            parts += [Text(""), block]
    parts += [Text(""), summary_line(specs)]
    return Group(*parts)


def spec_table(spec: SpecCheck) -> Table:
    table = Table(title=Text(spec.path, style="bold"), title_justify="left", expand=False)
    for header in ("Test", "Rule", "Expected", *spec.engines, "TP", "FP", "FN", "Result"):
        table.add_column(header, justify="right" if header in ("TP", "FP", "FN") else "left")
    for test in spec.tests:
        for i, row in enumerate(test.rules):
            table.add_row(Text(test.name if i == 0 else ""), *_row_cells(row))
        note = _silent_note(test)
        if note or not test.rules:
            name = test.name if not test.rules else ""
            table.add_row(Text(name), Text(note or "no rule fired", style="dim"),
                          *[Text("")] * (len(spec.engines) + 4),
                          _result(test.passed) if not test.rules else Text(""))
        table.add_section()
    return table


def _row_cells(row: RuleCheck) -> list[Text]:
    counts = [row.counts(g) for g in row.got]
    known = [c for c in counts if c is not None]
    cells = [Text(row.rule), Text(expected_text(row), style="dim" if row.kind != "expected"
                                  else "")]
    cells += [_got_text(g) for g in row.got]
    for attr in ("tp", "fp", "fn"):
        values = [str(getattr(c, attr)) for c in known]
        text = values[0] if values and len(set(values)) == 1 else "/".join(values) or "-"
        bad = attr != "tp" and text not in ("0", "-")
        cells.append(Text(text, style="red" if bad else ""))
    if row.kind == "ignored" and row.passed:
        cells.append(Text("-", style="dim"))
    else:
        cells.append(_result(row.passed))
    return cells


def _result(passed: bool) -> Text:
    return Text("PASS", style="bold green") if passed else Text("FAIL", style="bold red")


def _silent_note(test: CaseCheck) -> str:
    return f"+{test.silent} silent rule(s)" if test.silent else ""


def expected_text(row: RuleCheck) -> str:
    if row.kind == "must_not_fire":
        return "none (must not fire)"
    if row.kind == "other":
        return "none (others: none)"
    if row.kind == "ignored":
        return "(ignored)"
    exp = row.expected
    text = _count_nums(exp.count if exp.count is not None else len(exp.evt_nums or ()),
                       exp.evt_nums)
    extra = [f"priority {exp.priority}"] if exp.priority else []
    if exp.output_contains:  # the texts themselves show in the diff when one is missing
        n = len(exp.output_contains)
        extra.append(f"{n} output text{'s' if n > 1 else ''}")
    return "; ".join([text, *extra])


def _got_text(got: Got) -> Text:
    if got.alerts is None:
        return Text("not run", style="yellow")
    return Text(_count_nums(len(got.alerts), got.evt_nums))


def _count_nums(count: int, nums: Sequence[int] | None) -> str:
    if not nums:
        return str(count)
    shown = ", ".join(str(n) for n in nums[:SHOWN_NUMS])
    more = ", …" if len(nums) > SHOWN_NUMS else ""
    return f"{count} [{shown}{more}]"


def failure_blocks(specs: Sequence[SpecCheck]) -> list[RenderableType]:
    out: list[RenderableType] = []
    for spec in specs:
        for test in spec.tests:
            for row in test.rules:
                if not row.passed:
                    out.append(failure_block(spec, test, row))
    return out


def failure_block(spec: SpecCheck, test: CaseCheck, row: RuleCheck) -> Text:
    text = Text()
    text.append("FAIL ", style="bold red")
    text.append(f"{spec.path} > {test.name} > {row.rule}\n", style="bold")
    for problem in row.problems:
        text.append(f"  • {problem}\n")
    for line in failure_diff(row):
        style = next((s for prefix, s in _DIFF_STYLES if line.startswith(prefix)), "")
        text.append(f"    {line}\n", style=style)
    text.rstrip()
    return text


def failure_text(row: RuleCheck) -> str:
    """A failure as plain text: the problems, then the diffs (JUnit's failure body)."""
    lines = [f"- {p}" for p in row.problems]
    diff = failure_diff(row)
    return "\n".join([*lines, *([""] if diff else []), *diff]) + "\n"


def summary_line(specs: Sequence[SpecCheck]) -> Text:
    tests, tests_failed, checks, checks_failed = summary_counts(specs)
    engines = sorted({e for s in specs for e in s.engines})
    passed = not tests_failed
    text = Text()
    text.append("PASSED" if passed else "FAILED",
                style="bold green" if passed else "bold red")
    text.append(f": {len(specs)} spec(s), {tests} test(s) ({tests_failed} failed), "
                f"{checks} rule check(s) ({checks_failed} failed); engines: "
                f"{', '.join(engines)}")
    return text


# ---- JSON ---------------------------------------------------------------------------------------


def report_json(specs: Sequence[SpecCheck]) -> dict[str, Any]:
    tests, tests_failed, checks, checks_failed = summary_counts(specs)
    return {
        "passed": not tests_failed,
        "summary": {"specs": len(specs), "tests": tests, "tests_failed": tests_failed,
                    "rule_checks": checks, "rule_checks_failed": checks_failed},
        "specs": [_spec_json(s) for s in specs],
    }


def _spec_json(spec: SpecCheck) -> dict[str, Any]:
    return {
        "spec": spec.path, "engines": list(spec.engines), "passed": spec.passed,
        "tests": [{
            "name": t.name, "traces": list(t.traces), "others": t.others, "passed": t.passed,
            "silent_rules": t.silent, "rules": [_rule_json(r) for r in t.rules],
        } for t in spec.tests],
    }


def _rule_json(row: RuleCheck) -> dict[str, Any]:
    engines: dict[str, Any] = {}
    for got in row.got:
        if got.alerts is None:
            engines[got.engine] = {"ran": False, "reason": got.reason}
            continue
        counts = row.counts(got)
        engines[got.engine] = {
            "ran": True, "count": len(got.alerts), "evt_nums": list(got.evt_nums),
            **({"tp": counts.tp, "fp": counts.fp, "fn": counts.fn} if counts else {}),
        }
    return {
        "rule": row.rule, "kind": row.kind, "passed": row.passed,
        "expected": expectation_json(row.expected), "priority": row.priority,
        "engines": engines, "problems": list(row.problems),
    }


def expectation_json(exp: RuleExpectation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if exp.count is not None:
        out["count"] = exp.count
    if exp.evt_nums is not None:
        out["evt_nums"] = list(exp.evt_nums)
    if exp.priority is not None:
        out["priority"] = exp.priority
    if exp.output_contains:
        out["output_contains"] = list(exp.output_contains)
    return out
