"""`analyze test --junit FILE`: the verdicts as JUnit XML, for CI systems to show.

One `<testsuite>` per spec (named by its path as given), one `<testcase>` per checked rule of a
test case (`classname` is the test's name, `name` the rule's), and a `<failure>` holding the
problems and the diff for each failing one. No `time`, `timestamp` or `hostname` attribute: the
file depends only on the verdicts, so it is byte-identical across machines and runs.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from analyze.spec_check import CaseCheck, RuleCheck, SpecCheck, summary_counts
from analyze.spec_render import failure_text

NO_RULE = "(no rule checked)"


def junit_xml(specs: Sequence[SpecCheck]) -> str:
    checks = sum(len(_checked(t)) for s in specs for t in s.tests)
    failed = summary_counts(specs)[3]
    root = ET.Element("testsuites", {"name": "analyze test", "tests": str(checks),
                                     "failures": str(failed), "errors": "0", "skipped": "0"})
    for spec in specs:
        root.append(_suite(spec))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _suite(spec: SpecCheck) -> ET.Element:
    cases = [(t, r) for t in spec.tests for r in _checked(t)]
    suite = ET.Element("testsuite", {
        "name": spec.path, "tests": str(len(cases)),
        "failures": str(sum(r is not None and not r.passed for _, r in cases)), "errors": "0",
        "skipped": "0",
    })
    ET.SubElement(suite, "properties").append(
        ET.Element("property", {"name": "engines", "value": ",".join(spec.engines)}))
    for test, row in cases:
        name = row.rule if row is not None else NO_RULE
        case = ET.SubElement(suite, "testcase", {"classname": test.name, "name": name,
                                                 "file": spec.path})
        if row is not None and not row.passed:
            failure = ET.SubElement(case, "failure", {"message": "; ".join(row.problems),
                                                      "type": row.kind})
            failure.text = failure_text(row)
    return suite


def _checked(test: CaseCheck) -> list[RuleCheck | None]:
    """The test's checked rules; a test without any still shows, as one passing case."""
    rows: list[RuleCheck | None] = [r for r in test.rules if r.checked]
    return rows or [None]
