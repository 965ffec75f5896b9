"""nbgrader's markers in plain source files: find them, cut them out.

In the reference code, what a student writes sits inside a function body between a line
``### BEGIN SOLUTION`` and a line ``### END SOLUTION`` (each alone on its line, indented
like the code). The signature, the docstring and any ``# Hint:`` comments above the
block stay in the student's version. In the graded tests, what only instructors see sits
between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``.

:func:`stub_solutions` replaces each solution block by one ``raise NotImplementedError``
at the block's indentation, naming the function and the lesson; :func:`strip_hidden`
drops hidden blocks. Both fail loudly on an unbalanced or nested marker.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


class MarkerError(ValueError):
    """A BEGIN without its END (or the reverse), or blocks nested in each other."""


@dataclass(frozen=True)
class Block:
    begin: int  # 0-based line index of the BEGIN marker
    end: int  # 0-based line index of the END marker
    indent: str  # the BEGIN marker's indentation


def find_blocks(source: str, begin_marker: str, end_marker: str, where: str = "<source>") -> list[Block]:
    """Every BEGIN … END pair in ``source``, checked for balance."""
    blocks, open_at = [], None
    for number, line in enumerate(source.splitlines()):
        text = line.strip()
        if text == begin_marker:
            if open_at is not None:
                raise MarkerError(f"{where}:{number + 1}: {begin_marker} inside the block opened on line {open_at + 1}")
            open_at = number
        elif text == end_marker:
            if open_at is None:
                raise MarkerError(f"{where}:{number + 1}: {end_marker} without {begin_marker}")
            opening = source.splitlines()[open_at]
            blocks.append(Block(open_at, number, opening[: len(opening) - len(opening.lstrip())]))
            open_at = None
    if open_at is not None:
        raise MarkerError(f"{where}:{open_at + 1}: {begin_marker} is never closed by {end_marker}")
    return blocks


def enclosing_function(source: str, line_index: int) -> str | None:
    """Name of the innermost function (``Class.method`` for methods) holding a 0-based line."""
    best, best_span = None, None

    def visit(node, prefix):
        nonlocal best, best_span
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if (
                    not isinstance(child, ast.ClassDef)
                    and child.lineno - 1 <= line_index <= child.end_lineno - 1
                    and (best_span is None or child.end_lineno - child.lineno < best_span)
                ):
                    best, best_span = name, child.end_lineno - child.lineno
                name += "."
            visit(child, name)

    visit(ast.parse(source), "")
    return best


def stub_solutions(
    source: str, path: str, lesson: int | None, function_lessons: dict[str, int] | None = None
) -> tuple[str, list[str]]:
    """Replace every solution block by ``raise NotImplementedError(...)``.

    The stub names ``lesson``, or the lesson ``function_lessons`` gives its function (a
    module shared by lessons, as ``pg/objective.py`` is). Returns the new source and the
    names of the functions that now need writing. A block outside any function is an
    error: the stub must leave an importable module.
    """
    lines = source.splitlines(keepends=True)
    blocks = find_blocks(source, BEGIN_SOLUTION, END_SOLUTION, path)
    functions = []
    for block in reversed(blocks):
        function = enclosing_function(source, block.begin)
        if function is None:
            raise MarkerError(f"{path}:{block.begin + 1}: a solution block must sit inside a function body")
        number = (function_lessons or {}).get(function, lesson)
        which = f"lesson {number}: " if number is not None else ""
        stub = (
            f'{block.indent}raise NotImplementedError("{which}write {function} '
            f'in {path} (your code replaces this line)")\n'
        )
        lines[block.begin : block.end + 1] = [stub]
        functions.append(function)
    return "".join(lines), sorted(set(functions))


def strip_hidden(source: str, path: str = "<source>") -> str:
    """Drop every hidden-tests block, markers included."""
    lines = source.splitlines(keepends=True)
    for block in reversed(find_blocks(source, BEGIN_HIDDEN, END_HIDDEN, path)):
        del lines[block.begin : block.end + 1]
    return "".join(lines)


def solution_lines(source: str, path: str = "<source>") -> list[str]:
    """The stripped, non-trivial lines inside solution blocks (to look for leaks)."""
    lines = source.splitlines()
    found = []
    for block in find_blocks(source, BEGIN_SOLUTION, END_SOLUTION, path):
        for line in lines[block.begin + 1 : block.end]:
            text = line.strip()
            if len(text) >= 12 and not text.startswith("#") and text not in TRIVIAL_LINES:
                found.append(text)
    return found


# Lines too common to count as a leak when they appear elsewhere.
TRIVIAL_LINES = {
    "return reward",
    "raise NotImplementedError",
    "else:",
    "continue",
    "return V",
    "return Q",
    "if terminated:",
}
