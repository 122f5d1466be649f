"""The compile stage: lists substituted as text, macros inlined as trees, rules resolved.

This follows Falco's rule_loader_compiler.cpp step by step, because its order *is* the semantics:
1. Lists: an item naming a list whose first definition comes before this list's last definition
   is replaced by that list's items, one level deep (compile_list_infos).
2. Every condition (macro or rule) has list names replaced TEXTUALLY, before parsing: each list in
   definition order, wherever its name stands between delimiters (blanks, `(`, `)`, `,`, `=`); the
   name becomes its items joined with ", " (resolve_list). So `file_my_list` is left alone, and a
   name that a substitution writes into the text is replaced again by a later list.
3. Macros are parsed, then each, in definition order, has the macros it can see inlined as trees:
   those first defined before its own last definition (or append). A rule sees every macro.
   Inlining is recursive, with a path check for reference loops (filter_macro_resolver.cpp).
4. A rule's condition gets its exceptions appended (exceptions.build_condition), then the lists,
   then it is parsed and its macros are inlined.
Rules of a source other than syscall are kept but not applicable; they are resolved only to learn
which lists and macros they use, never reported as errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from analyze.ast import And, Expr, MacroRef, Not, Or
from analyze.errors import Position, RuleError, RuleResolveError, RuleWarning, SourceRef
from analyze.exceptions import build_condition, quote_item
from analyze.parser import LOADER_MAX_DEPTH, parse_condition
from analyze.ruleset import (
    SYSCALL_SOURCE,
    Diagnostics,
    FalcoList,
    ListDef,
    LoadedRule,
    Macro,
    MacroDef,
    RuleDef,
)

_BLANKS = " \t\n\r"
_DELIMS = _BLANKS + "(),="

ParseCache = dict[str, Expr]


@dataclass(frozen=True)
class CompileOutput:
    rules: tuple[LoadedRule, ...]
    macros: dict[str, Macro]
    lists: dict[str, FalcoList]
    warnings: tuple[RuleWarning, ...]


# ---- lists ---------------------------------------------------------------------------------------


def expand_lists(lists: Sequence[ListDef]) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per list: its items with earlier lists inlined one level, and the lists it inlined."""
    by_name = {d.name: d for d in lists}
    out: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for d in lists:
        items: list[str] = []
        refs: list[str] = []
        for item in d.items:
            ref = by_name.get(item)
            if ref is not None and ref.index < d.visibility:
                refs.append(ref.name)
                items.extend(ref.items)
            else:
                items.append(item)
        out[d.name] = (tuple(items), tuple(refs))
    return out


def substitute_lists(
    text: str, lists: Sequence[tuple[str, Sequence[str]]]
) -> tuple[str, tuple[str, ...]]:
    """Falco's textual list substitution over every list in order; returns the lists used."""
    used: list[str] = []
    for name, items in lists:
        text, hit = _resolve_list(text, name, items)
        if hit:
            used.append(name)
    return text, tuple(used)


def _resolve_list(cnd: str, name: str, items: Sequence[str]) -> tuple[str, bool]:
    # A line-by-line port of resolve_list(): the blank handling decides the exact output text.
    used = False
    start = cnd.find(name)
    while start != -1:
        end = start + len(name)
        if (start == 0 or cnd[start - 1] in _DELIMS) and (end >= len(cnd) or cnd[end] in _DELIMS):
            while start > 0 and cnd[start - 1] in _BLANKS:
                start -= 1
            while end < len(cnd) and cnd[end] in _BLANKS:
                end += 1
            sub = ", ".join(quote_item(v) for v in items)
            if not sub:  # an empty list must not leave a dangling comma
                if start > 0 and cnd[start - 1] == ",":
                    start -= 1
                elif end < len(cnd) and cnd[end] == ",":
                    end += 1
            cnd = (cnd[:start] + " " if start > 0 else "") + sub + " " + cnd[end:]
            start += len(sub) + 1
            used = True
        start = cnd.find(name, start + 1)
    return cnd, used


# ---- macros --------------------------------------------------------------------------------------


