"""The `where` row filter of a dossier view: one plain boolean expression over the source's columns.

The filter is parsed with sqlglot and checked against an allow-list of expression nodes, so
subqueries, several statements, table or file functions (read_csv, ...), unknown functions and
comments are refused before anything runs. What runs is sqlglot's re-rendering of the parsed
tree, never the admin's text, so a parser differential cannot smuggle anything through.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, TokenError

_CONNECTIVES = (exp.And, exp.Or, exp.Not, exp.Paren, exp.Xor)
_PREDICATES = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.Boolean,
    exp.RegexpLike,
    exp.StartsWith,
)
_VALUES = (
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Neg,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.IntDiv,
    exp.DPipe,
    exp.Cast,
    exp.TryCast,
    exp.DataType,
    exp.DataTypeParam,
    exp.Interval,
    exp.Var,
    exp.Case,
    exp.If,
    exp.Coalesce,
    exp.Tuple,
)
_FUNCTIONS = (
    exp.Lower,
    exp.Upper,
    exp.Length,
    exp.Abs,
    exp.Round,
    exp.Floor,
    exp.Ceil,
    exp.Year,
    exp.Month,
    exp.Day,
    exp.Quarter,
    exp.DayOfWeek,
    exp.Extract,
    exp.DateTrunc,
    exp.Substring,
    exp.Trim,
    exp.StrPosition,
    exp.Concat,
    exp.CurrentDate,
    exp.Greatest,
    exp.Least,
    exp.Left,
    exp.Right,
)
ALLOWED = _CONNECTIVES + _PREDICATES + _VALUES + _FUNCTIONS
ALLOWED_FUNCTION_NAMES = sorted(
    {cls.__name__.lower() for cls in _FUNCTIONS}
    | {"coalesce", "if", "regexp_matches", "starts_with", "cast"}
)


_EXAMPLE_FIX = "write one boolean expression such as birth_year <= 2008."


class RowFilterError(ValueError):
    """The filter is not one plain boolean expression over the source's columns."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.fix = fix


def normalize_filter(text: str, columns: Iterable[str]) -> str:
    """Check `text` and return the SQL that will run, with every identifier quoted.

    `columns` are the source's column names; anything else named is refused. Whatever sqlglot
    makes of hostile text, the answer is a RowFilterError, never a traceback.
    """
    try:
        return _normalize(text.strip(), {c.lower() for c in columns})
    except RecursionError:  # sqlglot parses and renders recursively
        raise RowFilterError(
            "the row filter is nested too deeply.",
            "write a flatter condition, with fewer parentheses, NOT or CASE inside each other.",
        ) from None
    except SqlglotError as exc:  # parse and token errors are worded in _normalize; the rest here
        raise RowFilterError(
            f"the row filter cannot be handled as SQL ({exc}).", _EXAMPLE_FIX
        ) from None


def _normalize(text: str, known: set[str]) -> str:
    if not text:
        raise RowFilterError("the row filter is empty.", "remove `where`, or write a condition.")
    try:
        tokens = sqlglot.tokenize(text, read="duckdb")
    except TokenError as exc:
        raise RowFilterError(
            f"the row filter cannot be read as SQL ({exc}).", _EXAMPLE_FIX
        ) from None
    if any(tok.comments for tok in tokens):
        raise RowFilterError("the row filter contains a comment.", "remove the comment.")
    if any(tok.token_type == sqlglot.TokenType.SEMICOLON for tok in tokens):
        raise RowFilterError(
            "the row filter contains ';' (several statements).",
            "write one boolean expression without ';'.",
        )
    try:
        parsed = sqlglot.parse(text, read="duckdb")
    except ParseError as exc:
        first = exc.errors[0]["description"] if exc.errors else str(exc)
        raise RowFilterError(f"the row filter is not valid SQL ({first}).", _EXAMPLE_FIX) from None
    if len(parsed) != 1 or parsed[0] is None:
        raise RowFilterError(
            "the row filter must be exactly one expression.", "write one boolean expression."
        )
    tree = parsed[0]
    if tree.find(exp.Query, exp.Subquery, exp.Table, exp.From) is not None:
        raise RowFilterError(
            "the row filter contains a subquery or a table reference.",
            "filter on the source's own columns only.",
        )
    for node in tree.walk():
        _check_node(node, known)
    if not _looks_boolean(tree):
        raise RowFilterError(
            "the row filter is not a condition (true or false per row).",
            "compare a column with a value, such as birth_year <= 2008.",
        )
    # what DuckDB cannot be given faithfully is refused (UnsupportedError), not approximated
    return tree.sql(dialect="duckdb", identify=True, unsupported_level=ErrorLevel.RAISE)


def _check_node(node: exp.Expr, known: set[str]) -> None:
    if isinstance(node, exp.Query | exp.Subquery | exp.Table | exp.From):
        raise RowFilterError(
            "the row filter contains a subquery or a table reference.",
            "filter on the source's own columns only.",
        )
    if isinstance(node, exp.Anonymous):
        raise RowFilterError(
            f"the row filter calls the function {node.name}(), which is not allowed.",
            f"use only these functions: {', '.join(ALLOWED_FUNCTION_NAMES)}.",
        )
    if isinstance(node, exp.Column):
        if node.table or node.args.get("db") or node.args.get("catalog"):
            raise RowFilterError(
                f"the row filter names '{node.sql()}' with a table prefix.",
                "name the column alone.",
            )
        if isinstance(node.this, exp.Star):
            raise RowFilterError("the row filter uses '*'.", "name the columns.")
        if node.name.lower() not in known:
            raise RowFilterError(
                f"the row filter names the column '{node.name}', which the source does not have.",
                f"use one of: {', '.join(sorted(known))}.",
            )
        return
    if isinstance(node, exp.In) and (node.args.get("query") or node.args.get("unnest")):
        raise RowFilterError("the row filter uses IN with a subquery.", "list literal values.")
    if not isinstance(node, ALLOWED):
        if isinstance(node, exp.Func):
            what = f"calls the function {node.sql_name().lower()}()"
        else:
            what = f"contains {type(node).__name__}"
        raise RowFilterError(
            f"the row filter {what}, which is not allowed in a plain condition.",
            f"use comparisons, AND/OR/NOT, IN, BETWEEN, LIKE, IS NULL and these functions: "
            f"{', '.join(ALLOWED_FUNCTION_NAMES)}.",
        )


def _looks_boolean(tree: exp.Expr) -> bool:
    """A cheap syntactic check; apply and validate also ask DuckDB for the type."""
    while isinstance(tree, exp.Paren):
        tree = tree.this
    return isinstance(
        tree, _CONNECTIVES + _PREDICATES + (exp.Column, exp.Case, exp.If, exp.Coalesce, exp.Cast)
    )
