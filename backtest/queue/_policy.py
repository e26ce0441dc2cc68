"""What a queued job may make a worker do: a payload is data, never a capability.

Anyone who can write to the queue's Redis can queue a job. A worker runs every job
under the :class:`WorkerPolicy` it was started with, checked before anything runs:

- **No interpolation.** A payload holding ``${...}`` anywhere (a value or a key) is
  refused with :class:`PayloadRefused`, naming the key only: the worker never resolves
  ``${oc.env:...}`` or any other resolver, so its environment cannot be read through a
  payload. The writer resolves its own config before sending
  (:meth:`~backtest.tasks._jobs.BacktestJob.from_config` does).
- **Data** is read only under the worker's data roots (``--data-root``; its working
  directory by default), symlinks followed before the check; an error about a file,
  inside the roots or not, never quotes what it holds (:mod:`backtest.data._files`).
- **Output** goes only under the worker's output roots (``--output-root``; its working
  directory by default): a run directory with ``..`` or outside them is refused, so is
  a ``name`` that is not a plain folder name. An existing folder is written into only
  when it is a run folder of the same job (its :data:`RUN_MARKER` names the job, or its
  ``result.json`` does); the worker marks the folders it creates.
- **Tracking** goes only to the worker's own store: the job's ``tracking.uri`` is
  ignored (set to ``""``, which means ``MLFLOW_TRACKING_URI`` of the worker, else
  ``sqlite:///outputs/mlflow.db`` in its working directory), so the worker's tracking
  credentials (``MLFLOW_TRACKING_TOKEN``, ...) never go to a host a payload names.
- **Study storage** of a distributed search is the worker's own (``--storage`` /
  ``BACKTEST_STUDY_STORAGE``, else its queue's Redis): a study payload naming another
  store is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from backtest.errors import BacktestError
from backtest.tasks._jobs import BacktestJob

#: A file in a run folder naming the job it belongs to (written by the worker, or by the
#: rq launcher when it makes a sweep job's folder).
RUN_MARKER = ".job"
_RESULT_FILE = "result.json"  # backtest.results.RESULT_FILE (not imported: results is above)


class PayloadRefused(BacktestError, PermissionError):
    """A queued job asked a worker for something its policy does not allow; nothing ran.

    Attributes:
        key: The payload key at fault (``data.path``, ``name``, ``output_dir``, ...).
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class WorkerPolicy:
    """The limits a worker puts on the jobs it runs (fixed when it starts).

    Attributes:
        data_roots: Folders price files may be read from (resolved).
        output_roots: Folders run directories may be created in (resolved).
        study_storage: The study storage URL of distributed searches (real, never
            written down); ``None``: the worker's queue Redis.
        queue_url: The worker's queue Redis URL (real, never written down).
    """

    data_roots: tuple[Path, ...]
    output_roots: tuple[Path, ...]
    study_storage: str | None = None
    queue_url: str | None = None

    @classmethod
    def of(
        cls,
        data_roots: Iterable[str | os.PathLike[str]] = (),
        output_roots: Iterable[str | os.PathLike[str]] = (),
        *,
        study_storage: str | None = None,
        queue_url: str | None = None,
    ) -> WorkerPolicy:
        """A policy; roots default to the working directory, and are resolved now."""
        here = (Path.cwd().resolve(),)
        data = tuple(Path(r).expanduser().resolve() for r in data_roots) or here
        output = tuple(Path(r).expanduser().resolve() for r in output_roots) or here
        return cls(data, output, study_storage or None, queue_url or None)


_POLICY: WorkerPolicy | None = None  # set in worker processes (inherited by work horses)


def install(policy: WorkerPolicy | None) -> WorkerPolicy | None:
    """Make ``policy`` this process's (``None``: the default); returns the previous one."""
    global _POLICY
    previous, _POLICY = _POLICY, policy
    return previous


def current() -> WorkerPolicy:
    """The installed policy, else the default one (working directory roots)."""
    return _POLICY if _POLICY is not None else WorkerPolicy.of()


# --- interpolations ----------------------------------------------------------------------


