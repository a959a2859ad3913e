"""The --where language: a small grammar of comparisons on existing columns, parsed into SQL.

Columns are checked against the table and quoted, every literal becomes a bound parameter; comments,
function calls and anything outside the grammar are refused with one line naming the position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from emocli.analytics.sql import Params, check_column
from emocli.errors import InputError
from emocli.store.core import quote as quote_ident  # identifiers from users are always double-quoted

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<qident>"(?:[^"]|"")+")
  | (?P<ident>[^\W\d]\w*)
  | (?P<op><=|>=|<>|!=|==|=|<|>|\(|\)|,|-)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "LIKE", "ILIKE", "TRUE", "FALSE"}
_COMPARISONS = {"=": "=", "==": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TYPED_LITERALS = {"DATE": "DATE", "TIMESTAMP": "TIMESTAMP"}
WHERE_HELP = ("comparisons on columns (=, !=, <, <=, >, >=, [NOT] IN (...), [NOT] BETWEEN x AND y, "
              "IS [NOT] NULL, [NOT] LIKE 'pat') joined by AND/OR/NOT and parentheses; literals: numbers, "
              "'strings', DATE 'YYYY-MM-DD', TIMESTAMP '...', TRUE/FALSE")


@dataclass(frozen=True)
class Token:
    kind: str  # number | string | ident | qident | op | end
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "ident" else ""


def _tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        if text.startswith("--", pos) or text.startswith("/*", pos):
            raise InputError(f"--where: comments are not allowed (at position {pos + 1})", hint=WHERE_HELP)
        match = _TOKEN.match(text, pos)
        if not match:
            raise InputError(f"--where: unexpected character {text[pos]!r} at position {pos + 1}", hint=WHERE_HELP)
        if match.lastgroup != "ws":
            tokens.append(Token(match.lastgroup, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


@dataclass(frozen=True)
class _Operand:
    sql: str
    is_column: bool


class _WhereParser:
    """Recursive descent over: or := and (OR and)*; and := not (AND not)*; not := NOT not | ( or ) | cmp."""

    def __init__(self, text: str, columns: Sequence[str], params: Params):
        self.text = text
        self.columns = list(columns)
        self.params = params
        self.tokens = _tokenize(text)
        self.index = 0

    # token helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def _advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _is_keyword(self, *words: str) -> bool:
        return self.token.upper in words

    def _is_op(self, *ops: str) -> bool:
        return self.token.kind == "op" and self.token.text in ops

    def _fail(self, what: str) -> InputError:
        near = self.token.text or "end of expression"
        return InputError(f"--where: {what} at position {self.token.pos + 1} (near {near!r})", hint=WHERE_HELP)

    def _expect_keyword(self, word: str) -> None:
        if not self._is_keyword(word):
            raise self._fail(f"expected {word}")
        self._advance()

    def _expect_op(self, op: str) -> None:
        if not self._is_op(op):
            raise self._fail(f"expected {op!r}")
        self._advance()

    # grammar
    def parse(self) -> str:
        if self.token.kind == "end":
            raise InputError("--where: empty expression", hint=WHERE_HELP)
        sql = self._or()
        if self.token.kind != "end":
            raise self._fail("unexpected text")
        return sql

    def _or(self) -> str:
        return self._joined("OR", self._and)

    def _and(self) -> str:
        return self._joined("AND", self._not)

    def _joined(self, word: str, parse_part) -> str:
        parts = [parse_part()]
        while self._is_keyword(word):
            self._advance()
            parts.append(parse_part())
        return parts[0] if len(parts) == 1 else "(" + f" {word} ".join(parts) + ")"

    def _not(self) -> str:
        if self._is_keyword("NOT"):
            self._advance()
            return f"(NOT {self._not()})"
        if self._is_op("("):
            self._advance()
            inner = self._or()
            self._expect_op(")")
            return f"({inner})"
        return self._comparison()

    def _comparison(self) -> str:
        left = self._operand()
        negated = ""
        if self._is_keyword("NOT"):
            self._advance()
            negated = "NOT "
            if not self._is_keyword("IN", "BETWEEN", "LIKE", "ILIKE"):
                raise self._fail("expected IN, BETWEEN or LIKE after NOT")
        if self._is_keyword("IS"):
            self._advance()
            is_not = ""
            if self._is_keyword("NOT"):
                self._advance()
                is_not = "NOT "
            self._expect_keyword("NULL")
            self._require_column(left)
            return f"({left.sql} IS {is_not}NULL)"
        if self._is_keyword("IN"):
            self._advance()
            self._expect_op("(")
            items = [self._literal()]
            while self._is_op(","):
                self._advance()
                items.append(self._literal())
            self._expect_op(")")
            self._require_column(left)
            return f"({left.sql} {negated}IN ({', '.join(items)}))"
        if self._is_keyword("BETWEEN"):
            self._advance()
            low = self._operand()
            self._expect_keyword("AND")
            high = self._operand()
            self._require_column(left, low, high)
            return f"({left.sql} {negated}BETWEEN {low.sql} AND {high.sql})"
        if self._is_keyword("LIKE", "ILIKE"):
            word = self._advance().upper
            if self.token.kind != "string":
                raise self._fail(f"expected a 'pattern' after {word}")
            pattern = self._literal()
            self._require_column(left)
            return f"({left.sql} {negated}{word} {pattern})"
        if self.token.kind == "op" and self.token.text in _COMPARISONS:
            op = _COMPARISONS[self._advance().text]
            right = self._operand()
            self._require_column(left, right)
            return f"({left.sql} {op} {right.sql})"
        raise self._fail("expected a comparison (=, !=, <, <=, >, >=, IN, BETWEEN, IS, LIKE)")

    def _require_column(self, *operands: _Operand) -> None:
        if not any(operand.is_column for operand in operands):
            raise InputError(f"--where: every comparison must involve a column of the table ({self.text!r})",
                             hint=WHERE_HELP)

    def _operand(self) -> _Operand:
        token = self.token
        if token.kind == "qident":
            self._advance()
            return self._column(token.text[1:-1].replace('""', '"'))
        if token.kind == "ident" and token.upper not in _KEYWORDS and not self._typed_literal_ahead():
            self._advance()
            if self._is_op("("):
                raise InputError(f"--where: function calls are not allowed ({token.text}(...))", hint=WHERE_HELP)
            return self._column(token.text)
        return _Operand(self._literal(), is_column=False)

    def _typed_literal_ahead(self) -> bool:
        return self.token.upper in _TYPED_LITERALS and self.tokens[self.index + 1].kind == "string"

    def _column(self, name: str) -> _Operand:
        check_column(name, self.columns, where="--where")
        return _Operand(quote_ident(name), is_column=True)

    def _literal(self) -> str:
        token = self.token
        if self._is_op("-") and self.tokens[self.index + 1].kind == "number":
            self._advance()
            return self.params.add(-_number(self._advance().text))
        if token.kind == "number":
            self._advance()
            return self.params.add(_number(token.text))
        if token.kind == "string":
            self._advance()
            return self.params.add(_string(token.text))
        if self._typed_literal_ahead():
            kind = _TYPED_LITERALS[self._advance().upper]
            return f"CAST({self.params.add(_string(self._advance().text))} AS {kind})"
        if token.upper in ("TRUE", "FALSE"):
            self._advance()
            return self.params.add(token.upper == "TRUE")
        if token.kind == "ident" and token.upper not in _KEYWORDS:
            raise self._fail("expected a literal (number, 'string', DATE '...')")
        raise self._fail("expected a column or a literal")


def _number(text: str) -> int | float:
    return int(text) if text.isdigit() else float(text)


def _string(text: str) -> str:
    return text[1:-1].replace("''", "'")


@dataclass(frozen=True)
class Where:
    """A parsed --where: SQL text with quoted identifiers and $p placeholders bound through `params`."""

    sql: str


def parse_where(text: str | None, columns: Sequence[str], params: Params) -> Where | None:
    """Parse a user filter into SQL that names only existing columns and binds every literal."""
    if text is None:
        return None
    return Where(_WhereParser(text, columns, params).parse())
