"""Shared helpers of the engine acceptance tests (oracle, differential, coverage).

- the shared sysdig/Falco captures, imported once per test session into a cache directory;
- conditions turned into `CompiledRule`s exactly as `analyze run` builds them (rule file -> loader
  -> `selected_rules`), so the engines see what they will see in real use;
- both engines, loaded the way `analyze run` loads them, and a runner that returns the selected
  `evt.num`s per rule (or the error an engine raised for it);
- sysdig, run as the oracle, with its answers cached for the session.

Imported by the test modules (tests/ is on sys.path under pytest); it holds no tests itself.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import unavailable

from analyze.engine_api import CompiledRule, Engine, Match, RunOptions, selected_rules
from analyze.resolve import load_rules
from analyze.ruleset import RuleSet
from capture.scap_import import import_scap

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED = REPO.parent / "shared" / "anchors"
SCAP_DIR = SHARED / "scap"
FIXTURES = TESTS / "fixtures"
ORACLE_CONDITIONS = TESTS / "oracle_conditions.yaml"

# The captures the oracle conditions name, by short name, and how many events each holds.
CAPTURES = {
    "k8s": "bencer_k8s__capture.scap",
    "psp0": "falco__psp_run_as_user_0_container.scap",
    "curl": "libs__curl_google.scap",
    "sample": "libs__sample.scap",
    "cat": "falco__cat_write.scap",
    "v6conn": "libs__single_ipv6_conn.scap",
    "v6client": "libs__test_ipv6_client.scap",
}
CAPTURE_EVENTS = {
    "k8s": 143904, "psp0": 3796, "curl": 1221, "sample": 402, "cat": 85, "v6conn": 28,
    "v6client": 68,
}
# Every shared capture sysdig 0.29 reads and that holds events: the differential runs on all.
DIFFERENTIAL_CAPTURES = (
    *CAPTURES.values(),
    "falco__connect_localhost.scap",
    "falco__open-multiple-files.scap",
    "falco__ping_sendto.scap",
    "falco__syscall.scap",
    "falco__psp_privileged.scap",
    "falco__psp_run_as_user_65534_container.scap",
    "falco__psp_write_tmp_test.scap",
)
ENGINES = ("replay", "sql")
ALL = RunOptions(rule_matching="all")


# ---- the oracle conditions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One entry of oracle_conditions.yaml."""

    id: str
    condition: str
    equivalent: str | None = None  # what sysdig runs instead (sysdig 0.29 lacks the construct)
    sysdig: dict[str, int] = field(default_factory=dict)  # capture -> events sysdig selects
    engines: tuple[str, ...] = ()  # captures for a condition only compared between engines
    expect: dict[str, int] = field(default_factory=dict)  # engine-only: expected counts
    sysdig_differs: dict[str, str] = field(default_factory=dict)  # capture -> known reason

    @property
    def oracle_condition(self) -> str:
        return self.equivalent or self.condition

    @property
    def captures(self) -> tuple[str, ...]:
        return tuple(self.sysdig) or self.engines


def load_cases() -> list[Case]:
    items = yaml.safe_load(ORACLE_CONDITIONS.read_text())
    return [Case(id=i["id"], condition=i["condition"], equivalent=i.get("equivalent"),
                 sysdig=i.get("sysdig", {}), engines=tuple(i.get("engines", ())),
                 expect=i.get("expect", {}), sysdig_differs=i.get("sysdig_differs", {}))
            for i in items]


@functools.cache
def condition_rules() -> list[CompiledRule]:
    """Every oracle condition as a rule named by its id, and each sysdig equivalent as
    "ID~equivalent"."""
    cases = load_cases()
    conditions = {c.id: c.condition for c in cases}
    conditions |= {f"{c.id}~equivalent": c.equivalent for c in cases if c.equivalent}
    return compile_conditions(conditions)


@functools.cache
def condition_selections(engine_name: str, trace: Path) -> dict[str, Selection]:
    """What `engine_name` selects on `trace` for every oracle condition (once per session)."""
    return run_rules(engine(engine_name), trace, condition_rules())


