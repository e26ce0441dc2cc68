"""Parameter spaces: the grid, random draws and constraints of a per-fold search.

A space maps each parameter to a list of choices or a range
``{low, high, step, log}`` (the ``search.space`` of the config). A constraint is a
boolean expression over parameter names such as ``"fast < slow"`` (or a callable on
a params dict); sets for which it is false are skipped and are not trials.
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtest.errors import ConfigError

Constraint = str | Callable[[Mapping[str, Any]], bool] | None

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def _eval_node(node: ast.AST, env: Mapping[str, NDArray[Any]], text: str) -> Any:
    if isinstance(node, ast.Expression):
        return _eval_node(node.body, env, text)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ConfigError(
                f"search.constraint {text!r} names {node.id!r}, which is not a parameter "
                f"(known: {sorted(env)})",
                key="search.constraint",
            )
        return env[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](
            _eval_node(node.left, env, text), _eval_node(node.right, env, text)
        )
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval_node(node.operand, env, text)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return np.logical_not(_eval_node(node.operand, env, text))
    if isinstance(node, ast.BoolOp):
        operands = [_eval_node(v, env, text) for v in node.values]  # noqa: PD011 - ast, not pandas
        fn = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = operands[0]
        for v in operands[1:]:
            out = fn(out, v)
        return out
    if isinstance(node, ast.Compare) and all(type(op) in _CMPOPS for op in node.ops):
        left = _eval_node(node.left, env, text)
        result: Any = True
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval_node(comp, env, text)
            result = np.logical_and(result, _CMPOPS[type(op)](left, right))
            left = right
        return result
    raise ConfigError(
        f"search.constraint {text!r} may use only parameter names, numbers, arithmetic, "
        "comparisons, and/or/not",
        key="search.constraint",
    )


def constraint_mask(frame: pd.DataFrame, constraint: Constraint) -> NDArray[np.bool_]:
    """Which rows of a parameter frame satisfy ``constraint`` (all when None).

    Raises:
        ConfigError: A malformed expression or an unknown name (key ``search.constraint``).

    Examples:
        >>> frame = pd.DataFrame({"fast": [5, 50], "slow": [20, 20]})
        >>> constraint_mask(frame, "fast < slow").tolist()
        [True, False]
    """
    if constraint is None or (isinstance(constraint, str) and not constraint.strip()):
        return np.ones(len(frame), dtype=bool)
    if callable(constraint):
        return np.array([bool(constraint(row)) for row in frame.to_dict("records")], dtype=bool)
    try:
        tree = ast.parse(constraint, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(
            f"search.constraint {constraint!r} is not an expression: {exc.msg}",
            key="search.constraint",
        ) from exc
    env = {str(c): frame[c].to_numpy() for c in frame.columns}
    out = _eval_node(tree, env, constraint)
    return np.broadcast_to(np.asarray(out, dtype=bool), (len(frame),)).copy()


def _range_spec(name: str, spec: Mapping[str, Any]) -> tuple[float, float, float | None, bool]:
    key = f"search.space.{name}"
    unknown = set(spec) - {"low", "high", "step", "log"}
    if unknown or "low" not in spec or "high" not in spec:
        raise ConfigError(
            f"{key} must be a list of values or {{low, high, step, log}}, got {dict(spec)}",
            key=key,
        )
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), bool(spec.get("log"))
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        raise ConfigError(f"{key}: need finite low <= high, got {low}, {high}", key=key)
    if step is not None and step <= 0:
        raise ConfigError(f"{key}.step must be positive, got {step}", key=f"{key}.step")
    if log and low <= 0:
        raise ConfigError(f"{key}: log ranges need low > 0, got {low}", key=key)
    return low, high, step, log


def _is_int_range(low: Any, high: Any, step: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) and (
        step is None or isinstance(step, int)
    )


def grid_values(name: str, spec: Any) -> list[Any]:
    """The values a grid takes for one parameter.

    Raises:
        ConfigError: An empty list, or a float range without ``step`` (naming the key).
    """
    key = f"search.space.{name}"
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        if len(spec) == 0:
            raise ConfigError(f"{key} is an empty list", key=key)
        return list(spec)
    if not isinstance(spec, Mapping):
        return [spec]
    low, high, step, log = _range_spec(name, spec)
    if _is_int_range(spec["low"], spec["high"], step):
        if log and step is None:
            values = np.unique(np.round(np.geomspace(low, high, 10)).astype(int))
            return [int(v) for v in values]
        return list(range(int(low), int(high) + 1, int(step or 1)))
    if step is None:
        raise ConfigError(f"{key}: a float range needs a step for a grid", key=f"{key}.step")
    n = math.floor((high - low) / step + 1e-9) + 1
    return [float(low + i * step) for i in range(n)]


def grid_frame(space: Mapping[str, Any], constraint: Constraint = None) -> pd.DataFrame:
    """Every combination of the space's values that satisfies ``constraint``.

    Raises:
        ConfigError: An empty space, a bad range, or no combination left.

    Examples:
        >>> grid_frame({"fast": [5, 10], "slow": {"low": 10, "high": 30, "step": 10}},
        ...            "fast < slow").to_dict("list")
        {'fast': [5, 5, 5, 10, 10], 'slow': [10, 20, 30, 20, 30]}
    """
    if not space:
        raise ConfigError("search.space is empty: nothing to optimise", key="search.space")
    names = list(space)
    values = [grid_values(n, space[n]) for n in names]
    frame = pd.DataFrame(list(itertools.product(*values)), columns=names)
    frame = frame[constraint_mask(frame, constraint)].reset_index(drop=True)
    if frame.empty:
        raise ConfigError(
            f"search.constraint {constraint!r} rejects every combination", key="search.constraint"
        )
    return frame


def _draw(name: str, spec: Any, rng: np.random.Generator, n: int) -> NDArray[Any]:
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        choices = grid_values(name, spec)
        return np.array(choices, dtype=object)[rng.integers(0, len(choices), n)]
    if not isinstance(spec, Mapping):
        return np.full(n, spec)
    low, high, step, log = _range_spec(name, spec)
    if _is_int_range(spec["low"], spec["high"], step):
        if log:
            draws = np.exp(rng.uniform(math.log(low), math.log(high + 1), n))
            return np.clip(np.floor(draws), low, high).astype(np.int64)
        s = int(step or 1)
        return int(low) + s * rng.integers(0, (int(high) - int(low)) // s + 1, n)
    if log:
        draws = np.exp(rng.uniform(math.log(low), math.log(high), n))
    else:
        draws = rng.uniform(low, high, n)
    if step is not None:
        draws = low + step * np.round((draws - low) / step)
    return np.clip(draws, low, high)


def random_frame(
    space: Mapping[str, Any],
    n_iter: int,
    rng: np.random.Generator,
    constraint: Constraint = None,
) -> pd.DataFrame:
    """Up to ``n_iter`` distinct random parameter sets that satisfy ``constraint``.

    Lists are uniform choices; ``{low, high}`` ranges are uniform (log-uniform with
    ``log: true``), integer when both bounds are integers, on the ``step`` lattice when
    one is given. Fewer than ``n_iter`` sets come back when the space has fewer.

    Raises:
        ConfigError: ``n_iter < 1``, a bad range, or a constraint nothing satisfies.
    """
    if n_iter < 1:
        raise ConfigError(f"search.n_iter must be >= 1, got {n_iter}", key="search.n_iter")
    if not space:
        raise ConfigError("search.space is empty: nothing to optimise", key="search.space")
    names = list(space)
    kept = pd.DataFrame(columns=names)
    for _ in range(50):
        need = n_iter - len(kept)
        batch = pd.DataFrame({n: _draw(n, space[n], rng, 2 * need) for n in names})
        batch = batch.infer_objects()
        batch = batch[constraint_mask(batch, constraint)]
        kept = pd.concat([kept, batch], ignore_index=True) if len(kept) else batch
        kept = kept.drop_duplicates(ignore_index=True).head(n_iter)
        if len(kept) >= n_iter:
            break
    if kept.empty:
        raise ConfigError(
            f"search.constraint {constraint!r} rejects every random draw", key="search.constraint"
        )
    return kept.reset_index(drop=True).infer_objects()