class _Resolver:
    """Inline MacroRef nodes (filter_macro_resolver): only identifiers in boolean position."""

    def __init__(self, table: Mapping[str, Expr | None]) -> None:
        self.table = table  # None marks a macro that failed: its users fail quietly
        self.path: list[str] = []
        self.anchor = -1  # position, in the item's own text, of the reference being expanded
        self.loops: list[tuple[str, int]] = []
        self.unknown: list[tuple[str, int]] = []
        self.resolved: list[str] = []
        self.broken = False

    def run(self, node: Expr) -> Expr:
        if isinstance(node, And | Or):
            items = tuple(self.run(i) for i in node.items)
            if all(a is b for a, b in zip(items, node.items, strict=True)):
                return node
            return And(items, pos=node.pos) if isinstance(node, And) else Or(items, pos=node.pos)
        if isinstance(node, Not):
            item = self.run(node.item)
            return node if item is node.item else Not(item, pos=node.pos)
        if isinstance(node, MacroRef):
            return self.inline(node)
        return node  # checks are never explored: any identifier inside them is a value

    def inline(self, ref: MacroRef) -> Expr:
        at = ref.pos if not self.path else self.anchor
        if ref.name not in self.table:
            self.unknown.append((ref.name, at))
            return ref
        body = self.table[ref.name]
        if body is None:
            self.broken = True
            return ref
        if ref.name in self.path:
            self.loops.append((f"reference loop in macro '{ref.name}'", at))
            return ref
        if not self.path:
            self.anchor = ref.pos
        self.path.append(ref.name)
        new = self.run(body)
        self.path.pop()
        if ref.name not in self.resolved:
            self.resolved.append(ref.name)
        return new

    def error(self, text: str) -> RuleResolveError | None:
        """Falco reports only the first problem: a loop if any, else the first unknown macro."""
        if self.loops:
            message, pos, code = *self.loops[0], "macro-loop"
        elif self.unknown:
            name, pos = self.unknown[0]
            message, code = f"Undefined macro '{name}' used in filter.", "undefined-macro"
        else:
            return None
        where = Position.at(text, pos) if pos >= 0 else None
        return RuleResolveError(message, text=text, position=where, code=code)


# ---- the compile stage ---------------------------------------------------------------------------


