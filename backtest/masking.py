"""Secrets are never written down: one masking rule for URLs, config keys and text.

A password or token appears in a URL's user info (``redis://:PASSWORD@host``,
``postgresql://user:PASSWORD@db/optuna``, ``https://TOKEN@host``; a user name alone, as
in ``postgresql://user@db/optuna``, is kept), in a ``password=`` query argument, or as the
value of a config key ending in ``password``, ``token`` or ``secret``. Everything this
package stores (job records, ``config.yaml``, ``result.json``, Redis payloads, MLflow
params, tags and artifacts, log lines) goes through :func:`mask_config` or
:func:`mask_text` first, so the secret shows as ``***``.

The process that needs the real value to connect gets it from its own environment
(``REDIS_URL``, ``MLFLOW_TRACKING_URI``, ...) or from what it was given on its own
command line in this process: :func:`reveal` maps a masked URL back to the real one
from those two places only.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

MASK = "***"
SECRET_SUFFIXES = ("password", "token", "secret")
# Environment variables a worker or a tracking client reads its connection URLs from.
URL_VARIABLES = ("REDIS_URL", "MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "BACKTEST_STUDY_STORAGE")
# Local worker processes started by this one inherit the URLs it was given through this
# variable (an environment is private to the user; a command line is not).
KNOWN_URLS_VARIABLE = "BACKTEST_KNOWN_URLS"

# Also Hydra's escaped form of an override, ``http\\://user\\:pw@host``.
_URL_IN_TEXT = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*\\?://)(?P<user>[^\s/@:]*?)(?P<sep>\\?:)(?P<pw>[^\s/@]+)@"
)
# A token as the whole user info of an http(s) URL: https://TOKEN@host (see _TOKEN_SCHEMES).
_TOKEN_IN_TEXT = re.compile(r"(?P<scheme>\bhttps?\\?://)(?P<token>[^\s/@:]+)@", re.IGNORECASE)
_QUERY_SECRET = re.compile(r"(?P<key>(?:password|token|secret)=)(?P<value>[^&\s#]+)", re.IGNORECASE)
_FACTORY_INSTALLED = False
_KNOWN: dict[str, str] = {}  # masked URL -> real URL, for URLs given to this process


# Schemes whose user info without a password is a token by convention (https://TOKEN@host);
# elsewhere (postgresql://, mysql://, redis://, ...) it is a user name, which is no secret.
_TOKEN_SCHEMES = ("http", "https")


def mask_url(url: str) -> str:
    """``url`` with its password (or token) replaced by ``***`` (safe to print and log).

    Only secrets are masked, never a user name: ``postgresql://optuna@db/optuna`` is
    written as it is, so whoever reads it back (a worker) connects as that user.

    >>> mask_url("redis://:s3cret@db.internal:6379/0")
    'redis://:***@db.internal:6379/0'
    >>> mask_url("redis://user:pw@host/1")
    'redis://user:***@host/1'
    >>> mask_url("unix:///tmp/redis.sock?db=0&password=pw")
    'unix:///tmp/redis.sock?db=0&password=***'
    >>> mask_url("postgresql://optuna:pw@db/optuna")
    'postgresql://optuna:***@db/optuna'
    >>> mask_url("postgresql://optuna@db/optuna")
    'postgresql://optuna@db/optuna'
    >>> mask_url("https://ghp_t0ken@tracking.example")
    'https://***@tracking.example'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
        elif parts.scheme.lower().split("+")[0] in _TOKEN_SCHEMES:
            netloc = f"{MASK}@{host}"
    query = _QUERY_SECRET.sub(lambda m: m["key"] + MASK, parts.query)
    out = f"{parts.scheme}://{netloc}{parts.path}"
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def mask_text(text: str) -> str:
    """Every URL password and ``password=``/``token=``/``secret=`` value in ``text`` masked.

    >>> mask_text("cannot reach redis://:pw@host:6379/0 (timeout); url=x?token=abc")
    'cannot reach redis://:***@host:6379/0 (timeout); url=x?token=***'
    """
    text = _URL_IN_TEXT.sub(lambda m: f"{m['scheme']}{m['user']}{m['sep']}{MASK}@", text)
    text = _TOKEN_IN_TEXT.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: m["key"] + MASK, text)


