"""Parser for Falco/libsinsp filter conditions.

A scannerless recursive-descent parser that follows libsinsp's `filter/parser.cpp` token by token
(operator order, what needs a blank after it, bare-string and number shapes, quoted-string
escapes), so a condition means here what it means in Falco. It returns the tree of `analyze.ast`
and raises `RuleSyntaxError` with the line and column of the offending text.

Grammar (EBNF; blanks are ' ', '\\t', '\\b', '\\r', '\\n'):

    Expr              ::= OrExpr
    OrExpr            ::= AndExpr ('or' OrExprTail)*
    OrExprTail        ::= Blank AndExpr | '(' Expr ')'
    AndExpr           ::= NotExpr ('and' AndExprTail)*
    AndExprTail       ::= Blank NotExpr | '(' Expr ')'
    NotExpr           ::= ('not' Blank)* NotExprTail
    NotExprTail       ::= 'not(' Expr ')' | Check
    Check             ::= Operand Condition | Identifier | '(' Expr ')'
    Operand           ::= Field | Transformer
    Transformer       ::= TransformerName '(' TransformerArg (',' TransformerArg)* ')'
    TransformerArg    ::= NumValue | QuotedStr | TransformerList | Transformer | Field
    TransformerList   ::= '(' (TransformerListArg (',' TransformerListArg)*)? ')'
    TransformerListArg::= Field | Transformer | QuotedStr | NumValue
    TransformerOrVal  ::= Transformer | 'val(' Field ')'
    Condition         ::= Modifier? ( UnaryOperator
                            | NumOperator (TransformerOrVal | NumValue)
                            | StrOperator (TransformerOrVal | StrValue)
                            | ListOperator (ListValue | TransformerOrVal | Identifier) )
    ListValue         ::= '(' (StrValue (',' StrValue)*)? ')'
    Field             ::= FieldName ('[' (QuotedStr | FieldArgBareStr) ']')?
    NumValue          ::= HexNumber | Number
    StrValue          ::= QuotedStr | BareStr

    UnaryOperator     ::= 'exists'
    NumOperator       ::= '<=' | '<' | '>=' | '>'
    StrOperator       ::= '==' | '=' | '!=' | ('glob' | 'iglob' | 'contains' | 'icontains'
                          | 'bcontains' | 'startswith' | 'bstartswith' | 'endswith' | 'regex') Blank
    ListOperator      ::= 'intersects' | 'in' | 'pmatch'
    Modifier          ::= ('anyof' | 'allof' | 'oneof') Blank        (sysreplay extension)
    TransformerName   ::= 'tolower' | 'toupper' | 'b64' | 'basename' | 'len' | 'join'
                          | 'concat' | 'getopt'

    Identifier        ::= [a-zA-Z]+[a-zA-Z0-9_]*
    FieldName         ::= [a-zA-Z]+[a-zA-Z0-9_]*('.'[a-zA-Z]+[a-zA-Z0-9_]*)+
    FieldArgBareStr   ::= [^][\"'[:space:]]+
    HexNumber         ::= 0[xX][0-9a-fA-F]+
    Number            ::= [+-]?[0-9]+[.]?[0-9]*([eE][+-][0-9]+)?
    QuotedStr         ::= '"' ... '"' | "'" ... "'"
                          (escapes: \\b \\f \\n \\r \\t \\\\ \\/ \\" \\' \\<space>)
    BareStr           ::= [^()\"'[:space:]=,]+

As in libsinsp, a value list is only literals; an identifier after a list operator is a single
value (Falco substitutes list names textually before parsing, so what is left is a literal).
Nesting deeper than `MAX_DEPTH` is an error, not a crash.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from analyze import ast
from analyze.errors import Position, RuleSyntaxError

MAX_DEPTH = 100
LOADER_MAX_DEPTH = 1000  # what Falco's rule loader sets for rule conditions

_BLANKS = " \t\b\r\n"
_RE_NOT_BLANK = re.compile(r"not[ \t\n\r\f\v]+")
_RE_IDENTIFIER = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*+")
_RE_FIELD_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*+(?:\.[a-zA-Z][a-zA-Z0-9_]*+)++")
_RE_FIELD_ARG_BARE = re.compile(r"[^\]\[\"' \t\n\r\f\v]++")
_RE_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
_RE_NUMBER = re.compile(r"[+\-]?[0-9]++\.?[0-9]*+(?:[eE][+\-][0-9]++)?")
_RE_BARE = re.compile(r"[^()\"' \t\n\r\f\v=,]++")

# Order matters: libsinsp tries them in this order and takes the first prefix that matches.
# A trailing space marks operators that must be followed by a blank.
_NUM_OPS = ("<=", "<", ">=", ">")
_STR_OPS = (
    "==", "=", "!=", "glob ", "iglob ", "contains ", "icontains ", "bcontains ",
    "startswith ", "bstartswith ", "endswith ", "regex ",
)
_LIST_OPS = ("intersects", "in", "pmatch")
_MODIFIERS = tuple(m + " " for m in ast.MODIFIERS)
_TRANSFORMERS = tuple(t + "(" for t in ast.TRANSFORMERS)
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", " ": "\\", "\\": "\\", "/": "/"}


def parse_condition(text: str, *, max_depth: int = MAX_DEPTH) -> ast.Expr:
    """Parse a Falco condition into an AST; raise RuleSyntaxError with line and column.

    `max_depth` bounds the recursion like libsinsp's parser (100 by default; Falco's rule loader
    passes 1000). Each level of parentheses costs about five.
    """
    if not isinstance(text, str):
        raise RuleSyntaxError(f"a condition must be a string, not {type(text).__name__}")
    # Each depth unit is one Python frame; make sure the interpreter allows the bound we promise.
    needed = 2 * max_depth + 200
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)
    return _Parser(text, max_depth).parse()


def unescape(quoted: str) -> str:
    """Decode a quoted string token (quotes included) with libsinsp's escape rules."""
    out: list[str] = []
    delim = quoted[0]
    i, end = 1, len(quoted) - 1
    while i < end:
        c = quoted[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = quoted[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
        elif e in "\"'":
            if e != delim:
                other = "'-quoted" if delim == "'" else '"-quoted'
                raise ValueError(f"invalid \\{e} escape in {other} string")
            out.append(e)
        else:
            raise ValueError(f"unsupported string escape sequence: \\{e}")
        i += 2
    return "".join(out)


class _Parser:
    def __init__(self, text: str, max_depth: int = MAX_DEPTH) -> None:
        self.text = text
        self.max_depth = max_depth
        self.i = 0
        self.depth = 0
        self.last = ""  # last token, for "unexpected token after ..." messages

    # ---- errors and depth ----------------------------------------------------------------------

    def error(self, message: str, at: int | None = None) -> RuleSyntaxError:
        offset = self.i if at is None else at
        return RuleSyntaxError(
            message, text=self.text, position=Position.at(self.text, offset), code="syntax"
        )

    def enter(self) -> None:
        self.depth += 1
        if self.depth >= self.max_depth:
            raise self.error(f"exceeded max depth limit of {self.max_depth}")

    def leave(self) -> None:
        self.depth -= 1

    # ---- lexing helpers ------------------------------------------------------------------------

    def blank(self) -> bool:
        start = self.i
        text, n = self.text, len(self.text)
        while self.i < n and text[self.i] in _BLANKS:
            self.i += 1
        return self.i > start

    def lit(self, s: str) -> bool:
        if self.text.startswith(s, self.i):
            self.i += len(s)
            self.last = s
            return True
        return False

    def rx(self, pattern: re.Pattern[str]) -> str | None:
        m = pattern.match(self.text, self.i)
        if m is None or m.end() == self.i:
            return None
        self.i = m.end()
        self.last = m.group(0)
        return self.last

    def operator(self, ops: tuple[str, ...], *, rewind: bool = False) -> str | None:
        """The first of `ops` at the cursor; a trailing space in `ops` means "needs a blank".

        Like libsinsp, a word operator found without its blank ends the search *without
        stepping back*: `proc.name globin (a)` reads as `proc.name in (a)` in Falco too.
        `rewind` undoes that for our own extensions (modifiers), which must not change parsing.
        """
        for op in ops:
            if not op.endswith(" "):
                if self.lit(op):
                    return op
                continue
            start = self.i
            if self.lit(op[:-1]):
                if self.blank():
                    return op[:-1]
                if rewind:
                    self.i = start
                    continue
                return None
        return None

    def quoted(self) -> str | None:
        """A quoted string; like libsinsp, a delimiter preceded by a backslash never closes."""
        text, start = self.text, self.i
        if start >= len(text) or text[start] not in "\"'":
            return None
        delim, prev, j = text[start], "\\", start
        while j < len(text):
            c = text[j]
            if c == delim and prev != "\\":
                token = text[start : j + 1]
                try:
                    value = unescape(token)
                except ValueError as exc:
                    raise self.error(str(exc), at=start) from None
                self.i = j + 1
                self.last = token
                return value
            prev = c
            j += 1
        return None

    # ---- grammar ---------------------------------------------------------------------------------

    def parse(self) -> ast.Expr:
        if self.text == "":
            raise self.error("filter input string is empty")
        expr = self.parse_or()
        if self.i != len(self.text):
            after = f"after '{self.last}', " if self.last else ""
            raise self.error(f"unexpected token {after}expecting 'or', 'and'")
        return expr

    def parse_bool(self, word: str, sub: Callable[[], ast.Expr]) -> ast.Expr:
        """`sub (word sub)*`; the keyword must be followed by a blank or '('."""
        self.enter()
        pos = self.i
        self.blank()
        items = [sub()]
        self.blank()
        while self.lit(word):
            if self.blank():
                items.append(sub())
            elif self.lit("("):
                items.append(self.parse_embedded())
            else:
                raise self.error(f"expected blank or '(' after '{word}'")
            self.blank()
        self.leave()
        if len(items) == 1:
            return items[0]
        node = ast.And if word == "and" else ast.Or
        return node(tuple(items), pos=pos)

    def parse_or(self) -> ast.Expr:
        return self.parse_bool("or", self.parse_and)

    def parse_and(self) -> ast.Expr:
        return self.parse_bool("and", self.parse_not)

    def parse_not(self) -> ast.Expr:
        self.enter()
        self.blank()
        pos = self.i
        negate = False
        while self.rx(_RE_NOT_BLANK):
            negate = not negate
        if self.lit("not("):
            negate = not negate
            child = self.parse_embedded()
        else:
            child = self.parse_check()
        self.leave()
        return ast.Not(child, pos=pos) if negate else child

    def parse_embedded(self) -> ast.Expr:
        """The rest of `( Expr )` after the opening parenthesis."""
        self.enter()
        self.blank()
        child = self.parse_or()
        self.blank()
        if not self.lit(")"):
            raise self.error("expected a ')' token")
        self.leave()
        return child

    def parse_check(self) -> ast.Expr:
        self.enter()
        self.blank()
        pos = self.i
        if self.lit("("):
            result = self.parse_embedded()
        elif (name := self.rx(_RE_FIELD_NAME)) is not None:
            result = self.parse_condition(self.parse_field_rest(name, pos), pos)
        elif (tr := self.operator(_TRANSFORMERS)) is not None:
            self.blank()
            result = self.parse_condition(self.parse_transformer_rest(tr[:-1], pos), pos)
        elif (ident := self.rx(_RE_IDENTIFIER)) is not None:
            result = ast.MacroRef(ident, pos=pos)
        else:
            raise self.error("expected a '(' token, a field check, or an identifier")
        self.leave()
        return result

    def parse_field_rest(self, name: str, pos: int) -> ast.Field:
        if not self.lit("["):
            return ast.Field(name, pos=pos)
        arg = self.quoted()
        if arg is None:
            arg = self.rx(_RE_FIELD_ARG_BARE)
        if arg is None:
            raise self.error("expected a valid field argument: a quoted string or a bare string")
        if not self.lit("]"):
            raise self.error("expected a ']' token")
        return ast.Field(name, arg, pos=pos)

    def parse_transformer_rest(self, name: str, pos: int) -> ast.Transformer:
        """Arguments and ')' of a transformer whose `name(` was just read."""
        self.enter()
        self.blank()
        args = [self.parse_transformer_arg()]
        self.blank()
        while self.lit(","):
            args.append(self.parse_transformer_arg())
            self.blank()
        if not self.lit(")"):
            raise self.error("expected a ')' token closing the transformer")
        self.leave()
        return ast.Transformer(name, tuple(args), pos=pos)

    def parse_transformer_arg(self, in_list: bool = False) -> ast.TransformerArg:
        self.enter()
        self.blank()
        pos = self.i
        arg: ast.TransformerArg
        if (num := self.rx(_RE_HEX) or self.rx(_RE_NUMBER)) is not None:
            arg = ast.Literal(num, pos=pos)
        elif (s := self.quoted()) is not None:
            arg = ast.Literal(s, quoted=True, pos=pos)
        elif not in_list and self.lit("("):
            arg = self.parse_transformer_list(pos)
        elif (tr := self.operator(_TRANSFORMERS)) is not None:
            arg = self.parse_transformer_rest(tr[:-1], pos)
        elif (name := self.rx(_RE_FIELD_NAME)) is not None:
            arg = self.parse_field_rest(name, pos)
        else:
            what = "field, transformer, quoted string, or number"
            raise self.error(f"expected a transformer argument: {what}")
        self.leave()
        return arg

    def parse_transformer_list(self, pos: int) -> ast.TransformerList:
        self.blank()
        items: list[ast.TransformerArg] = []
        if not self.lit(")"):
            items.append(self.parse_transformer_arg(in_list=True))
            self.blank()
            while self.lit(","):
                items.append(self.parse_transformer_arg(in_list=True))
                self.blank()
            if not self.lit(")"):
                raise self.error("expected a ')' token closing the list")
        return ast.TransformerList(tuple(items), pos=pos)

    def parse_condition(self, left: ast.Operand, pos: int) -> ast.Expr:
        self.enter()
        self.blank()
        modifier = self.operator(_MODIFIERS, rewind=True)
        self.blank()
        op_start = self.i  # errors point here even when libsinsp's lexer moved past a word
        result: ast.Expr
        if self.operator(("exists",)):
            result = ast.UnaryCheck(left, "exists", modifier, pos=pos)
        elif (op := self.operator(_NUM_OPS)) is not None:
            result = ast.BinaryCheck(left, op, self.parse_num_value(), modifier, pos=pos)
        elif (op := self.operator(_STR_OPS)) is not None:
            result = ast.BinaryCheck(left, op, self.parse_str_value(), modifier, pos=pos)
        elif (op := self.operator(_LIST_OPS)) is not None:
            result = ast.BinaryCheck(left, op, self.parse_list_value(), modifier, pos=pos)
        else:
            ops = ", ".join(f"'{o}'" for o in ast.OPERATORS)
            raise self.error(f"expected a valid check operator: one of {ops}", at=op_start)
        self.leave()
        return result

    def parse_transformer_or_val(self) -> ast.Transformer | ast.Val | None:
        pos = self.i
        if self.lit("val("):
            self.blank()
            fpos = self.i
            name = self.rx(_RE_FIELD_NAME)
            if name is None:
                raise self.error("expected a field within 'val' transformer")
            field = self.parse_field_rest(name, fpos)
            self.blank()
            if not self.lit(")"):
                raise self.error("expected a ')' token closing the transformer")
            return ast.Val(field, pos=pos)
        if (tr := self.operator(_TRANSFORMERS)) is not None:
            return self.parse_transformer_rest(tr[:-1], pos)
        return None

    def parse_num_value(self) -> ast.RightValue:
        self.blank()
        pos = self.i
        if (tv := self.parse_transformer_or_val()) is not None:
            return tv
        if (num := self.rx(_RE_HEX) or self.rx(_RE_NUMBER)) is not None:
            return ast.Literal(num, pos=pos)
        raise self.error("expected a number value or a field with a valid transformer")

    def parse_plain_str(self) -> ast.Literal | None:
        pos = self.i
        if (s := self.quoted()) is not None:
            return ast.Literal(s, quoted=True, pos=pos)
        if (bare := self.rx(_RE_BARE)) is not None:
            return ast.Literal(bare, pos=pos)
        return None

    def parse_str_value(self) -> ast.RightValue:
        self.blank()
        if (tv := self.parse_transformer_or_val()) is not None:
            return tv
        if (lit := self.parse_plain_str()) is not None:
            return lit
        raise self.error("expected a string value or a field with a valid transformer")

    def parse_list_value(self) -> ast.RightValue:
        self.blank()
        pos = self.i
        if self.lit("("):
            self.blank()
            values: list[ast.Literal] = []
            first = self.parse_plain_str()
            if first is not None:
                values.append(first)
                self.blank()
                while self.lit(","):
                    self.blank()
                    item = self.parse_plain_str()
                    if item is None:
                        raise self.error("expected a string value")
                    values.append(item)
                    self.blank()
            if not self.lit(")"):
                raise self.error("expected a ')' token")
            return ast.ValueList(tuple(values), pos=pos)
        if (tv := self.parse_transformer_or_val()) is not None:
            return tv
        if (ident := self.rx(_RE_IDENTIFIER)) is not None:
            return ast.ValueList((ast.Literal(ident, pos=pos),), pos=pos)
        raise self.error("expected a list, an identifier, or a field with a valid transformer")
