"""The shipped rules' regression tests (rules/tests/*.spec.yaml) pass on both engines, against
the scenario traces recorded live (tests/fixtures/scenarios/), and cover every shipped rule and
every scenario. This is how CI runs `analyze test` on the project's own rules."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from analyze.resolve import load_rules
from analyze.spec_format import load_spec, spec_files

ROOT = Path(__file__).resolve().parent.parent
SPEC_DIR = "rules/tests"
SCENARIOS = ROOT / "tests" / "fixtures" / "scenarios"
# Shipped rules no scenario exercises, and why (a test fails when one becomes covered, or when
# a rule is neither covered nor listed here).
NOT_COVERED = {
    "Kernel Module Loaded": "loading a kernel module from a test would change the host's kernel",
}


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)  # the report names the specs by their relative paths
    monkeypatch.delenv("SYSREPLAY_DEBUG", raising=False)
    return ROOT


def test_shipped_rules_pass_their_specs(at_root: Path, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    result = CliRunner().invoke(cli.analyze, ["test", SPEC_DIR, "--junit", str(junit)])
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("PASSED: ")
    suites = ET.parse(junit).getroot()
    assert suites.get("failures") == "0"
    assert int(suites.get("tests") or 0) >= len(list(SCENARIOS.glob("*.parquet")))


def test_every_shipped_rule_and_every_scenario_is_tested(at_root: Path) -> None:
    specs = [load_spec(p) for p in spec_files([SPEC_DIR])]
    expected = {e.rule for s in specs for t in s.tests for e in t.expect if e.count != 0}
    rules = {r.name for s in specs for r in load_rules(s.rule_paths()).rules}
    assert sorted(rules - expected - set(NOT_COVERED)) == [], "shipped rules no spec fires"
    assert sorted(expected & set(NOT_COVERED)) == [], "covered now: remove from NOT_COVERED"
    traces = {Path(p).resolve() for s in specs for t in s.tests for p in s.trace_paths(t)}
    assert sorted(p.name for p in SCENARIOS.glob("*.parquet") if p.resolve() not in traces) == []