def is_secret_key(key: object) -> bool:
    """Whether a config key holds a secret (its name ends in password, token or secret).

    >>> [is_secret_key(k) for k in ("password", "api_token", "client_secret", "redis_url")]
    [True, True, True, False]
    """
    return str(key).lower().endswith(SECRET_SUFFIXES)


def mask_config(value: Any) -> Any:
    """A copy of a plain config (dicts, lists, scalars) with every secret masked.

    Values of keys ending in ``password``/``token``/``secret`` become ``***``; passwords
    in URL strings anywhere become ``***``. Other values are returned as they are.

    >>> mask_config({"queue": {"redis_url": "redis://:pw@h/0"}, "db": {"password": "x"}})
    {'queue': {'redis_url': 'redis://:***@h/0'}, 'db': {'password': '***'}}
    """
    if isinstance(value, Mapping):
        return {
            k: (MASK if is_secret_key(k) and v not in (None, "") else mask_config(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(mask_config(v) for v in value)
    if isinstance(value, str) and ("@" in value or "=" in value):
        return mask_text(value)
    return value


def remember(*urls: str | None) -> None:
    """Note URLs given to this process, so :func:`reveal` can map their masked form back."""
    for url in urls:
        if url and MASK not in url:
            masked = mask_url(url) if "://" in url else url
            if masked != url:
                _KNOWN[masked] = url


def remember_config(config: Any) -> None:
    """:func:`remember` every URL string inside a plain config."""
    if isinstance(config, Mapping):
        for value in config.values():
            remember_config(value)
    elif isinstance(config, list | tuple):
        for value in config:
            remember_config(value)
    elif isinstance(config, str) and "://" in config and "@" in config:
        remember(config)


def known_urls_env() -> dict[str, str]:
    """Environment for local worker processes: the URLs this process was given."""
    inherited = [u for u in os.environ.get(KNOWN_URLS_VARIABLE, "").split("\n") if u]
    urls = list(dict.fromkeys([*inherited, *_KNOWN.values()]))
    return {KNOWN_URLS_VARIABLE: "\n".join(urls)} if urls else {}


def reveal(value: str | None, variables: Iterable[str] = URL_VARIABLES) -> str | None:
    """The real URL behind a masked one, from this process's own knowledge only.

    Looks at the URLs this process was given (:func:`remember`) and at the environment
    variables ``variables``; a URL without ``***`` is returned as it is, and a masked URL
    nobody here knows is returned masked (connecting with it fails and names it).

    >>> reveal("sqlite:///x.db")
    'sqlite:///x.db'
    """
    if not value or MASK not in value:
        return value
    if value in _KNOWN:
        return _KNOWN[value]
    inherited = os.environ.get(KNOWN_URLS_VARIABLE, "")
    for real in filter(None, inherited.split("\n")):
        if mask_url(real) == value:
            return real
    for name in variables:
        candidate = os.environ.get(name)
        if candidate and mask_url(candidate) == value:
            return candidate
    return value


class MaskingFilter(logging.Filter):
    """A logging filter that masks secrets in every record's message (and traceback text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with :func:`mask_text`; never drops a record."""
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            trace = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            masked_trace = mask_text(trace)
            if masked_trace != trace:
                # The traceback moves into the message: every formatter shows it there
                # (structlog's ignores ``exc_text``), and the raw one is dropped.
                record.msg, record.args = f"{record.getMessage()}\n{masked_trace}", None
                record.exc_info, record.exc_text = None, None
        return True


def mask_logs() -> None:
    """Mask secrets in every log record of this process, whichever handler writes it.

    Installs a record factory (once), so records are masked when they are made, before
    any handler (Hydra's console and file handlers, rq's, ours) formats them.
    """
    global _FACTORY_INSTALLED
    if _FACTORY_INSTALLED:
        return
    previous = logging.getLogRecordFactory()
    masking = MaskingFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        masking.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _FACTORY_INSTALLED = True


def mask_files(paths: Iterable[os.PathLike[str] | str]) -> None:
    """Rewrite text files (Hydra's ``.hydra/*.yaml``, logs) with every secret masked."""
    from pathlib import Path

    for path in map(Path, paths):
        if path.is_file():
            text = path.read_text(errors="replace")
            masked = mask_text(text)
            if masked != text:
                path.write_text(masked)
