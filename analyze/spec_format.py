"""Rule test specs (`analyze test`): the YAML format, read and checked strictly.

A spec says which rules to load, which traces to replay, and what must happen, per rule:

    rules: [../../rules/]              # files or directories, like `analyze run -r`
    options:                           # optional; these are the defaults
      rule_matching: all               #   all: every rule is tested on its own; first: Falco's
      min_priority: Debug              #   default, one alert per event from the first rule
      tags: []                         #   only rules with one of these tags (falco -t)
      skip_tags: []                    #   not rules with any of these tags (falco -T)
    others: none                       # optional default for the tests below (see `others`)
    tests:
      - name: read sensitive file      # unique within the spec
        trace: ../fixtures/scenarios/read-sensitive-file.parquet   # or `traces: [a, b]`
        expect:                        # rule -> what its alerts must be
          Sensitive File Read: {count: 1, evt_nums: [412], priority: WARNING,
                                output_contains: "file=/etc/shadow"}
        must_not_fire: [Write below /etc]
        others: none                   # none: no unlisted rule may fire; ignore: they may

Paths are relative to the spec file's directory. An expectation needs `count` (exact number of
alerts) or `evt_nums` (exactly these events, in any order; duplicates are an error) or both
(then they must agree); `priority` (any Falco spelling) is the rule's priority, and
`output_contains` (a string or a list) must occur in the output of every alert of the rule.
`count: 0` is the same as listing the rule in `must_not_fire`.

Why `rule_matching: all` by default, unlike `analyze run`: a test is about one rule, and with
`first` whether it alerts depends on the rules defined before it.

Why `others: none` by default: a regression test should catch a rule that starts firing where it
did not, so every rule that fires must be listed; `others: ignore` is for tests that care about
a few rules among many (the upstream rule set).

Every key is checked: an unknown or misplaced key, a wrong type, a rule named twice, or a path
that does not exist is a `SpecError` naming the spec file, line and column, with the line shown
and the offending text underlined, like a rule-file error. Rule names are checked against the
loaded rules by the runner (`analyze.spec_run`), which knows them.

The YAML is read with PyYAML's composer, so every node keeps its position; strings are taken as
written (a rule named `yes` stays "yes"), numbers must be plain decimal integers.
"""

from __future__ import annotations

import difflib
import glob
import os
from dataclasses import dataclass, field
from typing import Literal

import yaml

from analyze.engine_api import RuleMatching, RunOptions
from analyze.errors import Position, RuleError, SourceRef
from analyze.ruleset import PRIORITIES, parse_priority

Others = Literal["none", "ignore"]

TOP_KEYS = ("rules", "options", "others", "tests")
OPTION_KEYS = ("rule_matching", "min_priority", "tags", "skip_tags")
TEST_KEYS = ("name", "trace", "traces", "expect", "must_not_fire", "others")
EXPECT_KEYS = ("count", "evt_nums", "priority", "output_contains")
OTHERS = ("none", "ignore")
RULE_MATCHING = ("all", "first")
DEFAULT_OPTIONS = RunOptions(rule_matching="all")

_INT = "tag:yaml.org,2002:int"
_NULL = "tag:yaml.org,2002:null"


class SpecError(RuleError):
    """A spec file that is not valid YAML or breaks the format; points at the offending text."""

    def __init__(self, message: str, source: SourceRef, text: str | None = None,
                 position: Position | None = None) -> None:
        super().__init__(message, source=source, text=text, position=position, code="spec",
                         text_label="spec")

    def __str__(self) -> str:
        # The source already says file:line:column; the snippet (error_render) shows the line.
        return f"{self.source}: {self.message}" if self.source else self.message


@dataclass(frozen=True)
class RuleExpectation:
    """What one rule's alerts must be in one test."""

    rule: str
    count: int | None = None
    evt_nums: tuple[int, ...] | None = None  # sorted
    priority: str | None = None  # canonical (Warning, Informational, ...)
    output_contains: tuple[str, ...] = ()
    at: SourceRef = field(default=SourceRef(""), compare=False)


