"""Constraints: which parameter combinations are worth a trial (``fast < slow``).

A constraint is a Python callable on a params dict, or, from config, an expression
such as ``"fast < slow"`` or ``"slow >= 2 * fast and lookback > 5"``. Expressions
are parsed with :mod:`ast` and interpreted here: only parameter names, numbers,
``True``/``False``, comparisons, ``and``/``or``/``not`` and ``+ - * /`` are allowed,
so a config file can never run code. Combinations for which the constraint is false
are skipped: they are not trials.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError

_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_KEY = "search.constraint"
_ALLOWED = (
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.Compare,
    ast.BinOp,
    ast.Load,
    *_COMPARE,
    *_ARITH,
)


class Constraint:
    """A compiled constraint; ``constraint(params) -> bool`` and a vectorised :meth:`mask`.

    Args:
        rule: A callable ``params -> bool`` or an expression string.
        names: The parameter names an expression may use (checked when given).

    Raises:
        ConfigError: an expression that does not parse, uses anything but the
            allowed operations, or names an unknown parameter (key
            ``search.constraint``).

    Examples:
        >>> c = Constraint("fast < slow", names=["fast", "slow"])
        >>> c({"fast": 5, "slow": 20}), c({"fast": 30, "slow": 20})
        (True, False)
    """

    def __init__(
        self, rule: str | Callable[[dict[str, Any]], bool], names: Collection[str] | None = None
    ) -> None:
        self.text: str | None = None
        self._tree: ast.expr | None = None
        self._func: Callable[[dict[str, Any]], bool] | None = None
        if isinstance(rule, str):
            self.text = rule
            self._tree = _parse(rule, names)
        elif callable(rule):
            self._func = rule
        else:
            raise ConfigError(
                f"{_KEY} must be an expression string or a callable, got {type(rule).__name__}",
                key=_KEY,
            )

    def __call__(self, params: Mapping[str, Any]) -> bool:
        """Whether one combination is allowed."""
        if self._func is not None:
            return bool(self._func(dict(params)))
        assert self._tree is not None
        return bool(_evaluate(self._tree, params))

    def mask(self, frame: pd.DataFrame | Mapping[str, Any]) -> NDArray[np.bool_]:
        """Whether each combination is allowed (rows of a frame, or name -> array)."""
        columns = {str(c): np.asarray(frame[c]) for c in frame}
        count = len(next(iter(columns.values()))) if columns else 0
        if count == 0:
            return np.zeros(0, dtype=bool)
        if self._func is not None:
            names = list(columns)
            rows = zip(*(columns[n].tolist() for n in names), strict=True)
            return np.fromiter(
                (bool(self._func(dict(zip(names, row, strict=True)))) for row in rows),
                dtype=bool,
                count=count,
            )
        assert self._tree is not None
        with np.errstate(divide="ignore", invalid="ignore"):
            value = _evaluate(self._tree, columns)
        return np.broadcast_to(np.asarray(value, dtype=bool), (count,)).copy()

    def __repr__(self) -> str:
        return f"Constraint({self.text or self._func!r})"


def _parse(text: str, names: Collection[str] | None) -> ast.expr:
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ConfigError(
            f"{_KEY} {text!r} is not a valid expression: {exc.msg}", key=_KEY
        ) from exc
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if names is not None and node.id not in names:
                raise ConfigError(
                    f"{_KEY} {text!r} uses {node.id!r}, which is not a parameter "
                    f"(parameters: {', '.join(sorted(names))})",
                    key=_KEY,
                )
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float | bool):
                raise ConfigError(
                    f"{_KEY} {text!r}: only numbers are allowed as constants, not {node.value!r}",
                    key=_KEY,
                )
        elif not isinstance(node, _ALLOWED):
            raise ConfigError(
                f"{_KEY} {text!r} uses {type(node).__name__}; only parameter names, numbers, "
                "comparisons, and/or/not and + - * / are allowed",
                key=_KEY,
            )
    return tree


def _evaluate(node: ast.expr, env: Mapping[str, Any]) -> Any:
    """Interpret an already checked expression over scalars or numpy arrays."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ConfigError(f"{_KEY} uses {node.id!r}, which is not a parameter", key=_KEY)
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, env)
        if isinstance(node.op, ast.Not):
            return np.logical_not(value)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp):
        return _ARITH[type(node.op)](_evaluate(node.left, env), _evaluate(node.right, env))
    if isinstance(node, ast.BoolOp):
        operands = [_evaluate(v, env) for v in node.values]  # noqa: PD011 - ast, not pandas
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = operands[0]
        for operand in operands[1:]:
            out = combine(out, operand)
        return out
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, env)
        result: Any = True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, env)
            result = np.logical_and(result, _COMPARE[type(op)](left, right))
            left = right
        return result
    raise ConfigError(f"{_KEY}: unsupported expression {ast.dump(node)}", key=_KEY)


def as_constraint(
    rule: str | Callable[..., bool] | Constraint | None, names: Collection[str] | None = None
) -> Constraint | None:
    """``None``, or ``rule`` compiled into a :class:`Constraint`."""
    if rule is None or isinstance(rule, Constraint):
        return rule
    if isinstance(rule, str) and not rule.strip():
        return None
    return Constraint(rule, names)
