"""The replay evaluator and the SQL translator must agree, rule by rule, event by event.

Every rule of every rule file (ours in rules/, Falco's stable file and its legacy 4.0.0 file,
whose evt.dir rules suit captures holding enter and exit events), disabled ones included, and
every macro of those files as a rule of its own, runs with `rule_matching: all` over every
fixture trace: the shared captures, imported, and the traces our own capture recorded into
tests/fixtures/. The oracle conditions run the same way, as rules, over every trace, and so do
their sysdig equivalents.
"""

from __future__ import annotations

import functools
from pathlib import Path

import engines_fixture as ef
import pytest

from analyze.engine_api import CompiledRule

FALCO_RULES = ef.SHARED / "falco-rules"
RULE_FILES = {
    "sysreplay": ef.REPO / "rules",
    "falco-stable": FALCO_RULES / "rules" / "falco_rules.yaml",
    "falco-legacy-4.0.0": FALCO_RULES / "rules-legacy" / "falco_rules-4.0.0.yaml",
}
# Our own recorded traces: tests/fixtures/*.parquet and the scenario traces (one per attack
# behaviour, tests/fixtures/scenarios/), which fire most of the rules.
OWN_TRACES = {f"own:{p.relative_to(ef.FIXTURES)}": p for p in (
    *ef.own_fixture_traces(), *sorted((ef.FIXTURES / "scenarios").glob("*.parquet")))}
TRACES = (*ef.DIFFERENTIAL_CAPTURES, *OWN_TRACES)


@pytest.fixture(scope="session")
def trace_of(tmp_path_factory: pytest.TempPathFactory) -> functools.partial[Path]:
    """trace_of(name) -> the trace file (shared captures are imported on first use)."""
    return functools.partial(_trace, ef.trace_cache_dir(tmp_path_factory))


def _trace(cache: Path, name: str) -> Path:
    if name in OWN_TRACES:
        return OWN_TRACES[name]
    return ef.imported_traces(cache)[name]


@functools.cache
def rule_file_rules(name: str) -> tuple[list[CompiledRule], list[str]]:
    path = RULE_FILES[name]
    if not path.exists():
        pytest.skip(f"{path} not present")
    return ef.compile_rule_files([path])


@functools.cache
def both_engines(trace: Path, rules_key: str) -> tuple[dict[str, ef.Selection], ...]:
    if rules_key == "conditions":
        return tuple(ef.condition_selections(e, trace) for e in ef.ENGINES)
    rules = rule_file_rules(rules_key)[0]
    return tuple(ef.run_rules(ef.engine(e), trace, rules) for e in ef.ENGINES)


def assert_agree(replay: dict[str, ef.Selection], sql: dict[str, ef.Selection]) -> None:
    assert replay.keys() == sql.keys()
    problems = [f"{rule}: " + ef.describe_difference("replay", replay[rule], "sql", sql[rule])
                for rule in replay
                if replay[rule] != sql[rule] or isinstance(replay[rule], str)]
    assert not problems, f"{len(problems)} rules differ or fail:\n" + "\n".join(problems)


@pytest.mark.parametrize("trace", TRACES)
@pytest.mark.parametrize("rule_file", RULE_FILES)
def test_rule_file(rule_file: str, trace: str, trace_of: functools.partial[Path]) -> None:
    rules, _skipped = rule_file_rules(rule_file)
    assert rules, f"{rule_file}: no rule can run"
    assert_agree(*both_engines(trace_of(trace), rule_file))


@pytest.mark.parametrize("trace", TRACES)
def test_oracle_conditions(trace: str, trace_of: functools.partial[Path]) -> None:
    assert_agree(*both_engines(trace_of(trace), "conditions"))


# Without this the differential could agree trivially on nothing. Upstream rules fire on none
# of the shared captures (sysdig agrees), so for those files it is their macros that fire.
MIN_FIRING = {"sysreplay": 2, "falco-stable": 10, "falco-legacy-4.0.0": 10}


@pytest.mark.parametrize("rule_file", RULE_FILES)
def test_rule_file_fires_somewhere(rule_file: str, trace_of: functools.partial[Path]) -> None:
    fired = {
        rule for name in ef.DIFFERENTIAL_CAPTURES
        for rule, sel in both_engines(trace_of(name), rule_file)[0].items()
        if not isinstance(sel, str) and sel
    }
    assert len(fired) >= MIN_FIRING[rule_file], sorted(fired)

