"""Job records: what to run, with its lifecycle (:func:`backtest.tasks.run_backtest` runs one).

A :class:`BacktestJob` is plain JSON: id, task, resolved config, status, timestamps,
attempts, result path and error. Its default id is derived from the task and the
hash of the resolved config, so the same experiment submitted twice is one job.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from backtest.errors import ConfigError
from backtest.masking import mask_config

JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
TASKS = ("backtest", "search", "walkforward", "montecarlo")
STATUSES = ("created", "queued", "started", "finished", "failed", "cancelled")
# Keys that say where or how a run is recorded, not what is computed.
_VOLATILE_KEYS = ("output_dir", "summary", "figures", "report", "tracking", "queue", "hydra")


def now_iso() -> str:
    """The current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def plain_config(cfg: Any) -> dict[str, Any]:
    """A resolved config as plain JSON-able dicts (enums as their names), secrets masked.

    Passwords in URLs and values of keys ending in ``password``/``token``/``secret``
    become ``***`` (:func:`backtest.masking.mask_config`): a job record, and everything
    written from it, never holds a secret.
    """
    if isinstance(cfg, Mapping) and not hasattr(cfg, "_metadata"):
        data: Any = json.loads(json.dumps(cfg, default=_default))
    else:
        from omegaconf import OmegaConf

        data = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
    data.pop("hydra", None)
    return mask_config(data)


def _default(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.name
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def config_hash(cfg: Mapping[str, Any]) -> str:
    """SHA-256 of what a config computes (data, strategy, engine, search, ..., seed).

    Keys that only say where results go (``output_dir``, ``tracking``, ``queue``) are
    left out, so moving a run or changing its tracking server keeps its identity.
    """
    payload = {k: v for k, v in plain_config(cfg).items() if k not in _VOLATILE_KEYS}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def infer_task(cfg: Mapping[str, Any]) -> str:
    """``walkforward`` if configured, else ``search`` if a method is set, else ``backtest``.

    A ``montecarlo`` section adds a Monte Carlo analysis to whichever result that is;
    a plain backtest with Monte Carlo is the ``montecarlo`` task.
    """
    if cfg.get("walkforward"):
        return "walkforward"
    search = cfg.get("search") or {}
    if str(search.get("method", "none")).split(".")[-1] not in ("none", "None"):
        return "search"
    if cfg.get("montecarlo"):
        return "montecarlo"
    return "backtest"


def check_job_id(job_id: str) -> str:
    """Return ``job_id`` if it uses only safe characters, else raise ``ConfigError``."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
        raise ConfigError(
            f"job id {job_id!r} is not valid: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit",
            key="job_id",
        )
    return job_id


@dataclass(frozen=True, slots=True)
class BacktestJob:
    """One unit of work: a task over a resolved config, with its lifecycle.

    Attributes:
        config: The resolved config (plain dicts; enums as names).
        task: ``backtest``, ``search``, ``walkforward`` or ``montecarlo``
            (inferred from the config when omitted).
        job_id: Safe characters only; by default ``<task>-<first 16 hex of config hash>``.
        status: ``created``, ``queued``, ``started``, ``finished``, ``failed`` or ``cancelled``.
        created_at: ISO time the record was made.
        started_at: ISO time the latest attempt started.
        ended_at: ISO time the job finished or failed.
        attempts: Attempts started so far.
        result_path: The run directory of the result.
        error: Why the job failed.
        attempt_errors: Why each earlier attempt failed (``"attempt 1: ..."``), also
            for a job that was retried and then finished.
    """

    config: dict[str, Any]
    task: str = ""
    job_id: str = ""
    status: str = "created"
    created_at: str = field(default_factory=now_iso)
    started_at: str | None = None
    ended_at: str | None = None
    attempts: int = 0
    result_path: str | None = None
    error: str | None = None
    attempt_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        config = plain_config(self.config)
        object.__setattr__(self, "config", config)
        task = self.task or infer_task(config)
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}; expected one of {TASKS}", key="task")
        object.__setattr__(self, "task", task)
        if not self.job_id:
            object.__setattr__(self, "job_id", f"{task}-{config_hash(config)[:16]}")
        check_job_id(self.job_id)
        if self.status not in STATUSES:
            raise ConfigError(f"unknown job status {self.status!r}", key="status")

    @classmethod
    def from_config(cls, cfg: Any, **kwargs: Any) -> BacktestJob:
        """A job for a composed ``DictConfig`` or a plain mapping."""
        return cls(config=plain_config(cfg), **kwargs)

    @property
    def config_hash(self) -> str:
        """SHA-256 of what this job computes."""
        return config_hash(self.config)

    def default_result_path(self) -> Path:
        """``<output_dir>`` when the config names one, else ``outputs/<name>/jobs/<job_id>``."""
        out = self.config.get("output_dir")
        if out:
            return Path(out)
        return Path("outputs") / str(self.config.get("name", "default")) / "jobs" / self.job_id

    def with_status(self, status: str, **changes: Any) -> BacktestJob:
        """A copy with a new status (and any other fields changed)."""
        return replace(self, status=status, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-able dicts."""
        return asdict(self)

    def to_json(self) -> str:
        """The record as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> BacktestJob:
        """Parse a record written by :meth:`to_json`.

        Raises:
            ConfigError: the text is not a job record; names the first missing/unknown field.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"job record is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BacktestJob:
        """Build a job from :meth:`to_dict` output, refusing unknown fields."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"job record has unknown field {unknown[0]!r}", key=unknown[0])
        if "config" not in data:
            raise ConfigError("job record has no 'config'", key="config")
        return cls(**dict(data))
