"""`analyze test --update`: rewrite a spec's expectations from what the engines found (golden
files), keeping the rest of the file as written, comments included.

What changes, per test:
- an `expect` entry gets the rule's current `count` and/or `evt_nums` (whichever keys it has:
  an author who wrote only `count` keeps only `count`), and its `priority` when it has one;
  `output_contains` stays as written (it cannot be derived). A rule that no longer fires keeps
  its entry with `count: 0` / `evt_nums: []`;
- a `must_not_fire` rule that fired moves to `expect`; the others stay;
- a rule that fired and the test does not name is added to `expect` (with `count` and
  `evt_nums`), whatever `others` says;
- a rule no engine ran (disabled, filtered by the options) is left as it is.

How: the file is edited as text, at the positions PyYAML's composer gives for each node, never
re-dumped. Only the values that change are replaced (`count: 2`, `evt_nums: [1, 5]`), new entries
are appended after the last entry of `expect` in the style of the mapping (block or flow), and a
changed `must_not_fire` list is rewritten in flow style (`[A, B]`; a comment inside that list is
lost). Every other byte stays, comments included. The result is parsed again and must hold
exactly the intended expectations, else nothing is written.

Updating is refused when the engines disagree on a rule (different events, or one fired where
the other could not run it): there is no single truth to record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from analyze.run import write_atomic
from analyze.spec_format import RuleExpectation, Spec, SpecTest, parse_spec
from analyze.spec_run import CaseRun, SpecRun

WIDTH = 100  # wrap long evt_nums lists at this column


class UpdateRefused(ValueError):
    """The results cannot be recorded (the engines disagree)."""


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class TestUpdate:
    """A test's new expectations: `expect` in file order (new entries last), `must_not_fire`."""

    expect: tuple[RuleExpectation, ...]
    must_not_fire: tuple[str, ...]
    added: tuple[RuleExpectation, ...]  # the entries of `expect` that are new


def plan_update(run: SpecRun) -> list[TestUpdate]:
    """Each test's new expectations (UpdateRefused when the engines disagree)."""
    return [new_expectations(t) for t in run.tests]


def write_update(spec: Spec, updates: Sequence[TestUpdate]) -> list[str]:
    """Rewrite the spec file (atomically) when an expectation changed; the changed tests."""
    changed = [t.name for t, u in zip(spec.tests, updates, strict=True)
               if u.expect != t.expect or u.must_not_fire != t.must_not_fire]
    if changed:
        write_atomic(spec.path, updated_text(spec, updates))
    return changed


def consensus(run: CaseRun) -> dict[str, tuple[int, ...]]:
    """Rule -> the events it fired on, agreed by every engine that ran it (UpdateRefused if
    they disagree)."""
    rules = sorted({r for e in run.engines for r in (*e.alerts, *e.not_run)})
    out: dict[str, tuple[int, ...]] = {}
    for rule in rules:
        seen = {e.engine: tuple(a.evt_num for a in e.alerts.get(rule, ()))
                for e in run.engines if rule not in e.not_run}
        unrun = [e.engine for e in run.engines if rule in e.not_run]
        results = set(seen.values())
        if len(results) > 1 or (unrun and any(seen.values())):
            found = "; ".join(f"{eng}: {len(nums)} alert(s)" for eng, nums in seen.items())
            found += "".join(f"; {eng}: not run" for eng in unrun)
            raise UpdateRefused(
                f"Not updating {run.test.name!r}: the engines disagree on rule {rule!r} "
                f"({found}). Fix the engine gap, or update with one --engine."
            )
        nums = next(iter(results), ())
        if nums:
            out[rule] = nums
    return out


def new_expectations(run: CaseRun) -> TestUpdate:
    test = run.test
    fired = consensus(run)
    ran = {r for e in run.engines for r in run.selected if r not in e.not_run}
    expect = [_refreshed(e, fired.get(e.rule, ()), run.priorities.get(e.rule))
              if e.rule in ran else e for e in test.expect]
    named = {e.rule for e in test.expect}
    added = tuple(RuleExpectation(rule, count=len(nums), evt_nums=nums)
                  for rule, nums in sorted(fired.items()) if rule not in named)
    silent = tuple(r for r in test.must_not_fire if r not in fired)
    return TestUpdate((*expect, *added), silent, added)


