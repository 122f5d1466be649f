"""Run the tests of a spec through the engines, the way `analyze run` does, and keep per rule
what each engine made of it.

The pieces are `analyze run`'s own: `load_rules` once per spec, `selected_rules` with the spec's
options, `engine_support.runnable` once per spec and engine (which rules the engine can run, and
why not the others: the check `analyze run` makes per run), then per test and engine the
engine's `run` and `build_alerts`. A fresh engine object per run, so no state carries over.
Comparing with the expectations is `analyze.spec_check`'s job.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from analyze.alerts import Alert, build_alerts
from analyze.engine_api import CompiledRule, Match, Skipped, selected_rules
from analyze.engine_support import runnable
from analyze.resolve import load_rules
from analyze.ruleset import RuleSet
from analyze.run import pick_engine
from analyze.spec_format import Spec, SpecTest
from analyze.trace_reader import open_trace

BOTH_ENGINES = ("replay", "sql")


@dataclass(frozen=True)
class EngineResult:
    """One engine on one test: alerts by rule (rules that ran and fired), and what it left out."""

    engine: str
    alerts: Mapping[str, tuple[Alert, ...]]
    not_run: Mapping[str, str]  # rule -> why this engine did not run it


@dataclass(frozen=True)
class CaseRun:
    test: SpecTest
    engines: tuple[EngineResult, ...]
    selected: tuple[str, ...]  # rules the options select (definition order)
    not_selected: Mapping[str, str]  # rule -> why the options leave it out (disabled, tags...)
    priorities: Mapping[str, str]  # every loaded rule's priority


@dataclass(frozen=True)
class SpecRun:
    spec: Spec
    tests: tuple[CaseRun, ...]
    engines: tuple[str, ...]


def run_spec(spec: Spec, engines: Sequence[str] = BOTH_ENGINES) -> SpecRun:
    """Load the spec's rules and run every test through every engine (errors raise)."""
    ruleset = load_rules(spec.rule_paths())
    check_rule_names(spec, ruleset)
    rules, skipped = selected_rules(ruleset, spec.options)
    if not rules:  # a spec that tests nothing is a mistake, not a pass
        raise spec.error(spec.rules_at[0], f"No rule of {', '.join(spec.rules)} runs: every "
                         "one is disabled, filtered out by the options, or needs fields a "
                         "trace cannot supply.")
    not_selected = {s.rule: s.reason for s in skipped}
    for rule in ruleset.rules:
        if not rule.enabled:
            not_selected.setdefault(rule.name, "disabled")
    priorities = {r.name: r.priority for r in ruleset.rules}
    prepared = [_prepare(name, rules) for name in engines]
    runs = tuple(
        CaseRun(test, tuple(_run_engine(spec, test, p) for p in prepared),
                tuple(r.rule.name for r in rules), not_selected, priorities)
        for test in spec.tests
    )
    return SpecRun(spec, runs, tuple(engines))


@dataclass(frozen=True)
class _Prepared:
    """An engine and the rules it can run: `analyze run`'s check (`engine_support.runnable`),
    made once per spec rather than once per trace (it binds every rule: most of a small run)."""

    engine: str
    rules: tuple[CompiledRule, ...]
    not_run: Mapping[str, str]


def _prepare(name: str, rules: Sequence[CompiledRule]) -> _Prepared:
    kept, skipped = runnable(name, rules)
    return _Prepared(pick_engine(name).name, tuple(kept), _reasons(skipped))


def _run_engine(spec: Spec, test: SpecTest, prepared: _Prepared) -> EngineResult:
    trace = open_trace(list(spec.trace_paths(test)))
    info = trace.info()
    matches: list[Match] = []
    if prepared.rules:  # a fresh engine per run: no state carries over between tests
        matches = pick_engine(prepared.engine).run(trace.paths, prepared.rules, spec.options)
    hostname = info.hostnames[0] if info.hostnames else ""
    alerts: dict[str, list[Alert]] = {}
    for alert in build_alerts(trace, prepared.rules, matches, hostname):
        alerts.setdefault(alert.rule, []).append(alert)
    return EngineResult(
        engine=prepared.engine,
        alerts={rule: tuple(sorted(a, key=lambda x: x.evt_num)) for rule, a in alerts.items()},
        not_run=prepared.not_run,
    )


def _reasons(skipped: Sequence[Skipped]) -> dict[str, str]:
    return {s.rule: s.reason for s in skipped}


def check_rule_names(spec: Spec, ruleset: RuleSet) -> None:
    """Every rule a test names must be a rule of the loaded files: a typo is an error, not a
    test that passes because a rule that does not exist never fires."""
    known = {r.name for r in ruleset.rules}
    for test in spec.tests:
        named = [(e.rule, e.at) for e in test.expect]
        named += list(zip(test.must_not_fire, test.must_not_fire_at, strict=True))
        for rule, at in named:
            if rule in known:
                continue
            close = difflib.get_close_matches(rule, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise spec.error(at, f"No rule named {rule!r} in {', '.join(spec.rules)}{hint}")