@dataclass(frozen=True)
class SpecTest:
    """One test case: traces in, expectations per rule."""

    name: str
    traces: tuple[str, ...]  # as written in the spec
    expect: tuple[RuleExpectation, ...] = ()  # in spec order
    must_not_fire: tuple[str, ...] = ()
    others: Others = "none"
    at: SourceRef = field(default=SourceRef(""), compare=False)
    must_not_fire_at: tuple[SourceRef, ...] = field(default=(), compare=False)

    def expectation(self, rule: str) -> RuleExpectation | None:
        return next((e for e in self.expect if e.rule == rule), None)


@dataclass(frozen=True)
class Spec:
    """A spec file: rules, options and test cases; paths as written, relative to `directory`."""

    path: str  # as given to `analyze test`
    rules: tuple[str, ...]
    options: RunOptions
    tests: tuple[SpecTest, ...]
    rules_at: tuple[SourceRef, ...] = field(default=(), compare=False)
    text: str = field(default="", compare=False, repr=False)  # for error snippets

    def error(self, at: SourceRef, message: str) -> SpecError:
        """A SpecError at `at` (a position in this spec), with the line underlined."""
        lines = self.text.split("\n")
        if not 0 < at.line <= len(lines):
            return SpecError(message, at)
        offset = sum(len(line) + 1 for line in lines[:at.line - 1]) + at.col - 1
        return SpecError(message, at, self.text, Position(offset, at.line, at.col))

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path)

    def resolve(self, relative: str) -> str:
        """A path of the spec as the process opens it (relative to the cwd when the spec's is)."""
        return os.path.normpath(os.path.join(self.directory, relative))

    def rule_paths(self) -> tuple[str, ...]:
        return tuple(self.resolve(p) for p in self.rules)

    def trace_paths(self, test: SpecTest) -> tuple[str, ...]:
        return tuple(self.resolve(p) for p in test.traces)


def spec_files(targets: list[str]) -> list[str]:
    """SPEC arguments to files: a directory stands for its *.yaml files in name order."""
    out: list[str] = []
    for target in targets:
        if os.path.isdir(target):
            found = sorted(f for ext in ("*.yaml", "*.yml")
                           for f in glob.glob(os.path.join(glob.escape(target), ext)))
            if not found:
                raise ValueError(f"{target}: the directory holds no *.yaml spec file.")
            out.extend(found)
        elif not os.path.exists(target):
            raise FileNotFoundError(2, "No such file or directory", target)
        else:
            out.append(target)
    return list(dict.fromkeys(out))