class Compiler:
    """One run of the compile stage over the definitions collected so far."""

    def __init__(self, diag: Diagnostics, cache: ParseCache) -> None:
        self.diag = diag
        self.cache = cache
        self.lists_used: set[str] = set()
        self.macros_used: set[str] = set()
        self.list_subs: list[tuple[str, tuple[str, ...]]] = []
        self.list_refs: dict[str, tuple[str, ...]] = {}
        self.macro_lists: dict[str, tuple[str, ...]] = {}
        self.macro_macros: dict[str, tuple[str, ...]] = {}

    def compile(
        self, lists: Sequence[ListDef], macros: Sequence[MacroDef], rules: Sequence[RuleDef]
    ) -> CompileOutput:
        expanded = expand_lists(lists)
        self.list_subs = [(d.name, expanded[d.name][0]) for d in lists]
        self.list_refs = {name: refs for name, (_, refs) in expanded.items()}
        for refs in self.list_refs.values():
            self.lists_used.update(refs)
        texts, trees = self._parse_macros(macros)
        self._resolve_macros(macros, texts, trees)
        out_rules = tuple(self._rule(r, trees) for r in rules)
        out_macros = {m.name: self._macro_result(m, texts[m.name], trees[m.name]) for m in macros}
        out_lists = {
            d.name: FalcoList(d.name, tuple(d.items), expanded[d.name][0], d.origin,
                              d.name in self.lists_used, expanded[d.name][1], d.source)
            for d in lists
        }
        warnings = self._list_loops(out_lists) + self._unused(out_macros, out_lists)
        return CompileOutput(out_rules, out_macros, out_lists, warnings)

    def _parse(self, text: str) -> Expr:
        tree = self.cache.get(text)
        if tree is None:
            tree = self.cache[text] = parse_condition(text, max_depth=LOADER_MAX_DEPTH)
        return tree

    def _expand(self, text: str) -> tuple[str, tuple[str, ...]]:
        expanded, used = substitute_lists(text, self.list_subs)
        self.lists_used.update(used)
        return expanded, used

    def _report(self, err: RuleError, source: SourceRef) -> None:
        self.diag.error(err.with_source(source))

    def _report_in(self, err: RuleError, d: MacroDef | RuleDef, raw: str, shift: int) -> None:
        """Report an error inside a condition, naming the appended piece it falls in."""
        err.source = d.condition_origin
        if err.position is not None and len(d.parts) > 1:
            for start, origin in reversed(d.parts[1:]):
                # where the piece starts once lists are substituted (pieces join at a blank)
                boundary = len(substitute_lists(raw[: start + shift], self.list_subs)[0])
                if err.position.offset >= boundary:
                    err.source = origin
                    break
        self.diag.error(err)

    def _parse_macros(self, macros: Sequence[MacroDef]
                      ) -> tuple[dict[str, str], dict[str, Expr | None]]:
        texts: dict[str, str] = {}
        trees: dict[str, Expr | None] = {}
        for m in macros:
            texts[m.name], self.macro_lists[m.name] = self._expand(m.condition)
            try:
                trees[m.name] = self._parse(texts[m.name])
            except RuleError as err:
                trees[m.name] = None
                self._report_in(err, m, m.condition, 0)
        return texts, trees

    def _resolve_macros(self, macros: Sequence[MacroDef], texts: Mapping[str, str],
                        trees: dict[str, Expr | None]) -> None:
        # In place and in definition order, as Falco does: a macro resolved earlier is inlined
        # already expanded; one defined later (seen through a later append) is expanded here.
        for m in macros:
            tree = trees[m.name]
            if tree is None:
                continue
            visible = {o.name: trees[o.name] for o in macros if o.index < m.visibility}
            resolver = _Resolver(visible)
            new = resolver.run(tree)
            self.macros_used.update(resolver.resolved)
            self.macro_macros[m.name] = self._closure(resolver.resolved)
            err = resolver.error(texts[m.name])
            if err is not None:
                trees[m.name] = None
                self._report_in(err, m, m.condition, 0)
            else:
                trees[m.name] = None if resolver.broken else new

    def _closure(self, direct: Sequence[str]) -> tuple[str, ...]:
        out: list[str] = []
        for name in direct:
            for n in (name, *self.macro_macros.get(name, ())):
                if n not in out:
                    out.append(n)
        return tuple(out)

    def _lists_of(self, direct: Sequence[str], macros: Sequence[str]) -> tuple[str, ...]:
        out: list[str] = []
        for name in (*direct, *(x for m in macros for x in self.macro_lists.get(m, ()))):
            for n in (name, *self.list_refs.get(name, ())):
                if n not in out:
                    out.append(n)
        return tuple(out)

    def _macro_result(self, m: MacroDef, text: str, tree: Expr | None) -> Macro:
        used = self.macro_macros.get(m.name, ())
        return Macro(
            m.name, m.condition, text, tree, m.origin, m.condition_origin,
            m.name in self.macros_used, used, self._lists_of(self.macro_lists[m.name], used),
            m.source,
        )

    def _rule(self, r: RuleDef, trees: Mapping[str, Expr | None]) -> LoadedRule:
        applicable = r.source == SYSCALL_SOURCE
        reason = "" if applicable else (
            f"source '{r.source}' is not supported: sysreplay replays syscall events only")
        text = r.condition
        try:
            if r.exceptions:
                text = build_condition(r.condition, r.exceptions)
        except RuleError as err:
            if applicable:  # Falco never compiles a rule of an unknown source
                self._report(err, r.origin)
            return self._rule_result(r, text, text, None, (), (), reason)
        expanded, direct_lists = self._expand(text)
        shift = 1 if r.exceptions else 0  # build_condition wrapped the condition in parentheses
        tree, used_macros = self._resolve_rule(r, (text, shift), expanded, trees,
                                               report=applicable)
        lists = self._lists_of(direct_lists, used_macros)
        return self._rule_result(r, text, expanded, tree if applicable else None,
                                 used_macros, lists, reason)

    def _resolve_rule(self, r: RuleDef, raw: tuple[str, int], text: str,
                      trees: Mapping[str, Expr | None], *, report: bool
                      ) -> tuple[Expr | None, tuple[str, ...]]:
        try:
            tree = self._parse(text)
        except RuleError as err:
            if report:
                self._report_in(err, r, *raw)
            return None, ()
        resolver = _Resolver(trees)
        new = resolver.run(tree)
        self.macros_used.update(resolver.resolved)
        problem = resolver.error(text)
        if problem is not None and report:
            self._report_in(problem, r, *raw)
        ok = problem is None and not resolver.broken
        return (new if ok else None), self._closure(resolver.resolved)

    def _rule_result(self, r: RuleDef, text: str, expanded: str, tree: Expr | None,
                     used_macros: tuple[str, ...], used_lists: tuple[str, ...],
                     reason: str) -> LoadedRule:
        return LoadedRule(
            name=r.name, condition_text=text, expanded_text=expanded, ast=tree,
            output=r.output, desc=r.desc, priority=r.priority, source=r.source,
            enabled=r.enabled, tags=tuple(sorted(r.tags)), exceptions=tuple(r.exceptions),
            warn_evttypes=r.warn_evttypes, skip_if_unknown_filter=r.skip_if_unknown_filter,
            capture=r.capture, capture_duration=r.capture_duration,
            applicable=not reason, not_applicable_reason=reason, origin=r.origin,
            condition_origin=r.condition_origin, used_macros=used_macros, used_lists=used_lists,
        )

    @staticmethod
    def _list_loops(lists: Mapping[str, FalcoList]) -> tuple[RuleWarning, ...]:
        # Falco expands lists one level deep, so list_a -> list_b -> list_a is no error there:
        # the name survives as a literal value. Say so rather than fail a file Falco loads.
        return tuple(
            RuleWarning("list-loop", f"List '{d.name}' refers back to itself through other "
                        f"lists; Falco keeps '{d.name}' as a literal value", d.origin)
            for d in lists.values() if d.name in d.expanded_items
        )

    def _unused(self, macros: Mapping[str, Macro], lists: Mapping[str, FalcoList]
                ) -> tuple[RuleWarning, ...]:
        out = [RuleWarning("unused-macro", "Macro not referred to by any other rule/macro",
                           m.origin) for m in macros.values() if not m.used]
        out += [RuleWarning("unused-list", "List not referred to by any other rule/macro",
                            d.origin) for d in lists.values() if not d.used]
        return tuple(out)
