"""Falco's evt.type indexing (libsinsp ppm_codes.cpp), on upstream rules and on the tricky cases."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import pytest

from analyze.errors import RuleResolveError
from analyze.evttypes import (
    GENERIC_EVENT,
    MAX_EVENT_CODES,
    TOO_MANY_MESSAGE,
    code_count,
    event_codes,
    evttypes,
    matches_all,
    too_many_evttypes_warning,
)
from analyze.loader import load_rules
from analyze.parser import parse_condition
from analyze.ruleset import RuleSet
from schemas import catalog

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "falco-rules"
RULES = ANCHORS / "rules" / "falco_rules.yaml"
EVTTYPES_TSV = ANCHORS / "rule-evttypes.tsv"
WARNINGS_RULES = ANCHORS / "testing-rules" / "falco" / "falco_rules_warnings.yaml"
TYPES_COLUMN = "evt_types(after macro/list expansion, libsinsp ppm_codes algorithm)"

needs_anchors = pytest.mark.skipif(not ANCHORS.is_dir(), reason="shared Falco anchors not present")

# A small universe keeps the expected sets readable.
U = frozenset({"open", "openat", "execve", "connect", "procexit"})


def types(condition: str) -> frozenset[str]:
    return evttypes(parse_condition(condition), U)


def _anchor_rows() -> list[tuple[str, str]]:
    if not EVTTYPES_TSV.is_file():
        return []
    with EVTTYPES_TSV.open(encoding="utf-8") as f:
        rows = csv.DictReader(f, delimiter="\t")
        # Only the stable rules are in the anchors; incubating/sandbox rows cannot be loaded.
        return [(r["rule"], r[TYPES_COLUMN]) for r in rows if r["file"] == "falco_rules"]


@cache
def _upstream() -> RuleSet:
    return load_rules([RULES])


# ---- upstream rules ----------------------------------------------------------------------------


@needs_anchors
@pytest.mark.parametrize(("rule", "expected"), _anchor_rows())
def test_upstream_rule_evttypes(rule: str, expected: str) -> None:
    tree = _upstream().rule(rule).ast
    assert tree is not None
    assert ",".join(sorted(evttypes(tree))) == expected


@needs_anchors
def test_every_upstream_rule_is_in_the_anchor() -> None:
    assert {r.name for r in _upstream().rules} == {name for name, _ in _anchor_rows()}


@needs_anchors
def test_no_upstream_rule_warns() -> None:
    for rule in _upstream().rules:
        assert rule.ast is not None
        assert too_many_evttypes_warning(rule.name, event_codes(rule.ast)) is None, rule.name


# Falco's own test file: the rules it flags with LOAD_NO_EVTTYPE (falcosecurity/testing).
WARNED = {
    "no_evttype", "evttype_not_equals", "leading_not", "not_equals_at_end", "not_at_end",
    "not_equals_and_not", "leading_in_not_equals_at_evttype", "not_with_evttypes",
    "not_with_evttypes_addl",
}  # fmt: skip


@needs_anchors
def test_falco_rules_warnings_file() -> None:
    ruleset = load_rules([WARNINGS_RULES])
    warned = set()
    for rule in ruleset.rules:
        assert rule.ast is not None
        if too_many_evttypes_warning(rule.name, event_codes(rule.ast)) is not None:
            warned.add(rule.name)
    assert warned == WARNED


# ---- leaves ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("evt.type = open", {"open"}),
        ("evt.type == open", {"open"}),
        ("evt.type in (open, execve)", {"open", "execve"}),
        ("evt.type != open", U - {"open"}),
        ("evt.type = nosuch", set()),
        ("evt.type != nosuch", U),
        ("evt.type in ()", set()),
        # Only = == != in index: other operators on evt.type match everything.
        ("evt.type startswith open", U),
        ("evt.type intersects (open)", U),
        ("evt.type pmatch (open)", U),
        ("tolower(evt.type) startswith open", U),
        ("evt.type exists", U),
        ("proc.name = cat", U),
        ("evt.dir = <", U),
        ("evt.type[1] = open", U),  # not the evt.type field libsinsp looks for
        ("some_macro", U),  # an identifier left unresolved is neutral
    ],
)
def test_leaf(condition: str, expected: set[str]) -> None:
    assert types(condition) == expected


# ---- negation pushdown -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("not evt.type = open", U - {"open"}),
        ("not not evt.type = open", {"open"}),
        ("not evt.type != open", {"open"}),
        ("not evt.type in (open, execve)", U - {"open", "execve"}),
        # Negation never affects checks unrelated to evt.type ...
        ("not proc.name = cat", U),
        ("not some_macro", U),
        # ... so De Morgan keeps the open events where proc.name is not cat.
        ("not (evt.type = open and proc.name = cat)", U),
        ("not (evt.type = open or evt.type = execve)", U - {"open", "execve"}),
        ("not (evt.type != open and evt.type != execve)", {"open", "execve"}),
        ("not (evt.type = open or proc.name = cat)", U - {"open"}),
        ("evt.type in (open, execve) and not evt.type = open", {"execve"}),
        ("evt.type = open and not (proc.name = cat or evt.type = execve)", {"open"}),
        ("not evt.type exists", set()),
        ("not not evt.type exists", U),
    ],
)
def test_negation(condition: str, expected: set[str]) -> None:
    assert types(condition) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("evt.type = open and evt.type = execve", set()),
        ("evt.type = open or evt.type = execve", {"open", "execve"}),
        ("evt.type = open and proc.name = cat", {"open"}),
        ("evt.type = open or proc.name = cat", U),
        ("(evt.type = open or evt.type = connect) and evt.type in (connect, execve)", {"connect"}),
        ("evt.type = execve and proc.name = foo or evt.type = open or evt.type != connect",
         U - {"connect"}),
    ],
)
def test_and_or(condition: str, expected: set[str]) -> None:
    assert types(condition) == expected


# ---- what libsinsp's event code search rejects -------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("tolower(evt.type) = open", "does not support `evt.type` checks with transformers"),
        ("toupper(tolower(evt.type)) in (OPEN)", "with transformers"),
        ("tolower(evt.type) exists", "with transformers"),
        ("evt.type = val(proc.name)", "right-hand field comparisons on `evt.type`"),
        ("evt.type != tolower(proc.name)", "right-hand field comparisons on `evt.type`"),
    ],
)
def test_search_errors(condition: str, message: str) -> None:
    with pytest.raises(RuleResolveError, match=message.replace("(", r"\(")):
        types(condition)


# ---- the catalog universe, generic syscalls ----------------------------------------------------


def test_default_universe_is_the_catalog() -> None:
    everything = evttypes(parse_condition("proc.name = cat"))
    assert everything == frozenset(catalog.event_types()) - {GENERIC_EVENT}
    assert matches_all(everything)
    assert not matches_all(evttypes(parse_condition("evt.type != open")))


def test_generic_syscalls_share_one_event() -> None:
    # mlock has no dedicated event: libsinsp sees the generic `syscall` event, as for munlock.
    assert catalog.event_type_info("mlock") is not None
    tree = parse_condition("evt.type = mlock")
    assert evttypes(tree) == {"mlock"}
    assert event_codes(tree) == {GENERIC_EVENT}
    both = parse_condition("evt.type = mlock and evt.type != munlock")
    assert evttypes(both) == {"mlock"}
    assert event_codes(both) == set()  # Falco never evaluates this rule


def test_code_count() -> None:
    assert code_count({"open", "execve"}) == 4
    assert code_count({"procexit"}) == 1  # enter only
    assert code_count({"mlock", "munlock", GENERIC_EVENT}) == 2
    assert code_count({"nosuch"}) == 0


# ---- the warning -------------------------------------------------------------------------------


def test_warning_for_every_type() -> None:
    warning = too_many_evttypes_warning("r", event_codes(parse_condition("proc.name = cat")))
    assert warning is not None
    assert warning.code == "too-many-evttypes"
    assert warning.message == TOO_MANY_MESSAGE
    assert warning.extra["rule"] == "r"


def test_warning_for_no_type() -> None:
    # Falco warns on an empty set too (evttypes.empty() || size > 100).
    tree = parse_condition("evt.type = open and evt.type = execve")
    assert too_many_evttypes_warning("r", event_codes(tree)) is not None


def test_no_warning_for_few_types() -> None:
    tree = parse_condition("evt.type in (open, openat, openat2) and proc.name = cat")
    assert too_many_evttypes_warning("r", event_codes(tree)) is None


def test_warn_evttypes_false_silences() -> None:
    tree = parse_condition("proc.name = cat")
    assert too_many_evttypes_warning("r", event_codes(tree), warn_evttypes=False) is None


def test_threshold_counts_codes() -> None:
    dedicated = [n for n in catalog.syscall_event_types()
                 if (i := catalog.event_type_info(n)) and i.category and len(i.directions) == 2]
    at_limit = dedicated[: MAX_EVENT_CODES // 2]
    assert too_many_evttypes_warning("r", at_limit) is None
    assert too_many_evttypes_warning("r", dedicated[: MAX_EVENT_CODES // 2 + 1]) is not None
