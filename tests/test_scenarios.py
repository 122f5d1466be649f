"""Scenarios (capture/scenarios.py): each fires exactly the rules it names, with both engines.

For every scenario, the rules of ours (rules/) and of Falco's stable file that fire on its trace
are exactly the ones the scenario names, the replay evaluator and the SQL engine select the same
events, and the benign workload fires nothing. Container scenarios carry the sandbox's container
(id, type docker, name and image from the stand-in runtime).

- live: one capture session records every scenario, as root, in about 10 s (`require_bpf`
  semantics: skipped on a developer machine, failing in CI);
- fixtures: the same checks on the committed traces in tests/fixtures/scenarios/, recorded by
  tests/fixtures/record-scenarios.sh (no root needed).
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import missing_bpf, unavailable
from rich.console import Console

import cli
from analyze.engine_api import CompiledRule, RunOptions, selected_rules
from analyze.resolve import load_rules
from analyze.run import load_engine
from capture.container_sandbox import docker_cgroup_dirs
from capture.scenario_render import results_table
from capture.scenario_runner import ScenarioResult, run_scenarios
from capture.scenarios import SCENARIO_BY_NAME, SCENARIOS, Scenario, select

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures" / "scenarios"
RULE_FILES = {
    "ours": REPO / "rules" / "sysreplay_rules.yaml",
    "upstream": REPO.parent / "shared" / "anchors" / "falco-rules" / "rules" / "falco_rules.yaml",
}
ALL = RunOptions(rule_matching="all")
ENGINES = ("replay", "sql")
MAX_FIXTURE_BYTES = 100_000
# Our rules no scenario performs, and why.
NOT_PERFORMED = {"Kernel Module Loaded": "loading a kernel module is not a safe behaviour"}


@functools.cache
def rules(key: str) -> tuple[CompiledRule, ...]:
    """The rules of one file ("ours", "upstream") as `analyze run` selects them."""
    path = RULE_FILES[key]
    if not path.exists():
        pytest.skip(f"{path} not present")
    selected, _skipped = selected_rules(load_rules([path]), ALL)
    return tuple(selected)


@functools.cache
def both_files() -> tuple[CompiledRule, ...]:
    """Ours and upstream in one rule set (their names and macros do not clash): one engine run
    per trace."""
    for key in RULE_FILES:
        rules(key)  # skips when a file is missing
    selected, _skipped = selected_rules(load_rules([RULE_FILES["upstream"],
                                                    RULE_FILES["ours"]]), ALL)
    return tuple(selected)


def check_rules(scenario: Scenario, trace: Path) -> None:
    by_engine = {name: {(m.evt_num, m.rule_name)
                        for m in load_engine(name).run([trace], both_files(), ALL)}
                 for name in ENGINES}
    assert by_engine["replay"] == by_engine["sql"], "the engines differ"
    fired = {rule for _, rule in by_engine["replay"]}
    ours = {r.rule.name for r in rules("ours")}
    assert fired & ours == set(scenario.ours), f"ours fired: {sorted(fired & ours)}"
    assert fired - ours == set(scenario.upstream), f"upstream fired: {sorted(fired - ours)}"


def check_container(scenario: Scenario, trace: Path, full_id: str | None = None) -> None:
    columns = ["container.id", "container.type", "container.name", "container.image",
               "container.image.repository", "evt.type", "evt.res"]
    got = pq.read_table(trace, columns=columns).to_pylist()
    inside = [r for r in got if r["container.id"] != "host"]
    if scenario.container is None:
        assert not inside
        return
    assert inside, "no event inside the container"
    ids = {r["container.id"] for r in inside}
    assert ids == {full_id[:12]} if full_id is not None else len(ids) == 1
    row = inside[0]
    assert row["container.type"] == "docker" and len(row["container.id"]) == 12
    assert row["container.name"] == f"sr-{scenario.name}"
    assert row["container.image"] == scenario.container.image
    assert row["container.image.repository"] == scenario.container.image.split(":")[0]
    # the command itself (not only the shim) ran inside: a successful execve in the container
    assert any(r["evt.type"] in ("execve", "execveat") and r["evt.res"] == "SUCCESS"
               for r in inside)


# ---- the registry (no capture) -------------------------------------------------------------------

def test_every_named_rule_exists() -> None:
    names = {key: {r.rule.name for r in rules(key)} for key in RULE_FILES}
    for s in SCENARIOS:
        assert set(s.ours) <= names["ours"], s.name
        assert set(s.upstream) <= names["upstream"], s.name
        assert not {rule for rule, _ in s.cannot_fire} & set(s.upstream), s.name


def test_every_rule_of_ours_has_a_scenario() -> None:
    covered = {r for s in SCENARIOS for r in s.ours}
    ours = {r.rule.name for r in rules("ours")}
    assert ours - covered == set(NOT_PERFORMED)


def test_benign_expects_nothing_and_names_are_unique() -> None:
    assert not SCENARIO_BY_NAME["benign"].ours and not SCENARIO_BY_NAME["benign"].upstream
    assert len(SCENARIO_BY_NAME) == len(SCENARIOS)
    assert select(["benign", "clear-log"]) == (SCENARIO_BY_NAME["clear-log"],
                                                SCENARIO_BY_NAME["benign"])


def test_cli_lists_scenarios_without_root() -> None:
    result = CliRunner().invoke(cli.capture, ["scenario", "--list"])
    assert result.exit_code == 0, result.output
    for s in SCENARIOS:
        assert s.name in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["nope", "-o", "x"], "Unknown scenario nope; known: read-sensitive-file"),
    (["-o", "x"], "Name the scenarios to record, or give --all"),
    (["benign"], "Give the output directory"),
    (["benign", "--all", "-o", "x"], "not both"),
])
def test_cli_refuses_bad_requests(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli.capture, ["scenario", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_results_table_shows_events_expectations_and_failures(tmp_path: Path) -> None:
    ok = ScenarioResult(SCENARIO_BY_NAME["clear-log"], tmp_path / "clear-log.parquet", 1234)
    bad = ScenarioResult(SCENARIO_BY_NAME["benign"], tmp_path / "benign.parquet", 5,
                         error="needs `curl` on PATH [x]")
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(results_table([ok, bad]))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert f"Recorded scenarios, in {tmp_path}" in text
    assert "1,234" in text and "ours: Log File Cleared" in text
    assert "upstream: Clear Log Activities" in text and "clear-log.parquet" in text
    assert "failed: needs `curl` on PATH [x]" in text  # escaped, not markup
    assert "none (must fire none of ours)" in text


# ---- the committed fixtures ----------------------------------------------------------------------

def fixture(name: str) -> Path:
    path = FIXTURES / f"{name}.parquet"
    if not path.exists():
        pytest.fail(f"{path} is missing: run tests/fixtures/record-scenarios.sh")
    return path


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_fixture_fires_the_intended_rules(scenario: Scenario) -> None:
    check_rules(scenario, fixture(scenario.name))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_fixture_container_and_size(scenario: Scenario) -> None:
    path = fixture(scenario.name)
    check_container(scenario, path)
    assert path.stat().st_size < MAX_FIXTURE_BYTES


def test_no_stray_fixtures() -> None:
    assert {p.stem for p in FIXTURES.glob("*.parquet")} == set(SCENARIO_BY_NAME)


# ---- live: every scenario recorded now (root, BPF) -----------------------------------------------

@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ScenarioResult]:
    if reason := missing_bpf():
        unavailable(reason)
    out = tmp_path_factory.mktemp("scenarios")
    return {r.scenario.name: r for r in run_scenarios(SCENARIOS, out)}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_live_scenario_fires_the_intended_rules(scenario: Scenario,
                                                live: dict[str, ScenarioResult]) -> None:
    result = live[scenario.name]
    assert result.ok, result.error
    assert result.events > 0
    check_container(scenario, result.trace, result.container_id)
    check_rules(scenario, result.trace)


def test_live_session_leaves_nothing_behind(live: dict[str, ScenarioResult]) -> None:
    places = (Path("/etc"), Path("/usr/local/bin"), Path("/var/log"), Path("/dev/shm"))
    assert not [f for place in places for f in place.glob("sysreplay-scenario-*")]
    ids = [r.container_id for r in live.values() if r.container_id is not None]
    assert len(ids) == sum(1 for s in SCENARIOS if s.container)
    assert not [d for cid in ids for d in docker_cgroup_dirs(cid) if d.exists()]
