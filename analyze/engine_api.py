"""What both engines share: which rules run, on which events, and what a match is.

The replay evaluator (`analyze.replay`) and the SQL translator (`analyze.sql_engine`) are two
consumers of the same resolved AST. They take the same `RunOptions`, run the same `selected_rules`,
and return the same `Match` values, so a differential test can require identical output and
`analyze run` can build alerts without knowing which engine ran.

`analyze run` keeps the matches as a `MatchTable` (two Arrow arrays), since a run can have
millions. An engine may hand them over in that form directly (`TableEngine.run_table`), so the
`Match` objects never exist; `MatchTable.ordered` is `apply_rule_matching` for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc

from analyze.ruleset import PRIORITIES, LoadedRule, RuleSet

RuleMatching = Literal["first", "all"]


@dataclass(frozen=True)
class RunOptions:
    """Falco's knobs for which rules run and how matches are reported."""

    min_priority: str = "Debug"  # Falco's `priority` config: rules below it do not run
    tags: tuple[str, ...] = ()  # Falco -t: only rules with at least one of these tags
    skip_tags: tuple[str, ...] = ()  # Falco -T: not rules with any of these tags
    rule_matching: RuleMatching = "first"  # Falco's default: first matching rule per event
    since_ns: int | None = None  # evt.time window, inclusive bounds, ns since the epoch
    until_ns: int | None = None


@dataclass(frozen=True)
class CompiledRule:
    """A rule as the engines see it: its position in definition order and its resolved tree."""

    index: int  # definition order: `rule_matching: first` picks the lowest index per event
    rule: LoadedRule
    evttypes: frozenset[str]  # event types it can match (Falco's indexing)


@dataclass(frozen=True, order=True, slots=True)
class Match:
    """One event matched by one rule; `evt_num` identifies the event within the trace.

    Slotted: an engine returns one per alert, and a run may have millions (96 bytes each with
    their list entry and evt.num, against 136 with a `__dict__`)."""

    evt_num: int
    rule_index: int
    rule_name: str = field(compare=False)


@dataclass(frozen=True)
class MatchTable:
    """Matches as two Arrow arrays, in match order: 12 bytes a match where `Match` objects take
    about 100. What `analyze run` keeps of an engine's matches, however many there are."""

    evt_nums: pa.Array  # int64
    rule_indexes: pa.Array  # int32

    @staticmethod
    def of(matches: Sequence[Match]) -> MatchTable:
        return MatchTable(pa.array([m.evt_num for m in matches], pa.int64()),
                          pa.array([m.rule_index for m in matches], pa.int32()))

    def __len__(self) -> int:
        return len(self.evt_nums)

    def slice(self, start: int, stop: int) -> MatchTable:
        """Matches [start, stop) (zero-copy)."""
        return MatchTable(self.evt_nums.slice(start, max(0, stop - start)),
                          self.rule_indexes.slice(start, max(0, stop - start)))

    def pairs(self) -> Iterator[tuple[int, int]]:
        """(evt_num, rule_index) of each match, in order."""
        return zip(self.evt_nums.to_pylist(), self.rule_indexes.to_pylist(), strict=True)

    def arrow(self) -> pa.Table:
        return pa.table({"evt_num": self.evt_nums, "rule_index": self.rule_indexes})

    def ordered(self, mode: RuleMatching) -> MatchTable:
        """`apply_rule_matching` on arrays: sorted by event then rule; with `first`, only the
        lowest rule index per event."""
        table = self.arrow()
        table = table.take(pc.sort_indices(table, sort_keys=[("evt_num", "ascending"),
                                                             ("rule_index", "ascending")]))
        nums = table.column("evt_num").combine_chunks()
        indexes = table.column("rule_index").combine_chunks()
        if mode == "first" and len(nums) > 1:
            later = pc.not_equal(nums.slice(1), nums.slice(0, len(nums) - 1))
            keep = pa.concat_arrays([pa.array([True]), later])
            nums, indexes = nums.filter(keep), indexes.filter(keep)
        return MatchTable(nums, indexes)