def refuse_interpolations(value: Any, key: str = "") -> None:
    """Raise :class:`PayloadRefused` if ``${`` appears in any key or string of ``value``.

    The error names the key, never a value (there is nothing resolved to echo: nothing
    is resolved).
    """
    if isinstance(value, Mapping):
        for k, v in value.items():
            where = f"{key}.{k}" if key else str(k)
            if "${" in str(k):
                _interpolation(key or "(top level)")
            refuse_interpolations(v, where)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            refuse_interpolations(v, f"{key}[{i}]")
    elif isinstance(value, str) and "${" in value:
        _interpolation(key)


def _interpolation(key: str) -> None:
    shown = key
    for prefix in ("job.", "study.", "config."):  # job.config.data.n_bars -> data.n_bars
        shown = shown.removeprefix(prefix)
    raise PayloadRefused(
        f"job payload refused: {shown!r} holds an interpolation ('${{...}}'); a worker never "
        "resolves a payload's interpolations or resolvers. Resolve the config where it is "
        "written and submit the values (BacktestJob.from_config does so for a composed "
        "config; OmegaConf.to_container(cfg, resolve=True) for your own)",
        key=shown,
    )


# --- paths -------------------------------------------------------------------------------


def within(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path`` (resolved, symlinks followed) lies in one of ``roots``."""
    resolved = Path(os.path.abspath(path)).resolve()
    return any(resolved == root or resolved.is_relative_to(root) for root in roots)


def _has_parent_step(path: str) -> bool:
    return ".." in PurePath(path).parts or ".." in path.replace("\\", "/").split("/")


def check_name(name: object) -> None:
    """A run's ``name`` must be one plain folder name (it names ``outputs/<name>/``)."""
    text = str(name)
    if (
        not isinstance(name, str)
        or not text.strip()
        or text in (".", "..")
        or any(c in text for c in ("/", "\\", "\x00"))
    ):
        raise PayloadRefused(
            f"job payload refused: name {text!r} is not a plain folder name (no '/', '\\' "
            "or '..'); it names the run's folder under the worker's outputs/",
            key="name",
        )


def check_data_path(config: Mapping[str, Any], roots: Sequence[Path]) -> None:
    """Refuse a ``data.path`` outside ``roots`` (before anything looks at the file)."""
    data = config.get("data")
    path = data.get("path") if isinstance(data, Mapping) else None
    if path in (None, ""):
        return
    if not isinstance(path, str) or "\x00" in path or not within(Path(path), roots):
        raise PayloadRefused(
            f"job payload refused: data.path {str(path)!r} is outside the folders this worker "
            "reads data from; put the file under one of them, or start the worker with "
            "--data-root <its folder>",
            key="data.path",
        )


def run_dir_of(job: BacktestJob) -> Path:
    """The run directory ``job`` writes to (as :func:`~backtest.tasks.execute_job` picks it)."""
    return Path(job.result_path) if job.result_path else job.default_result_path()


def check_run_dir(job: BacktestJob, roots: Sequence[Path]) -> Path:
    """The job's run directory, if it lies under ``roots`` with no ``..``; else refuse."""
    for key, value in (
        ("result_path", job.result_path),
        ("output_dir", job.config.get("output_dir")),
    ):
        if value and (not isinstance(value, str) or _has_parent_step(value) or "\x00" in value):
            raise PayloadRefused(
                f"job payload refused: {key} {str(value)!r} steps out with '..'; give the "
                "run directory as a path under the worker's output folder",
                key=key,
            )
    run_dir = run_dir_of(job)
    if not within(run_dir, roots):
        raise PayloadRefused(
            f"job payload refused: run directory {str(run_dir)!r} is outside the folders "
            "this worker writes results to; submit from a folder under it (a shared disk "
            "mounted at the same path), or start the worker with --output-root <folder>",
            key="result_path" if job.result_path else "output_dir",
        )
    return run_dir


def _owner(run_dir: Path) -> str | None:
    """The job id a run folder belongs to (its marker, else its result), else ``None``."""
    marker = run_dir / RUN_MARKER
    if marker.is_file() and not marker.is_symlink():
        return marker.read_text().strip()
    result = run_dir / _RESULT_FILE
    if result.is_file() and not result.is_symlink():
        try:
            record = json.loads(result.read_text())
        except (OSError, ValueError):
            return ""
        return str(record.get("job_id", "")) if isinstance(record, dict) else ""
    return None


def claim_run_dir(run_dir: Path, job_id: str) -> None:
    """Make ``run_dir`` this job's run folder, or refuse one that belongs to something else.

    A missing or empty folder is created and marked (``.job`` holding the job id, made
    with ``O_EXCL``); a folder already marked for this job, or holding this job's
    ``result.json``, is this job's (a retry, a finished run). Anything else, a folder
    of another job or any other non-empty folder, is refused and left untouched.

    Raises:
        PayloadRefused: the folder is not this job's.
    """
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        _foreign(run_dir, job_id, "it is not a plain folder")
    if run_dir.is_dir():
        owner = _owner(run_dir)
        if owner == job_id:
            return
        if owner is not None:
            _foreign(run_dir, job_id, "it holds another job's run")
        if any(run_dir.iterdir()):
            _foreign(run_dir, job_id, "it is not empty and is no run folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(run_dir / RUN_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if _owner(run_dir) != job_id:  # another job claimed it a moment ago
            _foreign(run_dir, job_id, "it holds another job's run")
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(job_id + "\n")


def mark_run_dir(run_dir: Path, job_id: str) -> None:
    """Mark a run folder the writer made for ``job_id`` (the rq launcher's sweep folders)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_MARKER).write_text(job_id + "\n")


def owned_run_dir(job: BacktestJob | None) -> Path | None:
    """``job``'s run folder if it is marked as the job's (safe to clean up), else ``None``."""
    if job is None:
        return None
    try:
        run_dir = run_dir_of(job)
        marker = run_dir / RUN_MARKER
        if marker.is_file() and not marker.is_symlink():
            return run_dir if marker.read_text().strip() == job.job_id else None
    except (OSError, ValueError):
        return None
    return None


def _foreign(run_dir: Path, job_id: str, why: str) -> None:
    raise PayloadRefused(
        f"job payload refused: run directory {str(run_dir)!r} is not a run folder of job "
        f"{job_id!r} ({why}); nothing was written into it. Choose a new folder",
        key="result_path",
    )


# --- a job, admitted ---------------------------------------------------------------------


def admit_job(job: BacktestJob, policy: WorkerPolicy) -> tuple[BacktestJob, Path]:
    """The job as this worker runs it, and its run directory (claimed); or refuse it.

    Checks ``name``, ``data.path`` and the run directory against ``policy``, claims the
    run directory (:func:`claim_run_dir`) and sets ``tracking.uri`` to ``""`` (the
    worker's own store).

    Raises:
        PayloadRefused: what the job asks is outside the policy (names the key).
    """
    check_name(job.config.get("name", "backtest"))
    check_data_path(job.config, policy.data_roots)
    run_dir = check_run_dir(job, policy.output_roots)
    claim_run_dir(run_dir, job.job_id)
    tracking = job.config.get("tracking")
    if isinstance(tracking, Mapping) and tracking.get("uri"):
        config = {**job.config, "tracking": {**tracking, "uri": ""}}
        job = replace(job, config=config)
    return job, run_dir


# --- study storage -----------------------------------------------------------------------


def _identity(url: str) -> tuple[str, ...]:
    """A storage URL without its password (nor secret query values): what it names."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0] if "@" in parts.netloc else ""
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().endswith(("password", "token", "secret"))
    )
    return (parts.scheme.split("+")[0], user, host.lower(), parts.path, repr(query))


def study_storage_url(named: str | None, policy: WorkerPolicy) -> str:
    """The real URL of the study storage a study payload names, if it is this worker's.

    The payload carries the storage with its password masked; this worker connects
    only to its own stores (``--storage`` / ``BACKTEST_STUDY_STORAGE``, and its queue
    Redis), with the credentials it holds.

    Raises:
        PayloadRefused: the payload names another store.
    """
    own = [u for u in (policy.study_storage, policy.queue_url) if u]
    for url in own:
        if named and _identity(named) == _identity(url):
            return url
    raise PayloadRefused(
        f"study payload refused: its storage {str(named)!r} is not this worker's study "
        "storage; start the worker with --storage <that URL> (or BACKTEST_STUDY_STORAGE "
        "in its environment, with the password if the store needs one)",
        key="storage",
    )


@contextmanager
def confined(policy: WorkerPolicy) -> Iterator[None]:
    """Price files are read only under ``policy.data_roots`` inside this block."""
    from backtest.data._reading import confine_reads

    previous = confine_reads(policy.data_roots)
    try:
        yield
    finally:
        confine_reads(previous)
