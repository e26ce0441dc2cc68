"""``backtest search-distributed`` (also ``python -m backtest.distributed``): the command line.

The config is composed from ``conf/`` with the Hydra overrides given (for example
``+experiment=sma_cross search=tpe``); the queue comes from its ``queue`` group
(``REDIS_URL``). With no Redis URL, a private Redis and ``queue.n_workers`` local
workers are started for the run. The result (best parameters, the trials table) is
written to ``outputs/<name>/distributed/<study>/`` and mirrored to MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from backtest.cli._errors import EXIT_USER_ERROR, composition_error, queue_extra_missing


def main(argv: Sequence[str] | None = None) -> int:
    """Run a distributed search from the command line; 0 on success, 2 on an error."""
    import argparse
    import sys

    from backtest.errors import BacktestError, describe

    parser = argparse.ArgumentParser(
        prog="backtest search-distributed",
        description="Distributed Optuna search on queue workers.",
    )
    parser.add_argument("--n-trials", type=int, default=None, help="default: search.n_iter")
    parser.add_argument("--workers", type=int, default=None, help="default: queue.n_workers")
    parser.add_argument(
        "--local-workers",
        type=int,
        default=None,
        help="workers to start here (default: queue.n_workers with an embedded Redis, else 0)",
    )
    parser.add_argument(
        "--storage", default=None, help="Optuna storage (default: the queue's Redis)"
    )
    parser.add_argument("--study", default=None, help="study name (default: from the config hash)")
    parser.add_argument(
        "--output", default=None, help="default: outputs/<name>/distributed/<study>"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides")
    args = parser.parse_args(argv)

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from backtest.app import normalise
    from backtest.config import CONF_DIR, QueueConfig
    from backtest.config._hydra import register_configs
    from backtest.masking import remember_config

    what = "backtest search-distributed"
    problem = queue_extra_missing(what)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    from backtest.queue import BacktestJobQueue
    from backtest.queue._distributed import default_study_name, distributed_search

    register_configs()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=normalise(args.overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        print(composition_error(exc, args.overrides), file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        remember_config(OmegaConf.to_container(cfg, resolve=True))
        queue_cfg = OmegaConf.to_object(cfg.queue)
        assert isinstance(queue_cfg, QueueConfig)
        problem = queue_extra_missing(what, local_redis=not queue_cfg.redis_url)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_USER_ERROR
        with BacktestJobQueue(queue_cfg) as queue:
            local = args.local_workers
            if local is None:
                local = queue_cfg.n_workers if queue.embedded else 0
            env = {"BACKTEST_STUDY_STORAGE": args.storage} if args.storage else {}
            allowed = list(cfg.get("allowed_modules") or [])  # fixed per worker
            workers = (
                queue.start_workers(local, env=env, allowed_modules=allowed) if local else None
            )
            study = args.study or default_study_name(cfg)
            output = Path(args.output or Path("outputs") / str(cfg.name) / "distributed" / study)
            try:
                result = distributed_search(
                    cfg,
                    queue,
                    n_trials=args.n_trials,
                    n_workers=args.workers,
                    storage=args.storage,
                    study_name=study,
                    output_dir=output,
                )
            finally:
                if workers is not None:
                    workers.stop()
    except BacktestError as exc:
        print(describe(exc), file=sys.stderr)
        return 2
    done = result.trials["status"].value_counts().to_dict()
    print(f"study {result.study_name} on {result.storage}: {done}, {result.n_retried} retried")
    print(f"best {cfg.search.metric} = {result.best_value:.4f} with {result.best_params}")
    print(f"result written to {output}")
    return 0


if __name__ == "__main__":  # python -m backtest.distributed (an old path of this command)
    raise SystemExit(main())
