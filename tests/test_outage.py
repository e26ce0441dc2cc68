"""Workers and wait() outlive a Redis outage (a real redis-server stopped and restarted)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from pathlib import Path

import pytest

COUNTING = """
import os, time, uuid
from dataclasses import dataclass
from pathlib import Path
from backtest.strategies import SmaCross

@dataclass(frozen=True, slots=True)
class CountingSmaCross(SmaCross):
    delay_s: float = 0.0

    def positions(self, prices):
        runs = Path(os.environ["COUNT_DIR"])
        (runs / f"{self.fast}-{uuid.uuid4().hex[:8]}").write_text("ran")
        time.sleep(self.delay_s)
        return SmaCross.positions(self, prices)
"""


class PersistentRedis:
    """redis-server on a Unix socket that saves its data when stopped and reloads it."""

    def __init__(self, folder: Path) -> None:
        from backtest.queue._redis import redis_server_executable

        self.folder = folder
        self.url = f"unix://{folder / 'redis.sock'}"
        self.args = [
            redis_server_executable(),
            "--port", "0",
            "--unixsocket", str(folder / "redis.sock"),
            "--unixsocketperm", "700",
            "--dir", str(folder),
            "--appendonly", "no",
            "--logfile", str(folder / "redis.log"),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from backtest.errors import QueueUnavailable
        from backtest.queue._redis import connect

        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                connect(self.url).close()
                return
            except QueueUnavailable:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        """``SHUTDOWN SAVE``: Redis writes the queue to disk and exits (as a restart would)."""
        import redis

        from backtest.queue._redis import connect

        if self.proc is not None:
            with contextlib.suppress(redis.ConnectionError):  # it hangs up as it exits
                connect(self.url).shutdown(save=True)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None


@pytest.mark.redis
@pytest.mark.slow
def test_workers_and_wait_outlive_a_redis_outage(tmp_path: Path) -> None:
    from backtest.config import QueueConfig
    from backtest.queue import BacktestJobQueue
    from tests.quick_workers import quick_workers, sma_jobs
    from tests.test_worker import _base_config

    (tmp_path / "support").mkdir()
    (tmp_path / "support" / "counting.py").write_text(COUNTING)
    counts = tmp_path / "counts"
    counts.mkdir()
    server = PersistentRedis(tmp_path)
    server.start()
    jobs = sma_jobs(  # each positions call is counted: the look-ahead check's would count too
        _base_config(),
        6,
        "counting.CountingSmaCross",
        tmp_path / "out",
        engine={"check_lookahead": False},
        delay_s=3.0,
    )
    cfg = QueueConfig(redis_url=server.url, name="outage", job_timeout=120, retries=2)
    pool = quick_workers(
        server.url,
        "outage",
        2,
        support=tmp_path / "support",
        module="counting",
        env={"COUNT_DIR": str(counts)},
        log_dir=tmp_path / "logs",
        output_roots=[tmp_path],
    )
    try:
        with BacktestJobQueue(cfg) as q, pool:
            ids = q.submit_many(jobs)
            deadline = time.monotonic() + 120
            while sum(q.status(i).status == "started" for i in ids) < 2:
                assert time.monotonic() < deadline, "the workers never started two jobs"
                time.sleep(0.1)
            times: dict[str, float] = {}

            def outage() -> None:
                time.sleep(1.0)  # wait() is polling by now
                server.stop()  # and both workers are busy
                times["down"] = time.monotonic()
                time.sleep(10)
                server.start()
                times["up"] = time.monotonic()

            thread = threading.Thread(target=outage)
            thread.start()
            final = q.wait(ids, timeout=300, progress=False, outage_s=120)
            thread.join()
            done = time.monotonic()
            alive = len(pool.alive())
        print(f"all 6 jobs finished {done - times['up']:.1f} s after Redis came back")
        assert {r.status for r in final.values()} == {"finished"}
        assert alive == 2, "a worker process exited during the outage"
        ran: dict[str, int] = {}
        for marker in counts.iterdir():
            fast = marker.name.split("-")[0]
            ran[fast] = ran.get(fast, 0) + 1
        assert ran == {str(5 + i): 1 for i in range(6)}, ran  # nothing computed twice
        logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
        assert "went away" in logs and "is back after" in logs
    finally:
        if "thread" in locals():
            thread.join()
        server.stop()


def test_an_outage_met_before_the_wait_polls_is_reported_and_waited_out_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``wait`` checks each id before it polls and reads each record after: Redis stopped
    at those moments is an outage like any other (a sweep whose launcher was still at its
    first check failed at once with no outage reported, on a loaded machine)."""
    import logging

    from backtest.config import QueueConfig
    from backtest.errors import QueueUnavailable
    from backtest.queue import BacktestJobQueue
    from tests.quick_workers import sma_jobs
    from tests.test_worker import _base_config

    server = PersistentRedis(tmp_path)
    server.start()
    job = sma_jobs(_base_config(), 1, "backtest.strategies.SmaCross", tmp_path / "out")[0]
    caplog.set_level(logging.WARNING, logger="backtest.queue")
    try:
        with BacktestJobQueue(QueueConfig(redis_url=server.url, name="outage-check")) as q:
            (job_id,) = q.submit_many([job])
            q.cancel(job_id)  # done: the wait returns as soon as it can read it
            server.stop()  # before wait() runs its first check

            def back() -> None:
                time.sleep(1.5)
                server.start()

            thread = threading.Thread(target=back)
            thread.start()
            final = q.wait([job_id], timeout=120, progress=False, outage_s=60)
            thread.join()
            assert final[job_id].status == "cancelled"
            said = caplog.text
            assert said.index("is unreachable") < said.index("is back after")

            caplog.clear()
            server.stop()  # and now for good: reported, waited out, then raised
            with pytest.raises(QueueUnavailable):
                q.wait([job_id], timeout=120, progress=False, outage_s=1)
            assert "waiting up to 1 s" in caplog.text
    finally:
        if "thread" in locals():
            thread.join()
        server.stop()