@dataclass(frozen=True)
class Skipped:
    """A rule that will not run, and why (reported by `analyze run`, never silent)."""

    rule: str
    reason: str


class Engine(Protocol):
    name: str

    def run(
        self, trace: Sequence[str | Path], rules: Sequence[CompiledRule], options: RunOptions
    ) -> list[Match]:
        """Every match, sorted by (evt_num, rule_index), honouring `options.rule_matching`."""
        ...


@runtime_checkable
class TableEngine(Engine, Protocol):
    """An engine that can also give its matches as a `MatchTable` (same matches, same order),
    sparing the `Match` object per match that `run` builds: `analyze run` prefers it."""

    def run_table(
        self, trace: Sequence[str | Path], rules: Sequence[CompiledRule], options: RunOptions
    ) -> MatchTable:
        ...


class RunFromTable:
    """`Engine.run` for an engine whose `run_table` does the work: the Match objects from it."""

    def run_table(
        self, trace: Sequence[str | Path], rules: Sequence[CompiledRule], options: RunOptions
    ) -> MatchTable:
        raise NotImplementedError

    def run(
        self, trace: Sequence[str | Path], rules: Sequence[CompiledRule], options: RunOptions
    ) -> list[Match]:
        """Every match, sorted by (evt_num, rule_index), honouring `options.rule_matching`."""
        names = {r.index: r.rule.name for r in rules}
        return [Match(n, i, names[i]) for n, i in self.run_table(trace, rules, options).pairs()]


def priority_rank(priority: str) -> int:
    """0 for Emergency (most severe) ... 7 for Debug, as Falco orders them."""
    return PRIORITIES.index(priority)


def selected_rules(
    ruleset: RuleSet, options: RunOptions
) -> tuple[list[CompiledRule], list[Skipped]]:
    """The rules that run, in definition order, and the ones left out with the reason.

    Left out: disabled rules, rules of other sources, rules below the priority threshold, rules
    filtered by tags, and rules whose fields a syscall trace cannot supply.
    """
    from analyze.evttypes import evttypes
    from analyze.typecheck import fields_needing_unavailable_data

    threshold = priority_rank(options.min_priority)
    run: list[CompiledRule] = []
    skipped: list[Skipped] = []
    for index, rule in enumerate(ruleset.rules):
        reason = _excluded(rule, threshold, options)
        if reason is None and rule.ast is not None:
            missing = sorted({f.name for f in fields_needing_unavailable_data(rule.ast)})
            if missing:
                reason = "needs fields a syscall trace cannot supply: " + ", ".join(missing)
        if reason is not None:
            if rule.enabled or reason != "disabled":
                skipped.append(Skipped(rule.name, reason))
            continue
        assert rule.ast is not None
        run.append(CompiledRule(index, rule, evttypes(rule.ast)))
    return run, skipped


def _excluded(rule: LoadedRule, threshold: int, options: RunOptions) -> str | None:
    if not rule.enabled:
        return "disabled"
    if not rule.applicable or rule.ast is None:
        return rule.not_applicable_reason or "not applicable to syscall traces"
    if priority_rank(rule.priority) > threshold:
        return f"priority {rule.priority} is below {options.min_priority}"
    tags = set(rule.tags)
    if options.tags and not tags & set(options.tags):
        return "no tag among " + ", ".join(options.tags)
    if options.skip_tags and tags & set(options.skip_tags):
        return "tagged " + ", ".join(sorted(tags & set(options.skip_tags)))
    return None


def apply_rule_matching(matches: Iterable[Match], mode: RuleMatching) -> list[Match]:
    """Sort by event then rule; with `first`, keep only the lowest rule index per event."""
    ordered = sorted(matches)
    if mode == "all":
        return ordered
    kept: list[Match] = []
    for m in ordered:
        if not kept or kept[-1].evt_num != m.evt_num:
            kept.append(m)
    return kept
