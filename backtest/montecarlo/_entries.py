"""``random_entries``: the observed trades placed at random times (a timing null)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Segments = tuple[tuple[NDArray[np.float64], ...], ...]  # per asset: the trades' position runs


def trade_segments(positions: NDArray[np.float64]) -> Segments:
    """Per asset, the position values of each trade (a run of one non-zero sign)."""
    out = []
    for j in range(positions.shape[1]):
        x = positions[:, j]
        s = np.sign(x)
        change = np.flatnonzero(np.diff(np.concatenate(([0.0], s))) != 0)
        runs = []
        for i, start in enumerate(change):
            stop = change[i + 1] if i + 1 < change.size else x.size
            if s[start] != 0:
                runs.append(x[start:stop].copy())
        out.append(tuple(runs))
    return tuple(out)


def _place(
    segments: tuple[NDArray[np.float64], ...],
    order: NDArray[np.int64],
    n: int,
    rng: np.random.Generator,
) -> NDArray[np.float64] | None:
    """Put the trades in ``order`` at random times, or None if they cannot fit."""
    lengths = np.array([segments[i].size for i in order])
    signs = np.array([np.sign(segments[i][0]) for i in order])
    needs_gap = np.concatenate(([False], signs[1:] == signs[:-1]))
    spare = n - int(lengths.sum()) - int(needs_gap.sum())
    if spare < 0:
        return None
    n_runs = order.size
    # stars and bars: a uniformly random split of the spare flat bars into n_runs + 1 gaps
    cuts = np.sort(rng.choice(spare + n_runs, size=n_runs, replace=False))
    gaps = np.diff(np.concatenate(([-1], cuts))) - 1 + needs_gap
    starts = np.cumsum(gaps) + np.concatenate(([0], np.cumsum(lengths)[:-1]))
    first = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    where = np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))
    out = np.zeros(n)
    out[where] = np.concatenate([segments[i] for i in order])
    return out


def random_positions(
    segments: Segments, n_bars: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Random entry times for the observed trades, per asset.

    Each asset keeps its trades (their lengths, directions and position sizes), so the
    number of trades and the exposure are exactly the observed ones; the trades are
    put in a random order at random times, flat bars spread uniformly between them. Two
    trades of the same direction keep at least one flat bar between them (else they
    would merge into one trade); when flat bars are too few for a shuffled order (an
    always-invested long/short book), the observed order of directions is kept and
    trades are shuffled within each direction.
    """
    out = np.zeros((n_bars, len(segments)))
    for j, segs in enumerate(segments):
        if not segs:
            continue
        n_runs = len(segs)
        roomy = n_bars - sum(s.size for s in segs) >= n_runs - 1  # any order fits
        placed = None
        for _ in range(1 if roomy else 3):
            placed = _place(segs, rng.permutation(n_runs), n_bars, rng)
            if placed is not None:
                break
        if placed is None:
            signs = np.array([np.sign(s[0]) for s in segs])
            order = np.arange(n_runs)
            for sign in (-1.0, 1.0):
                same = np.flatnonzero(signs == sign)
                order[same] = rng.permutation(same)
            placed = _place(segs, order, n_bars, rng)
        assert placed is not None  # the observed order of directions always fits
        out[:, j] = placed
    return out