def _refreshed(exp: RuleExpectation, nums: tuple[int, ...],
               priority: str | None) -> RuleExpectation:
    return dataclasses.replace(
        exp,
        count=len(nums) if exp.count is not None else None,
        evt_nums=nums if exp.evt_nums is not None else None,
        priority=priority if exp.priority is not None and priority else exp.priority,
    )


# ---- editing the text ---------------------------------------------------------------------------


def updated_text(spec: Spec, updates: Sequence[TestUpdate]) -> str:
    """The spec's text with the new expectations, checked by parsing it again."""
    text = spec.text
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    tests = _value(root, "tests")
    assert isinstance(tests, yaml.SequenceNode)
    edits: list[Edit] = []
    for node, test, update in zip(tests.value, spec.tests, updates, strict=True):
        edits += _test_edits(text, node, test, update)
    new = apply_edits(text, edits)
    _verify(spec, new, updates)
    return new


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    for edit in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        text = text[:edit.start] + edit.text + text[edit.end:]
    return text


def _verify(spec: Spec, new: str, updates: Sequence[TestUpdate]) -> None:
    reread = parse_spec(new, spec.path)
    wanted = [dataclasses.replace(t, expect=u.expect, must_not_fire=u.must_not_fire)
              for t, u in zip(spec.tests, updates, strict=True)]
    if list(reread.tests) != wanted or reread.rules != spec.rules \
            or reread.options != spec.options:
        raise UpdateRefused(
            f"Not updating {spec.path}: the edited text would not hold the new expectations "
            "(an unusual layout?). Nothing was written; please report this spec."
        )


def _test_edits(text: str, node: yaml.Node, test: SpecTest, update: TestUpdate) -> list[Edit]:
    assert isinstance(node, yaml.MappingNode)
    edits: list[Edit] = []
    expect_node = _value(node, "expect")
    if isinstance(expect_node, yaml.MappingNode):
        for key, value in expect_node.value:
            new = next(e for e in update.expect if e.rule == key.value)
            edits += _entry_edits(text, value, new)
    if update.must_not_fire != test.must_not_fire:
        mnf = _value(node, "must_not_fire")
        assert mnf is not None
        edits.append(Edit(mnf.start_mark.index, content_end(text, mnf),
                          flow_list([_flow_scalar(r) for r in update.must_not_fire])))
    if update.added:
        edits.append(_add_entries(text, node, expect_node, update.added))
    return edits


def _entry_edits(text: str, node: yaml.Node, new: RuleExpectation) -> list[Edit]:
    """Replace the values of `count`, `evt_nums` and `priority` that changed, nothing else."""
    assert isinstance(node, yaml.MappingNode)
    edits = []
    for key, value in node.value:
        start = value.start_mark.index
        if key.value == "evt_nums" and new.evt_nums is not None \
                and _ints(value) != list(new.evt_nums):
            indent = _line_indent(text, start) + 4
            edits.append(Edit(start, content_end(text, value), flow_list(
                [str(n) for n in new.evt_nums], indent, value.start_mark.column)))
        elif key.value == "count" and new.count is not None and int(value.value) != new.count:
            edits.append(Edit(start, value.end_mark.index, str(new.count)))
        elif key.value == "priority" and new.priority is not None \
                and _priority_differs(value.value, new.priority):
            edits.append(Edit(start, value.end_mark.index, new.priority))
    return edits


def _priority_differs(written: str, wanted: str) -> bool:
    from analyze.ruleset import parse_priority

    return parse_priority(written) != wanted


def _ints(node: yaml.Node) -> list[int]:
    return [int(v.value) for v in node.value] if isinstance(node, yaml.SequenceNode) else []


