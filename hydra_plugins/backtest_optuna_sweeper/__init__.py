"""Hydra sweeper ``hydra/sweeper=optuna``: Optuna 5 (TPE, CMA-ES, random) over any launcher.

``python -m backtest -m hydra/sweeper=optuna hydra.sweeper.n_trials=50
'strategy.fast=range(2,50)' 'strategy.slow=range(20,300,10)'``
asks Optuna for a parameter set, runs it as a Hydra job through the configured launcher
(basic, rq, ...), tells Optuna the job's return value (the objective of ``app.run``)
and asks again as soon as a job finishes, keeping up to ``n_jobs`` jobs in flight.
With ``storage`` and ``study_name`` a stopped sweep resumes: trials already finished in
the study count toward ``n_trials``. Failed jobs and NaN objectives are told to Optuna
as failed trials, counted and reported in ``optimization_results.yaml``.
"""
