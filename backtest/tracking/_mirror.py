"""Mirror a result exactly once: close half-logged runs, log, never duplicate.

The live run, a retried job and any number of ``backtest sync`` processes may try to
mirror the same run directory. :func:`mirror_result` holds the run directory's lock
(:func:`backtest.results.locked`) while it looks up the result's ``backtest.run_key``
in MLflow, so exactly one of them logs it:

* a ``FINISHED`` run with the key exists: nothing is logged;
* runs with the key exist but none finished (a process killed mid-mirror left one
  ``RUNNING``): each is closed as ``KILLED``, tagged ``backtest.superseded``, then the
  result is logged once;
* none exists: the result is logged.

The lock is a ``flock`` on a file in the run directory, so it works for any tracking
URI (a sqlite store or a server) as long as the processes share the output folder,
and the kernel frees it when its holder dies, even by SIGKILL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backtest import results
from backtest.config import TrackingConfig
from backtest.errors import BacktestError
from backtest.masking import mask_text, reveal
from backtest.tracking import _client
from backtest.tracking._flatten import RUN_KEY_TAG, run_key
from backtest.tracking._ui import DEFAULT_EXPERIMENT

log = logging.getLogger("backtest.tracking")

SUPERSEDED_TAG = "backtest.superseded"


@dataclass(frozen=True, slots=True)
class Mirror:
    """What :func:`mirror_result` found or did.

    Attributes:
        run_id: The ``FINISHED`` MLflow run of the result.
        logged: Whether it was logged now (``False``: it was already there).
        closed: Half-logged runs closed as ``KILLED`` first.
    """

    run_id: str
    logged: bool
    closed: tuple[str, ...] = ()


def runs_with_key(client: Any, experiment: str, key: str) -> list[tuple[str, str]]:
    """``(run id, status)`` of the live (not deleted) runs tagged with run key ``key``."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return [
        (run.info.run_id, run.info.status)
        for run in client.runs_tagged([exp.experiment_id], RUN_KEY_TAG, key)
    ]


def mirror_result(
    run_dir: str | Path,
    tracking_cfg: TrackingConfig | None = None,
    children: Sequence[Mapping[str, Any]] | None = None,
    *,
    uri: str | None = None,
    infer_git: bool = True,
) -> Mirror:
    """Make sure the complete result in ``run_dir`` has exactly one ``FINISHED`` MLflow run.

    Args:
        run_dir: A run directory holding a complete result.
        tracking_cfg: Where to log; the run's own ``tracking`` config when unset.
        children: Nested runs for a task whose files hold none (see ``log_result``).
        uri: Overrides the tracking URI.
        infer_git: Tag the current git commit when the record has none.

    Returns:
        The finished run and whether it was logged now.

    Raises:
        ResultPathMissing: ``run_dir`` holds no complete result.
        BacktestError: MLflow is unreachable or refused the run; names the URI.
    """
    from backtest.tracking._log import log_result, read_config, tracking_config

    stored = results.load_result(run_dir)
    cfg = tracking_cfg or tracking_config(read_config(stored.path))
    target = _client.resolve_uri(reveal(uri or cfg.uri))
    experiment = cfg.experiment_name or str(
        stored.record.get("name") or read_config(stored.path).get("name") or DEFAULT_EXPERIMENT
    )
    key = run_key(stored.record)
    with results.locked(stored.path):
        with _client.bounded_http(cfg.timeout_s):
            try:
                _client.check_reachable(target, cfg.timeout_s)
                with _client.connect(target) as client:
                    found = runs_with_key(client, experiment, key)
                    done = [run_id for run_id, status in found if status == "FINISHED"]
                    if done:
                        return Mirror(done[0], logged=False)
                    stale = [run_id for run_id, status in found]
                    for run_id in stale:
                        log.warning("closing half-logged MLflow run %s of %s", run_id, stored.path)
                        client.set_tag(run_id, SUPERSEDED_TAG, "true")
                        if dict(found)[run_id] in ("RUNNING", "SCHEDULED"):
                            client.set_terminated(run_id, "KILLED")
            except BacktestError:
                raise
            except Exception as exc:
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise BacktestError(
                    mask_text(f"reading MLflow at {target} failed: {type(exc).__name__}: {first}")
                ) from exc
        logged = log_result(stored.path, cfg, children, uri=target, infer_git=infer_git)
    return Mirror(logged.run_id, logged=True, closed=tuple(stale))
