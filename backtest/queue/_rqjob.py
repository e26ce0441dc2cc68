"""The rq ``Job`` class our queues and workers use: it runs our job function only.

Anyone who can write to Redis can enqueue a job naming any importable function
(``os.system``, ...) or attach callbacks and webhooks to it. A worker built on this
class checks the payload *before importing anything*: it must name
:data:`~backtest.queue._execute.EXECUTE`, with no instance, one string argument and no
keyword arguments. Anything else fails with :class:`ForeignJobRefused` and nothing is
executed. Callbacks are never imported or called, and webhooks are never sent.
"""

from __future__ import annotations

import logging
from typing import Any

from rq.job import Job

from backtest.errors import BacktestError
from backtest.queue._execute import EXECUTE, execute

log = logging.getLogger("backtest.queue")


class ForeignJobRefused(BacktestError, PermissionError):
    """A queued job named a function other than ours; it was not executed.

    Attributes:
        job_id: The refused job.
        func_name: The function it named.
    """

    def __init__(self, job_id: str, func_name: object, why: str) -> None:
        super().__init__(
            f"job {job_id!r} refused: {why}; workers only execute {EXECUTE}(payload) "
            f"(the job named {func_name!r}); nothing was executed"
        )
        self.job_id = job_id
        self.func_name = func_name


def check_allowed(job: Job) -> str:
    """Return the job's payload if it calls our function correctly, else raise.

    Raises:
        ForeignJobRefused: another function, an instance method, or wrong arguments.
    """
    func_name = job.func_name
    if func_name != EXECUTE:
        raise ForeignJobRefused(job.id, func_name, "it names a function that is not allowed")
    if job.instance is not None:
        raise ForeignJobRefused(job.id, func_name, "it is bound to an instance")
    args, kwargs = job.args, job.kwargs
    if (
        kwargs
        or not isinstance(args, list | tuple)
        or len(args) != 1
        or not isinstance(args[0], str)
    ):
        raise ForeignJobRefused(job.id, func_name, "it does not pass exactly one JSON string")
    return args[0]


class BacktestRqJob(Job):
    """An rq job that can only run :func:`backtest.queue._execute.execute`."""

    def _execute(self) -> Any:
        payload = check_allowed(self)
        return execute(payload)

    @property
    def func(self) -> Any:
        """Our function if the job names it; never imports anything else."""
        return execute if self.func_name == EXECUTE else None

    def _refused_callback(self, which: str, name: object) -> None:
        if name:
            log.warning(
                "job %s: ignoring %s callback %r (callbacks are never run)", self.id, which, name
            )

    @property
    def success_callback(self) -> None:
        """Never run: returns ``None`` whatever the stored job names."""
        self._refused_callback("success", getattr(self, "_success_callback_name", None))
        return None

    @property
    def failure_callback(self) -> None:
        """Never run: returns ``None`` whatever the stored job names."""
        self._refused_callback("failure", getattr(self, "_failure_callback_name", None))
        return None

    @property
    def stopped_callback(self) -> None:
        """Never run: returns ``None`` whatever the stored job names."""
        self._refused_callback("stopped", getattr(self, "_stopped_callback_name", None))
        return None

    def send_webhooks(self, status: Any, *, exc_string: str | None = None) -> None:
        """Never send webhooks (a stored job must not make us contact other hosts)."""
        if getattr(self, "webhooks", None):
            log.warning("job %s: ignoring %d webhook(s)", self.id, len(self.webhooks))
