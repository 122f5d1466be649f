"""Compare what the engines did with what a spec expects: a verdict per test and rule.

Rows of a test, in this order: the rules of `expect` and of `must_not_fire` as the spec lists
them, then the other rules (sorted by name) that fired in some engine or, with `others: none`,
that some engine could not run. Each row holds, per engine, the evt.nums the rule fired on (or
why it did not run), true/false positives and false negatives, and its problems:

- count, evt.num, priority or output mismatches against the expectation;
- a rule firing that must not (`must_not_fire`, or unlisted with `others: none`);
- a rule the test names (or, with `others: none`, any selected rule) that an engine did not
  run: a test that cannot be checked fails, it never passes silently;
- the engines disagreeing on the events a rule fired on.

TP/FP/FN count events when the expectation lists `evt_nums`, alerts when it gives only
`count` (TP = min(expected, got)). Everything is derived from the spec and the trace only, in a
fixed order, so a verdict is the same on every machine and run.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from analyze.alerts import Alert
from analyze.spec_format import RuleExpectation
from analyze.spec_run import CaseRun, EngineResult, SpecRun

Kind = Literal["expected", "must_not_fire", "other", "ignored"]
MAX_OUTPUTS = 5  # alerts quoted in a diff when their output lacks a wanted text


@dataclass(frozen=True)
class Got:
    """What one engine made of one rule: its alerts, or why it did not run the rule."""

    engine: str
    alerts: tuple[Alert, ...] | None  # None: not run
    reason: str = ""

    @property
    def evt_nums(self) -> tuple[int, ...]:
        return tuple(a.evt_num for a in self.alerts or ())


@dataclass(frozen=True)
class Counts:
    tp: int
    fp: int
    fn: int


@dataclass(frozen=True)
class RuleCheck:
    rule: str
    kind: Kind
    expected: RuleExpectation  # count 0 for must_not_fire and other
    got: tuple[Got, ...]  # engine order
    priority: str  # the rule's own priority
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def checked(self) -> bool:
        """Ignored rows (others: ignore) are shown but are no test of their own."""
        return self.kind != "ignored" or bool(self.problems)

    def counts(self, got: Got) -> Counts | None:
        if got.alerts is None or self.kind == "ignored":
            return None
        return confusion(self.expected, got.evt_nums)


@dataclass(frozen=True)
class CaseCheck:
    name: str
    traces: tuple[str, ...]
    rules: tuple[RuleCheck, ...]
    silent: int  # selected rules, not listed, that fired nowhere (passes of `others: none`)
    others: str

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)


@dataclass(frozen=True)
class SpecCheck:
    path: str
    engines: tuple[str, ...]
    tests: tuple[CaseCheck, ...]

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tests)


def check_spec(run: SpecRun) -> SpecCheck:
    return SpecCheck(run.spec.path, run.engines, tuple(check_test(t) for t in run.tests))


def check_test(run: CaseRun) -> CaseCheck:
    test = run.test
    rows = [_row(run, e.rule, "expected", e) for e in test.expect]
    rows += [_row(run, r, "must_not_fire", RuleExpectation(r, count=0))
             for r in test.must_not_fire]
    named = {e.rule for e in test.expect} | set(test.must_not_fire)
    fired = {rule for e in run.engines for rule in e.alerts}
    unrun = {rule for e in run.engines for rule in e.not_run}
    others = sorted((fired | (unrun if test.others == "none" else set())) - named)
    kind: Kind = "other" if test.others == "none" else "ignored"
    rows += [_row(run, r, kind, RuleExpectation(r, count=0)) for r in others]
    silent = len(set(run.selected) - named - set(others)) if test.others == "none" else 0
    return CaseCheck(test.name, test.traces, tuple(rows), silent, test.others)


def _row(run: CaseRun, rule: str, kind: Kind, expected: RuleExpectation) -> RuleCheck:
    got = tuple(_got(e, rule, run) for e in run.engines)
    priority = run.priorities.get(rule, "")
    return RuleCheck(rule, kind, expected, got, priority,
                     tuple(_problems(kind, expected, got, priority)))


def _got(result: EngineResult, rule: str, run: CaseRun) -> Got:
    if rule in run.not_selected:
        return Got(result.engine, None, run.not_selected[rule])
    if rule in result.not_run:
        return Got(result.engine, None, result.not_run[rule])
    return Got(result.engine, result.alerts.get(rule, ()))


def confusion(expected: RuleExpectation, got: Sequence[int]) -> Counts:
    if expected.evt_nums is not None:
        want, have = set(expected.evt_nums), set(got)
        return Counts(len(want & have), len(have - want), len(want - have))
    count = expected.count or 0
    return Counts(min(count, len(got)), max(0, len(got) - count), max(0, count - len(got)))


# ---- problems -----------------------------------------------------------------------------------


def _problems(kind: Kind, expected: RuleExpectation, got: Sequence[Got],
              priority: str) -> list[str]:
    ran = [g for g in got if g.alerts is not None]
    out = _not_run(kind, got, ran)
    if kind != "ignored":
        per_engine = [_mismatches(kind, expected, g) for g in ran]
        if per_engine and all(p == per_engine[0] for p in per_engine):
            out += per_engine[0]
        else:
            out += [f"[{g.engine}] {p}" for g, ps in zip(ran, per_engine, strict=True)
                    for p in ps]
        if expected.priority is not None and expected.priority != priority:
            out.append(f"priority: expected {expected.priority}, the rule has {priority}")
    out += _disagreement(ran)
    return out


def _not_run(kind: Kind, got: Sequence[Got], ran: Sequence[Got]) -> list[str]:
    unrun = [g for g in got if g.alerts is None]
    if not unrun or (kind == "ignored" and not any(g.alerts for g in ran)):
        return []
    if not ran and len({g.reason for g in unrun}) == 1:
        return [f"not run: {unrun[0].reason}"]
    return [f"not run by the {g.engine} engine: {g.reason}" for g in unrun]


def _mismatches(kind: Kind, expected: RuleExpectation, got: Got) -> list[str]:
    nums = got.evt_nums
    if kind in ("must_not_fire", "other"):
        if not nums:
            return []
        why = "must not fire" if kind == "must_not_fire" else "is not expected (others: none)"
        return [f"fired {len(nums)} time(s) but {why}: evt.num {_nums(nums)}"]
    out = []
    if expected.count is not None and expected.count != len(nums):
        out.append(f"count: expected {expected.count}, got {len(nums)}")
    if expected.evt_nums is not None:
        want, have = set(expected.evt_nums), set(nums)
        if want - have:
            out.append(f"missing (false negatives): evt.num {_nums(sorted(want - have))}")
        if have - want:
            out.append(f"unexpected (false positives): evt.num {_nums(sorted(have - want))}")
    for text in expected.output_contains:
        lacking = [a.evt_num for a in got.alerts or () if text not in a.output]
        if lacking:
            out.append(f"output lacks {json.dumps(text)}: evt.num {_nums(lacking)}")
    return out


def _disagreement(ran: Sequence[Got]) -> list[str]:
    if len(ran) < 2 or all(g.evt_nums == ran[0].evt_nums for g in ran):
        return []
    first = ran[0]
    out = []
    for other in ran[1:]:
        a, b = set(first.evt_nums), set(other.evt_nums)
        if a != b:
            out.append(
                f"engines disagree: {first.engine} fired {len(a)} time(s), {other.engine} "
                f"{len(b)}; only {first.engine}: [{_nums(sorted(a - b))}], only "
                f"{other.engine}: [{_nums(sorted(b - a))}]"
            )
    return out


def _nums(nums: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(str(n) for n in nums[:limit])
    return shown + (f", … ({len(nums) - limit} more)" if len(nums) > limit else "")


# ---- diffs --------------------------------------------------------------------------------------


def failure_diff(check: RuleCheck) -> list[str]:
    """Unified diffs of the expectation against each engine's result (one when they agree),
    then, when the engines disagree, of one engine against the other."""
    want = expected_lines(check.expected)
    ran = [g for g in check.got if g.alerts is not None]
    sides: dict[tuple[str, ...], list[str]] = {}
    for g in ran:
        sides.setdefault(tuple(actual_lines(check.expected, g, check.priority)), []).append(
            g.engine)
    out: list[str] = []
    if check.kind != "ignored":
        for lines, engines in sides.items():
            out += _unified(want, list(lines), "expected", ", ".join(engines))
    if ran:
        first, *rest = ran
        for other in rest:
            if other.evt_nums == first.evt_nums:
                continue
            out += _unified([f"evt.num: {n}" for n in first.evt_nums],
                            [f"evt.num: {n}" for n in other.evt_nums],
                            first.engine, other.engine)
    return out


def _unified(a: list[str], b: list[str], label_a: str, label_b: str) -> list[str]:
    return list(difflib.unified_diff(a, b, label_a, label_b, lineterm="", n=3))


def expected_lines(expected: RuleExpectation) -> list[str]:
    out = []
    if expected.count is not None:
        out.append(f"count: {expected.count}")
    out += [f"evt.num: {n}" for n in expected.evt_nums or ()]
    if expected.priority is not None:
        out.append(f"priority: {expected.priority}")
    out += [f"output contains: {json.dumps(t)}" for t in expected.output_contains]
    return out


def actual_lines(expected: RuleExpectation, got: Got, priority: str) -> list[str]:
    """The engine's result in the shape of `expected`, so a diff shows only what differs; a
    rule that must stay silent shows the events it fired on."""
    nums = got.evt_nums
    out = []
    if expected.count is not None:
        out.append(f"count: {len(nums)}")
    if expected.evt_nums is not None or (expected.count == 0 and nums):
        out += [f"evt.num: {n}" for n in nums]
    if expected.priority is not None:
        out.append(f"priority: {priority}")
    for text in expected.output_contains:
        lacking = [a for a in got.alerts or () if text not in a.output]
        if not lacking:
            out.append(f"output contains: {json.dumps(text)}")
            continue
        out += [f"output of evt.num {a.evt_num}: {json.dumps(a.output)}"
                for a in lacking[:MAX_OUTPUTS]]
        if len(lacking) > MAX_OUTPUTS:
            out.append(f"… and {len(lacking) - MAX_OUTPUTS} more alert(s) lacking it")
    return out


def summary_counts(specs: Sequence[SpecCheck]) -> tuple[int, int, int, int]:
    """(tests, tests failed, rule checks, rule checks failed)."""
    tests = [t for s in specs for t in s.tests]
    checks = [r for t in tests for r in t.rules if r.checked]
    return (len(tests), sum(not t.passed for t in tests), len(checks),
            sum(not r.passed for r in checks))
