"""A condition's AST as a rich Tree, for `analyze parse`."""

from __future__ import annotations

from rich.text import Text
from rich.tree import Tree

from analyze import ast


def _label(node: ast.Node) -> Text:
    """One line per node: its kind, then what it holds (values shown as the parser read them)."""
    kind = type(node).__name__
    text = Text(kind, style="bold cyan")
    match node:
        case ast.MacroRef(name=name):
            text.append(f" {name}", style="magenta")
        case ast.Field():
            text.append(" " + ast.to_text(node), style="green")
        case ast.Literal(value=value):
            text.append(" " + ast.quote(value), style="yellow")
        case ast.UnaryCheck(op=op, modifier=mod) | ast.BinaryCheck(op=op, modifier=mod):
            text.append(f" {mod + ' ' if mod else ''}{op}", style="bold")
        case ast.Transformer(name=name):
            text.append(f" {name}()", style="bold")
    return text


def render_tree(node: ast.Node) -> Tree:
    tree = Tree(_label(node))
    stack: list[tuple[ast.Node, Tree]] = [(node, tree)]
    while stack:  # iterative: conditions with long and/or chains are wide, not only deep
        current, branch = stack.pop()
        for child in current.children():
            sub = branch.add(_label(child))
            stack.append((child, sub))
    return tree
