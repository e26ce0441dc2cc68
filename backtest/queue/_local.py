"""Worker processes on this machine (``python -m backtest.worker``), started and stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backtest.masking import known_urls_env
from backtest.queue._redis import die_with_parent


class LocalWorkers:
    """Start ``n`` worker processes on this machine (``python -m backtest.worker``).

    Used by the launcher for an embedded Redis, by tests and by the benchmark. The
    processes are stopped by :meth:`stop` (warm shutdown, then SIGKILL after
    ``stop_timeout_s``).

    Args:
        url: Redis URL the workers connect to.
        queue: Queue name.
        n: Number of worker processes.
        maintenance_interval: Passed to each worker.
        monitoring_interval: Passed to each worker.
        heartbeat_grace: Passed to each worker.
        env: Extra environment variables for the workers.
        log_dir: Write each worker's output to ``<log_dir>/worker-<i>.log`` (else discarded).
        allowed_modules: The workers' strategy allow-list (``--allow-module``).
        data_roots: Folders the workers read price files from (``--data-root``; their
            working directory, this one, when empty).
        output_roots: Folders the workers write run directories into
            (``--output-root``; this working directory when empty).
    """

    def __init__(
        self,
        url: str,
        queue: str,
        n: int,
        *,
        maintenance_interval: int = 10,
        monitoring_interval: int = 5,
        heartbeat_grace: int = 15,
        env: dict[str, str] | None = None,
        log_dir: str | Path | None = None,
        burst: bool = False,
        allowed_modules: Sequence[str] = (),
        data_roots: Sequence[str | Path] = (),
        output_roots: Sequence[str | Path] = (),
    ) -> None:
        self.url, self.queue, self.n = url, queue, int(n)
        self._args = [
            "--queues",
            queue,
            "--maintenance-interval",
            str(maintenance_interval),
            "--monitoring-interval",
            str(monitoring_interval),
            "--heartbeat-grace",
            str(heartbeat_grace),
            *(["--burst"] if burst else []),
            *(["--allow-module", *allowed_modules] if allowed_modules else []),
            *(arg for root in data_roots for arg in ("--data-root", str(root))),
            *(arg for root in output_roots for arg in ("--output-root", str(root))),
        ]
        self._env = env or {}
        self._log_dir = Path(log_dir) if log_dir else None
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> LocalWorkers:
        """Start the processes (the URL goes through ``REDIS_URL``, never the command line)."""
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, **known_urls_env(), **self._env, "REDIS_URL": self.url}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        for i in range(len(self.processes), self.n):
            out: Any = subprocess.DEVNULL
            if self._log_dir is not None:
                self._log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self._log_dir / f"worker-{i}.log", "ab")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, "-m", "backtest.queue._cli", *self._args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            if out is not subprocess.DEVNULL:
                out.close()
            self.processes.append(proc)
        return self

    def alive(self) -> list[subprocess.Popen[bytes]]:
        """The worker processes still running."""
        return [p for p in self.processes if p.poll() is None]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask every worker to stop after its current job; SIGKILL those still running."""
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.processes:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.processes = []

    def __enter__(self) -> LocalWorkers:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