def load_spec(path: str) -> Spec:
    """Read and check one spec file (SpecError on anything wrong, OSError when unreadable)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return parse_spec(text, path)


def parse_spec(text: str, path: str) -> Spec:
    return _Reader(text, path).spec()


# ---- reading ------------------------------------------------------------------------------------


class _Reader:
    """Walks the composed YAML, checking each key; errors carry the node's position."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path

    def error(self, node: yaml.Node | None, message: str, item: str = "") -> SpecError:
        if node is None:
            return SpecError(message, SourceRef(self.path, 0, 0, item))
        mark = node.start_mark
        position = Position(mark.index, mark.line + 1, mark.column + 1)
        return SpecError(message, self.ref(node, item), self.text, position)

    def ref(self, node: yaml.Node, item: str = "") -> SourceRef:
        return SourceRef(self.path, node.start_mark.line + 1, node.start_mark.column + 1, item)

    def spec(self) -> Spec:
        try:
            root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "invalid YAML"
            ref = SourceRef(self.path, mark.line + 1, mark.column + 1) if mark else \
                SourceRef(self.path)
            raise SpecError(f"YAML parse error: {problem}", ref) from None
        except yaml.YAMLError as exc:
            raise SpecError(f"YAML parse error: {exc}", SourceRef(self.path)) from None
        if root is None:
            raise self.error(None, "The spec is empty: it needs `rules` and `tests`.")
        keys = self.mapping(root, "the spec", TOP_KEYS, required=("rules", "tests"))
        rules, rules_at = self.paths(keys["rules"][1], "rules", "spec", kind="rule path")
        options = self.options(keys["options"][1]) if "options" in keys else DEFAULT_OPTIONS
        others = self.others(keys["others"][1], "spec") if "others" in keys else "none"
        tests = self.tests(keys["tests"][1], others)
        return Spec(self.path, rules, options, tests, rules_at, self.text)

    # ---- containers

    def mapping(self, node: yaml.Node, what: str, allowed: tuple[str, ...], item: str = "",
                required: tuple[str, ...] = ()) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """key -> (key node, value node), every key known and given once."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping with the keys "
                             f"{', '.join(allowed)}.", item)
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name not in allowed or name is None:
                raise self.error(key, _unknown_key(name, what, allowed), item)
            if name in out:
                raise self.error(key, f"The key '{name}' is given twice in {what}.", item)
            out[name] = (key, value)
        for name in required:
            if name not in out:
                raise self.error(node, f"{what} has no '{name}' key.", item)
        return out

    def scalar(self, node: yaml.Node, what: str, item: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            raise self.error(node, f"{what} must be a non-empty string.", item)
        if node.value == "":
            raise self.error(node, f"{what} must be a non-empty string.", item)
        return str(node.value)

    def strings(self, node: yaml.Node, what: str, item: str,
                *, allow_one: bool = True) -> list[tuple[str, yaml.Node]]:
        """A list of strings (or, with `allow_one`, a single string)."""
        if isinstance(node, yaml.ScalarNode) and allow_one and node.tag != _NULL:
            return [(self.scalar(node, what, item), node)]
        if not isinstance(node, yaml.SequenceNode):
            one = "a string or " if allow_one else ""
            raise self.error(node, f"{what} must be {one}a list of strings.", item)
        return [(self.scalar(v, f"each item of {what}", item), v) for v in node.value]

    def integer(self, node: yaml.Node, what: str, item: str) -> int:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _INT \
                or not node.value.isdigit():
            raise self.error(node, f"{what} must be a non-negative decimal integer.", item)
        return int(node.value)

    def paths(self, node: yaml.Node, what: str, item: str,
              *, kind: str) -> tuple[tuple[str, ...], tuple[SourceRef, ...]]:
        """Paths relative to the spec; each must exist (a glob must match something)."""
        items = self.strings(node, f"'{what}'", item)
        if not items:
            raise self.error(node, f"'{what}' is empty: name at least one {kind}.", item)
        base = os.path.dirname(self.path)
        for value, vnode in items:
            full = os.path.join(base, value)
            if not (glob.glob(full) if glob.has_magic(value) else os.path.exists(full)):
                raise self.error(vnode, f"The {kind} {value!r} does not exist (paths are "
                                 "relative to the spec file's directory).", item)
        return tuple(v for v, _ in items), tuple(self.ref(n, item) for _, n in items)

    # ---- sections

    def options(self, node: yaml.Node) -> RunOptions:
        item = "options"
        keys = self.mapping(node, "'options'", OPTION_KEYS, item)
        matching: RuleMatching = "all"
        if "rule_matching" in keys:
            vnode = keys["rule_matching"][1]
            value = self.scalar(vnode, "'rule_matching'", item)
            if value not in RULE_MATCHING:
                raise self.error(vnode, f"'rule_matching' is {value!r}; use all or first.", item)
            matching = "first" if value == "first" else "all"
        min_priority = "Debug"
        if "min_priority" in keys:
            min_priority = self.priority(keys["min_priority"][1], "'min_priority'", item)
        tags = self.tag_list(keys, "tags", item)
        skip_tags = self.tag_list(keys, "skip_tags", item)
        return RunOptions(min_priority=min_priority, tags=tags, skip_tags=skip_tags,
                          rule_matching=matching)

    def tag_list(self, keys: dict[str, tuple[yaml.Node, yaml.Node]], key: str,
                 item: str) -> tuple[str, ...]:
        if key not in keys:
            return ()
        return tuple(v for v, _ in self.strings(keys[key][1], f"'{key}'", item))

    def priority(self, node: yaml.Node, what: str, item: str) -> str:
        value = self.scalar(node, what, item)
        canonical = parse_priority(value)
        if canonical is None:
            raise self.error(node, f"{what} is {value!r}, not a priority; use one of "
                             f"{', '.join(PRIORITIES)}.", item)
        return canonical

    def others(self, node: yaml.Node, item: str) -> Others:
        value = self.scalar(node, "'others'", item)
        if value not in OTHERS:
            raise self.error(node, f"'others' is {value!r}; use none (no unlisted rule may "
                             "fire) or ignore (unlisted rules are not checked).", item)
        return "ignore" if value == "ignore" else "none"

    def tests(self, node: yaml.Node, others: Others) -> tuple[SpecTest, ...]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.error(node, "'tests' must be a non-empty list of test cases.", "spec")
        tests: list[SpecTest] = []
        for tnode in node.value:
            test = self.test(tnode, others)
            if any(t.name == test.name for t in tests):
                raise self.error(tnode, f"Two tests are named {test.name!r}: test names must "
                                 "be unique within a spec.", f"test '{test.name}'")
            tests.append(test)
        return tuple(tests)

    def test(self, node: yaml.Node, others: Others) -> SpecTest:
        # The name first, so that every error about this test can say which test it is.
        peek = _peek(node, "name")
        item = f"test '{peek}'" if peek else "test"
        keys = self.mapping(node, "a test", TEST_KEYS, item, required=("name",))
        name = self.scalar(keys["name"][1], "'name'", item)
        if ("trace" in keys) == ("traces" in keys):
            raise self.error(node, "A test needs exactly one of 'trace' (one trace) or 'traces' "
                             "(the segments of one capture).", item)
        key = "trace" if "trace" in keys else "traces"
        traces, _ = self.paths(keys[key][1], key, item, kind="trace")
        expect = self.expectations(keys["expect"][1], item) if "expect" in keys else ()
        silent: list[tuple[str, yaml.Node]] = []
        if "must_not_fire" in keys:
            silent = self.strings(keys["must_not_fire"][1], "'must_not_fire'", item)
        seen = {e.rule for e in expect}
        for rule, rnode in silent:
            if rule in seen:
                raise self.error(rnode, f"The rule {rule!r} is listed twice (in 'expect' or "
                                 "'must_not_fire').", item)
            seen.add(rule)
        mode = self.others(keys["others"][1], item) if "others" in keys else others
        return SpecTest(name, traces, expect, tuple(r for r, _ in silent), mode,
                        self.ref(node, item), tuple(self.ref(n, item) for _, n in silent))

    def expectations(self, node: yaml.Node, item: str) -> tuple[RuleExpectation, ...]:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return ()
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, "'expect' must map rule names to expectations, e.g. "
                             "`My Rule: {count: 1}`.", item)
        out: list[RuleExpectation] = []
        for key, value in node.value:
            rule = self.scalar(key, "a rule name", item)
            if any(e.rule == rule for e in out):
                raise self.error(key, f"The rule {rule!r} is listed twice in 'expect'.", item)
            out.append(self.expectation(rule, key, value, item))
        return tuple(out)

    def expectation(self, rule: str, key: yaml.Node, node: yaml.Node,
                    item: str) -> RuleExpectation:
        what = f"the expectation of {rule!r}"
        keys = self.mapping(node, what, EXPECT_KEYS, item)
        count = self.integer(keys["count"][1], "'count'", item) if "count" in keys else None
        nums: tuple[int, ...] | None = None
        if "evt_nums" in keys:
            nums = self.evt_nums(keys["evt_nums"][1], item)
        if count is None and nums is None:
            raise self.error(node, f"{what} needs 'count' or 'evt_nums' (or both).", item)
        if count is not None and nums is not None and count != len(nums):
            raise self.error(keys["count"][1], f"'count' is {count} but 'evt_nums' lists "
                             f"{len(nums)} events.", item)
        priority = None
        if "priority" in keys:
            priority = self.priority(keys["priority"][1], "'priority'", item)
        contains: tuple[str, ...] = ()
        if "output_contains" in keys:
            contains = tuple(v for v, _ in self.strings(keys["output_contains"][1],
                                                       "'output_contains'", item))
        return RuleExpectation(rule, count, nums, priority, contains, self.ref(key, item))

    def evt_nums(self, node: yaml.Node, item: str) -> tuple[int, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, "'evt_nums' must be a list of event numbers.", item)
        nums: list[int] = []
        for v in node.value:
            n = self.integer(v, "each event number of 'evt_nums'", item)
            if n in nums:
                raise self.error(v, f"The event number {n} is listed twice.", item)
            nums.append(n)
        return tuple(sorted(nums))


def _peek(node: yaml.Node, key: str) -> str:
    if not isinstance(node, yaml.MappingNode):
        return ""
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key and isinstance(v, yaml.ScalarNode):
            return str(v.value)
    return ""


def _unknown_key(name: str | None, what: str, allowed: tuple[str, ...]) -> str:
    if name is None:
        return f"Keys of {what} must be plain strings."
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else "."
    return f"Unknown key '{name}' in {what} (known: {', '.join(allowed)}){hint}"