def _add_entries(text: str, test_node: yaml.MappingNode, expect_node: yaml.Node | None,
                 added: Sequence[RuleExpectation]) -> Edit:
    """Append `added` to `expect`, or add the `expect` key when the test has none."""
    if isinstance(expect_node, yaml.MappingNode) and expect_node.value:
        if expect_node.flow_style:
            return _flow_insert(text, expect_node, added, ", ")
        indent = expect_node.value[0][0].start_mark.column
        return Edit(*_after_line(text, content_end(text, expect_node)),
                    _block_entries(added, indent))
    if isinstance(expect_node, yaml.MappingNode):  # `expect: {}`
        return _flow_insert(text, expect_node, added, "")
    if expect_node is not None:  # `expect:` with no value
        key = _key(test_node, "expect")
        indent = key.start_mark.column + 2
        return Edit(*_after_line(text, key.end_mark.index), _block_entries(added, indent))
    if test_node.flow_style:
        end = test_node.end_mark.index - 1
        return Edit(end, end, ", expect: " + _flow_mapping(added, _line_indent(text, end) + 4))
    indent = test_node.value[0][0].start_mark.column
    return Edit(*_after_line(text, content_end(text, test_node)),
                f"\n{' ' * indent}expect:" + _block_entries(added, indent + 2))


def _flow_insert(text: str, node: yaml.MappingNode, added: Sequence[RuleExpectation],
                 sep: str) -> Edit:
    end = node.end_mark.index - 1  # the closing brace
    indent = _line_indent(text, end) + 4
    body = ", ".join(f"{_flow_scalar(e.rule)}: {entry_text(e, indent)}" for e in added)
    return Edit(end, end, sep + body)


def _flow_mapping(added: Sequence[RuleExpectation], indent: int) -> str:
    return "{" + ", ".join(f"{_flow_scalar(e.rule)}: {entry_text(e, indent)}"
                           for e in added) + "}"


def _block_entries(added: Sequence[RuleExpectation], indent: int) -> str:
    pad = " " * indent
    return "".join(f"\n{pad}{_flow_scalar(e.rule)}: {entry_text(e, indent + 4)}" for e in added)


def entry_text(exp: RuleExpectation, indent: int) -> str:
    """`{count: 2, evt_nums: [5, 9]}`, the list wrapped at WIDTH onto lines at `indent`."""
    parts = []
    if exp.count is not None:
        parts.append(f"count: {exp.count}")
    if exp.evt_nums is not None:
        parts.append("evt_nums: " + flow_list([str(n) for n in exp.evt_nums], indent, indent))
    return "{" + ", ".join(parts) + "}"


def flow_list(items: Sequence[str], indent: int = 0, column: int = 0) -> str:
    """`[a, b, c]` starting at `column`; past WIDTH, continued on lines indented by `indent`
    (valid flow YAML when the continuation is deeper than the enclosing block)."""
    if not items:
        return "[]"
    lines: list[str] = []
    line, start = "[", column
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "]")
        fresh = line == "[" or not line.strip()
        if not fresh and start + len(line) + 1 + len(piece) > WIDTH:
            lines.append(line)
            line, start, fresh = " " * indent, 0, True
        line += piece if fresh else " " + piece
    return "\n".join([*lines, line])


def _flow_scalar(value: str) -> str:
    """`value` as a YAML scalar that reads back as the same string in flow or block context."""
    dumped: str = yaml.safe_dump([value], default_flow_style=True, width=10**9,
                                 allow_unicode=True)
    return dumped.strip()[1:-1]


# ---- positions ----------------------------------------------------------------------------------


def content_end(text: str, node: yaml.Node) -> int:
    """Where a node's own text ends: a block collection's end mark lies after the comments and
    blank lines that follow it, which belong to what comes next."""
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style \
            and node.value:
        last = node.value[-1]
        return content_end(text, last[1] if isinstance(node, yaml.MappingNode) else last)
    end = int(node.end_mark.index)
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        while end > node.start_mark.index and text[end - 1] in " \n":
            end -= 1
    return end


def _after_line(text: str, pos: int) -> tuple[int, int]:
    """An insertion point at the end of the line holding `pos` (after any trailing comment)."""
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    return end, end


def _line_indent(text: str, pos: int) -> int:
    start = text.rfind("\n", 0, pos) + 1
    line = text[start:]
    return len(line) - len(line.lstrip(" "))


def _key(node: yaml.MappingNode, name: str) -> yaml.Node:
    return next(k for k, _ in node.value if k.value == name)


def _value(node: yaml.Node | None, name: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if k.value == name), None)
