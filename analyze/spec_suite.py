"""`analyze test`: read every spec, run them, optionally record the results (`--update`), and
return the verdicts.

Every spec is read and checked before anything runs, so a typo in the last spec fails at once;
with `--update`, every spec's new expectations are computed (and refused if the engines
disagree) before any file is written, so a refusal leaves every file as it was. After an update
the verdicts are those of the rewritten specs against the same results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from analyze.spec_check import SpecCheck, check_spec
from analyze.spec_format import Spec, load_spec, spec_files
from analyze.spec_run import BOTH_ENGINES, SpecRun, run_spec
from analyze.spec_update import plan_update, write_update

EXIT_PASSED = 0
EXIT_FAILED = 3  # some test failed (1 stays every user error, 2 click's usage errors)
ENGINE_CHOICES = ("both", *BOTH_ENGINES)


@dataclass(frozen=True)
class SuiteResult:
    specs: tuple[SpecCheck, ...]
    updated: tuple[tuple[str, tuple[str, ...]], ...] = ()  # spec path, the tests rewritten

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.specs)

    @property
    def exit_code(self) -> int:
        return EXIT_PASSED if self.passed else EXIT_FAILED


def engines_for(choice: str) -> tuple[str, ...]:
    return BOTH_ENGINES if choice == "both" else (choice,)


def run_suite(targets: Sequence[str], engines: Sequence[str] = BOTH_ENGINES, *,
              update: bool = False) -> SuiteResult:
    specs = [load_spec(path) for path in spec_files(list(targets))]
    runs = [run_spec(spec, engines) for spec in specs]
    updated: list[tuple[str, tuple[str, ...]]] = []
    if update:
        plans = [plan_update(run) for run in runs]
        for i, (run, plan) in enumerate(zip(runs, plans, strict=True)):
            changed = write_update(run.spec, plan)
            if changed:
                updated.append((run.spec.path, tuple(changed)))
                runs[i] = _rebased(run, load_spec(run.spec.path))
    return SuiteResult(tuple(check_spec(run) for run in runs), tuple(updated))


def _rebased(run: SpecRun, spec: Spec) -> SpecRun:
    """The same results under the rewritten spec (only expectations changed)."""
    tests = tuple(dataclasses.replace(case, test=new)
                  for case, new in zip(run.tests, spec.tests, strict=True))
    return dataclasses.replace(run, spec=spec, tests=tests)
