"""Real traces and a small rule file for the `analyze run` tests.

The traces are shared sysdig/Falco captures imported with `import_scap` once per test session.
`RULES` is a rule file whose alerts on those captures are known by hand (sysdig shows them):

- falco__cat_write: `cat /dev/null` and friends; 8 `open` events by cat (4 enter + 4 exit, as
  Falco's own regression test counts) and 12 `close` events by cat;
- falco__psp_write_tmp_test: two `open` events of bash in container 697956520d89 (nginx), the
  second one on /tmp/test;
- falco__psp_run_as_user_0_container: 3,796 events, host and container, no cat.

`PredicateEngine` is a test double for the engine protocol: it runs hand-written SQL equivalents
of `RULES` (`PREDICATES`), so the orchestration, alerts and CLI can be tested on their own. The
tests run the same checks through every real engine that is present.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from analyze.engine_api import CompiledRule, Match, RunOptions, apply_rule_matching
from analyze.query import connect
from analyze.trace_reader import open_trace

SCAP = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "scap"
CAPTURES = (
    "falco__cat_write", "falco__psp_write_tmp_test", "falco__psp_run_as_user_0_container",
)
REAL_ENGINES = ("sql", "replay")

RULES = """\
- rule: Cat Opened File
  desc: cat opened a file
  condition: evt.type = open and proc.name = cat
  output: >
    cat opened a file (file=%fd.name flags=%evt.arg.flags command=%proc.cmdline
    gparent=%proc.aname[2] failed=%evt.failed uid=%user.uid)
  priority: WARNING
  tags: [filesystem, test_cat]

- rule: Cat Activity
  desc: cat opened or closed something
  condition: proc.name = cat and evt.type in (open, close)
  output: cat activity (type=%evt.type fd=%fd.num)
  priority: NOTICE
  tags: [process, test_cat]

- rule: Write below tmp in container
  desc: a file below /tmp opened in a container
  condition: evt.type = open and fd.name startswith /tmp and container.id != host
  output: >
    open below /tmp (file=%fd.name container=%container.name image=%container.image
    proc=%proc.name)
  priority: ERROR
  tags: [container, filesystem]

- rule: Close Noise
  desc: every close by cat
  condition: evt.type = close and proc.name = cat
  output: close by %proc.name
  priority: DEBUG
  tags: [noisy]

- rule: Needs DNS
  desc: uses a field a trace cannot supply
  condition: evt.type = connect and fd.sip.name = example.com
  output: connect to %fd.name
  priority: WARNING
  tags: [network]

- rule: Disabled Rule
  desc: never runs
  condition: evt.type = open
  output: open
  priority: WARNING
  enabled: false
"""

PREDICATES = {
    "Cat Opened File": "\"evt.type\" = 'open' AND \"proc.name\" = 'cat'",
    "Cat Activity": "\"proc.name\" = 'cat' AND \"evt.type\" IN ('open', 'close')",
    "Write below tmp in container": (
        "\"evt.type\" = 'open' AND starts_with(\"fd.name\", '/tmp') "
        "AND \"container.id\" <> 'host'"
    ),
    "Close Noise": "\"evt.type\" = 'close' AND \"proc.name\" = 'cat'",
}

_cache: dict[str, Path] = {}


def require_captures() -> None:
    if not SCAP.is_dir():
        pytest.skip(f"the shared captures are not present: {SCAP}")
    if shutil.which("sysdig") is None:
        pytest.skip("sysdig is not installed (run scripts/setup.sh)")


def imported_traces(factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> trace path for every capture of CAPTURES, imported once per session."""
    if not _cache:
        from capture.scap_import import import_scap

        require_captures()
        out = factory.mktemp("traces")
        for name in CAPTURES:
            _cache[name] = import_scap(SCAP / f"{name}.scap", out / f"{name}.parquet").output
    return dict(_cache)


def write_rules(directory: Path, text: str = RULES, name: str = "rules.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


class PredicateEngine:
    """Runs `PREDICATES` (SQL by hand) for the rules it is given: a test double, see above."""

    name = "predicates"

    def run(self, trace: Sequence[str | Path], rules: Sequence[CompiledRule],
            options: RunOptions) -> list[Match]:
        con = connect(open_trace(list(trace)))
        window = ""
        params: list[int] = []
        if options.since_ns is not None:
            window += ' AND epoch_ns("evt.time") >= ?'
            params.append(options.since_ns)
        if options.until_ns is not None:
            window += ' AND epoch_ns("evt.time") <= ?'
            params.append(options.until_ns)
        matches = []
        try:
            for rule in rules:
                sql = (f'SELECT "evt.num" FROM events WHERE ({PREDICATES[rule.rule.name]})'
                       f"{window}")
                for (num,) in con.execute(sql, params).fetchall():
                    matches.append(Match(num, rule.index, rule.rule.name))
        finally:
            con.close()
        return apply_rule_matching(matches, options.rule_matching)


def engine_present(name: str) -> bool:
    from analyze.run import EngineUnavailableError, load_engine

    try:
        load_engine(name)
    except EngineUnavailableError:
        return False
    return True


def use_engine(name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make `name` the engine `auto` picks; "predicates" installs PredicateEngine. A real engine
    that has not landed in this build is skipped, naming the module."""
    from analyze import run

    if name == "predicates":
        monkeypatch.setitem(run.ENGINE_MODULES, "sql", __name__)
        monkeypatch.setattr(run, "AUTO_ORDER", ("sql",))
        return "sql"
    if not engine_present(name):
        pytest.skip(f"engine {name} ({run.ENGINE_MODULES[name]}) is not in this build yet")
    monkeypatch.setattr(run, "AUTO_ORDER", (name,))
    return name