# ---- what the machine has ----------------------------------------------------------------------


def require_sysdig() -> str:
    """The sysdig binary; skip without it (fail under SYSREPLAY_REQUIRE_ROOT_TESTS=1)."""
    found = shutil.which("sysdig")
    if found is None:
        unavailable("needs sysdig 0.29 (apt-get install sysdig), the oracle and the importer")
    assert found is not None
    return found


def require_shared_captures() -> None:
    """The shared captures are reference data beside the repository, not part of it."""
    if not SCAP_DIR.is_dir():
        pytest.skip(f"shared captures not present in {SCAP_DIR}")


# ---- imported traces ---------------------------------------------------------------------------

_import_lock = threading.Lock()
_imported: dict[str, Path] = {}


def imported_traces(cache_dir: Path, names: Iterable[str] = DIFFERENTIAL_CAPTURES
                    ) -> dict[str, Path]:
    """Capture file name -> its trace, importing each capture at most once per session."""
    require_shared_captures()
    require_sysdig()
    with _import_lock:
        todo = [n for n in names if n not in _imported]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            done = pool.map(lambda n: (n, _import_one(n, cache_dir)), todo)
            _imported.update(done)
        return {n: _imported[n] for n in names}


def trace_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory per session for the imported captures, whichever test module asks first."""
    cache = tmp_path_factory.getbasetemp() / "imported-captures"
    cache.mkdir(exist_ok=True)
    return cache


def _import_one(name: str, cache_dir: Path) -> Path:
    dst = cache_dir / f"{name}.parquet"
    import_scap(SCAP_DIR / name, dst)
    return dst


def own_fixture_traces() -> list[Path]:
    """Traces recorded by our own capture and kept as test fixtures (tests/fixtures/*.parquet;
    subdirectories are left alone: they may hold deliberately broken files)."""
    return sorted(FIXTURES.glob("*.parquet"))


# ---- rules from conditions ---------------------------------------------------------------------


def rules_yaml(conditions: Mapping[str, str], macros: Mapping[str, str] | None = None) -> str:
    """A Falco rule file with the macros, then one rule per (name, condition)."""
    items: list[dict[str, str]] = [
        {"macro": name, "condition": condition} for name, condition in (macros or {}).items()
    ]
    items += [
        {"rule": name, "desc": name, "condition": condition, "output": f"{name} %evt.num",
         "priority": "INFO"}
        for name, condition in conditions.items()
    ]
    return yaml.safe_dump(items, sort_keys=False, width=1000)


def compile_conditions(conditions: Mapping[str, str],
                       macros: Mapping[str, str] | None = None) -> list[CompiledRule]:
    """Load `conditions` as rules, as `analyze run` does; every one must be runnable."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conditions.yaml"
        path.write_text(rules_yaml(conditions, macros))
        ruleset = load_rules([path])
    rules, skipped = selected_rules(ruleset, ALL)
    assert not skipped, f"conditions that would not run: {skipped}"
    return rules


def compile_rule_files(paths: Sequence[Path], with_macros: bool = True
                       ) -> tuple[list[CompiledRule], list[str]]:
    """Every rule of the files, disabled ones included, and (with `with_macros`) every macro as
    a rule of its own named "macro:NAME": upstream rules rarely fire on the shared captures, while
    their building blocks (spawned_process, open_read, container, ...) do, so the macros give the
    engines real work on the same conditions. Returns the runnable rules and, for the others,
    why they are left out (not applicable to syscalls, or needing fields a trace lacks)."""
    ruleset = load_rules(paths)
    if with_macros and ruleset.macros:
        with tempfile.TemporaryDirectory() as tmp:
            extra = Path(tmp) / "macros-as-rules.yaml"
            extra.write_text(rules_yaml({f"macro:{m}": m for m in ruleset.macros}))
            ruleset = load_rules([*paths, extra], collect_errors=True)
        assert not ruleset.errors, [str(e) for e in ruleset.errors]
    ruleset = enable_all(ruleset)
    rules, skipped = selected_rules(ruleset, ALL)
    return rules, [f"{s.rule}: {s.reason}" for s in skipped]


def enable_all(ruleset: RuleSet) -> RuleSet:
    rules = tuple(dataclasses.replace(r, enabled=True) for r in ruleset.rules)
    return dataclasses.replace(ruleset, rules=rules)


# ---- engines -----------------------------------------------------------------------------------

_engines: dict[str, Engine] = {}


def engine(name: str) -> Engine:
    """The engine `name` as `analyze run` loads it; a missing engine fails the test."""
    if name not in _engines:
        from analyze.run import EngineUnavailableError, load_engine

        try:
            _engines[name] = load_engine(name)
        except EngineUnavailableError as exc:
            pytest.fail(f"engine {name!r} is missing: {exc}")
    return _engines[name]


Selection = frozenset[int] | str  # the evt.nums a rule selects, or the error the engine raised


def run_rules(eng: Engine, trace: Path, rules: Sequence[CompiledRule]) -> dict[str, Selection]:
    """Rule name -> what `eng` selects on `trace` (rule_matching: all).

    All rules run in one call; if that raises, each rule runs alone, so one rule an engine cannot
    handle is reported against that rule instead of failing every other one.
    """
    try:
        return _selections(eng.run([trace], rules, ALL), rules)
    except Exception:
        pass
    out: dict[str, Selection] = {}
    for rule in rules:
        try:
            out.update(_selections(eng.run([trace], [rule], ALL), [rule]))
        except Exception as exc:
            out[rule.rule.name] = f"{type(exc).__name__}: {exc}"
    return out


def _selections(matches: Iterable[Match], rules: Sequence[CompiledRule]) -> dict[str, Selection]:
    by_index: dict[int, set[int]] = {r.index: set() for r in rules}
    names = {r.index: r.rule.name for r in rules}
    for m in matches:
        by_index[m.rule_index].add(m.evt_num)
    return {names[i]: frozenset(nums) for i, nums in by_index.items()}


def describe_difference(label_a: str, a: Selection, label_b: str, b: Selection,
                        limit: int = 12) -> str:
    """One line saying how two selections differ (evt.nums only on each side, first few)."""
    if isinstance(a, str) or isinstance(b, str):
        return f"{label_a}: {_short(a)}; {label_b}: {_short(b)}"
    only_a, only_b = sorted(a - b), sorted(b - a)
    return (f"{label_a} {len(a)}, {label_b} {len(b)}; only {label_a} ({len(only_a)}): "
            f"{only_a[:limit]}; only {label_b} ({len(only_b)}): {only_b[:limit]}")


def _short(sel: Selection) -> str:
    return sel if isinstance(sel, str) else f"{len(sel)} events"


# ---- sysdig, the oracle ------------------------------------------------------------------------

_sysdig_lock = threading.Lock()
_sysdig_results: dict[tuple[str, str], Selection] = {}


def sysdig_select(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Selection]:
    """(condition, capture file name) -> the evt.nums sysdig selects (or its error message).

    Each pair runs once per session; new pairs run in parallel, one sysdig per CPU.
    """
    binary = require_sysdig()
    require_shared_captures()
    wanted = list(dict.fromkeys(pairs))
    with _sysdig_lock:
        todo = [p for p in wanted if p not in _sysdig_results]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            _sysdig_results.update(zip(todo, pool.map(lambda p: _sysdig(binary, *p), todo),
                                       strict=True))
        return {p: _sysdig_results[p] for p in wanted}


def _sysdig(binary: str, condition: str, capture: str) -> Selection:
    proc = subprocess.run(
        [binary, "-r", str(SCAP_DIR / capture), "-p", "%evt.num", condition],
        capture_output=True, text=True, check=False,
    )
    # sysdig 0.29 prints filter errors on stdout and may exit 0 or 1 with them.
    if proc.returncode != 0 or "error" in proc.stdout.lower() or proc.stderr.strip():
        return " ".join((proc.stdout + proc.stderr).split())[:300] or f"exit {proc.returncode}"
    return frozenset(int(n) for n in proc.stdout.split())
