"""Small record processors with structlog's signature ``(logger, method_name, event_dict)``.

A step without settings is a function; a step with settings is a class whose
``__init__`` keeps them and whose ``__call__`` does the work. They are used by the
metrics writer and, unchanged, in a structlog chain (see ``bridges.py``).
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from .interfaces import EventDict, WrappedLogger
from .schema import FIELD_HOST, FIELD_PID, FIELD_TIMESTAMP, MAX_NESTING, TRUSTED_FIELDS

__all__ = [
    "DEFAULT_SECRET_PATTERNS",
    "DropRecord",
    "Redactor",
    "add_process_info",
    "add_timestamp",
]

REDACTED: Final = "[REDACTED]"

DEFAULT_SECRET_PATTERNS: Final = (
    r"sk-(?:proj-|ant-(?:api\d+-)?)?[A-Za-z0-9_\-]{20,}",  # OpenAI / Anthropic keys
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{16,}",  # HTTP bearer tokens
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",  # AWS access key ids
    r"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}",  # GitHub tokens
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack tokens
    r"AIza[0-9A-Za-z_\-]{35}",  # Google API keys
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face tokens
    r"[rs]k_(?:live|test)_[A-Za-z0-9]{20,}",  # Stripe keys
    r"eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",  # JWTs
    r"(?i:api[_-]?key|access[_-]?token|password|passwd|secret)=[^\s&\"',;]{4,}",  # key=value in URLs, DSNs
    r"(?<=://)[^/\s:@]{0,256}:[^/\n@]{1,256}(?=@)",  # user:password@ in URLs and DSNs
)
_CACHE_LIMIT: Final = 4096
_CACHEABLE_LENGTH: Final = 256


class DropRecord(BaseException):
    """Raise from a processor to drop the record on purpose (not counted as a fault)."""


def add_timestamp(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Put ``timestamp`` (epoch seconds, float) first, as every line of the family has it."""
    if next(iter(event_dict), None) == FIELD_TIMESTAMP:
        return event_dict
    stamp = event_dict.pop(FIELD_TIMESTAMP, None)
    if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
        stamp = time.time()
    return {FIELD_TIMESTAMP: stamp, **event_dict}


class _ProcessInfo:
    """pid and host, read once per process (refreshed after ``fork``)."""

    pid = os.getpid()
    host = socket.gethostname()

    @classmethod
    def refresh(cls) -> None:
        cls.pid = os.getpid()


os.register_at_fork(after_in_child=_ProcessInfo.refresh)


def process_info() -> tuple[int, str]:
    """The ``(pid, host)`` the writer stamps on records, current after a fork."""
    return _ProcessInfo.pid, _ProcessInfo.host


