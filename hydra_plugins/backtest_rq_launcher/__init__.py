"""Hydra launcher ``hydra/launcher=rq``: multirun jobs run as backtest jobs on RQ workers.

``python -m backtest -m hydra/launcher=rq strategy.fast=5,10,20`` queues one
:class:`~backtest.tasks._jobs.BacktestJob` per override set (its run directory is the sweep
job's directory, its overrides are recorded in ``.hydra/``), waits for the workers, and
returns each job's objective, or its failure, to Hydra (and to a sweeper such as our
Optuna sweeper) as a ``JobReturn``. With no ``queue.redis_url`` a private Redis and
``queue.n_workers`` local workers are started for the sweep and stopped at its end.
"""