def add_process_info(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Add ``pid`` and ``host`` so lines from gunicorn workers or several hosts stay apart."""
    event_dict.setdefault(FIELD_PID, _ProcessInfo.pid)
    event_dict.setdefault(FIELD_HOST, _ProcessInfo.host)
    return event_dict


class Redactor:
    """Replace secrets before they reach the disk.

    A key is secret when, lower-cased with ``-`` read as ``_``, it equals one of
    ``keys`` or ends with ``_<key>``: ``api_key``, ``OPENAI_API_KEY``, ``x-api-key``,
    ``Authorization``, ``access_token`` are; ``prompt_tokens`` and ``max_tokens`` are
    not. With ``values=True`` strings are also searched for shapes of well-known
    credentials (``sk-...``, ``Bearer ...``, AWS/GitHub/Slack/Google keys, JWTs,
    ``password=...``) and only the matching part is replaced. Nested dicts and lists
    are searched too (32 levels deep; deeper values are written as ``"<max depth>"``).

    ``trusted`` keys hold values the library itself writes (``timestamp``,
    ``module``, ``host``...) and are not examined. Which keys of a record need a
    look is worked out once per record shape, and short values already found clean
    are remembered, so the common record (the same model names again and again)
    costs a few look-ups. Both caches are bounded (4096 entries each).

    Example::

        redact = Redactor(keys=["api_key", "password"])
        redact(None, "info", {"api_key": "x", "note": "Bearer abcdefghijklmnopqrstu"})
        # {'api_key': '[REDACTED]', 'note': '[REDACTED]'}
    """

    def __init__(
        self,
        keys: Iterable[str] = ("api_key", "authorization", "password", "token", "secret"),
        *,
        values: bool = True,
        patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS,
        replacement: str = REDACTED,
        trusted: Iterable[str] = TRUSTED_FIELDS,
    ) -> None:
        self._keys = frozenset(k.lower().replace("-", "_") for k in keys)
        self._suffixes = tuple("_" + k for k in self._keys)
        joined = "|".join(f"(?:{p})" for p in patterns)
        self._pattern = re.compile(joined) if values and joined else None
        self._replacement = replacement
        self._trusted = frozenset(trusted) - self._keys
        self._plans: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._clean_values: set[str] = set()
        self.scrub_text = self._make_scrub()

    def is_secret_key(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        norm = key.lower().replace("-", "_")
        return norm in self._keys or norm.endswith(self._suffixes)

    def _make_scrub(self) -> Callable[[Any], Any]:
        """``scrub_text``: a closure, because it runs for every string argument of every record."""
        clean = self._clean_values
        slow = self._scrub_slow

        def scrub_text(value: Any) -> Any:
            """``value`` with every credential-shaped part replaced (non-strings pass through)."""
            try:
                if value in clean:
                    return value
            except TypeError:  # unhashable: a list or dict passed where a string was expected
                return self._scrub_nested(value, 0)
            return slow(value)

        return scrub_text

    def _scrub_slow(self, value: Any) -> Any:
        if not isinstance(value, str):
            return self._scrub_nested(value, 0) if isinstance(value, (dict, list, tuple)) else value
        if self._pattern is None:
            return value
        scrubbed = self._pattern.sub(self._replacement, value)
        if scrubbed is value or scrubbed == value:
            if len(value) <= _CACHEABLE_LENGTH:
                if len(self._clean_values) >= _CACHE_LIMIT:
                    self._clean_values.clear()
                self._clean_values.add(value)
            return value
        return scrubbed

    def __call__(self, _logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        plan = self._plans.get(tuple(event_dict))
        if plan is None:
            plan = self._plan(event_dict)
        secret_keys, scan_keys = plan
        for key in secret_keys:
            event_dict[key] = self._replacement
        clean = self._clean_values
        for key in scan_keys:
            value = event_dict[key]
            kind = value.__class__
            if kind is str:
                if value not in clean:
                    event_dict[key] = self.scrub_text(value)
            elif kind is dict or kind is list or kind is tuple:
                event_dict[key] = self._scrub_nested(value, 0)
        return event_dict

    def _plan(self, event_dict: EventDict) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Which keys of this record shape are secret and which values need a look.

        Records of one kind have the same keys in the same order, so the answer is
        remembered per shape (at most 4096 shapes) and a record costs one look-up.
        """
        secret = tuple(k for k in event_dict if self.is_secret_key(k))
        scan = tuple(k for k in event_dict if k not in self._trusted and k not in secret)
        if len(self._plans) >= _CACHE_LIMIT:
            self._plans.clear()
        plan = (secret, scan)
        self._plans[tuple(event_dict)] = plan
        return plan

    def _scrub_nested(self, value: Any, depth: int, path: tuple[int, ...] = ()) -> Any:
        if isinstance(value, (dict, list, tuple)):
            if depth >= MAX_NESTING:  # never pass deeper values on unexamined
                return "<max depth>"
            if id(value) in path:
                return "<cycle>"
            path = (*path, id(value))
            if isinstance(value, dict):
                return {
                    key: self._replacement if self.is_secret_key(key) else self._scrub_nested(item, depth + 1, path)
                    for key, item in value.items()
                }
            return [self._scrub_nested(item, depth + 1, path) for item in value]
        if isinstance(value, str):
            return self.scrub_text(value)
        return value
