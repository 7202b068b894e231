"""Rate limiting, retries and secret-safe errors for the vendor sources.

- `TokenBucket`: at most `rate_per_s` calls per second on average, bursts up to `burst`.
- `Retry`: exponential backoff with full jitter on transient failures (429, 5xx, timeouts, connection errors,
  malformed or empty answers); `Retry-After` is honoured when the vendor sends it.
- `redact`: API keys never reach a log line or an exception message; every error a source raises passes
  through it, and exceptions are raised `from None` so a request URL with a key in it is not chained.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class SourceError(RuntimeError):
    """A source could not serve a symbol; the message names the source and symbol, never a key."""


class TransientError(SourceError):
    """Worth retrying: rate limited, server error, timeout, malformed or empty answer."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(TransientError):
    pass


class MalformedResponse(TransientError):
    pass


class EmptyData(TransientError):
    pass


class NotFound(SourceError):
    """The vendor does not know the symbol (or the key has no access to it): retrying will not help."""


class AuthError(SourceError):
    """The key is missing or rejected."""


_KEY_PARAMS = re.compile(r"(?i)((?:api_?key|apikey|token|access_key)=)[^&\s'\"]+")
_AUTH_HEADER = re.compile(
    r"(?i)((?:authorization|x-api-key)['\"]?\s*[:=]\s*['\"]?(?:token |bearer )?)[^'\"\s,}]+"
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with the given secrets and anything that looks like a key parameter or auth header masked."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    text = _KEY_PARAMS.sub(r"\1***", text)
    return _AUTH_HEADER.sub(r"\1***", text)


class TokenBucket:
    """Thread-safe token bucket; `clock` and `sleep` are injectable so tests run without waiting."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        self.rate, self.capacity = float(rate_per_s), max(int(burst), 1)
        self.clock, self.sleep = clock, sleep
        self.tokens = float(self.capacity)
        self.updated = clock()
        self.waited_s = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is free; returns the seconds waited."""
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            wait = 0.0
            if self.tokens < 1.0:
                wait = (1.0 - self.tokens) / self.rate
                self.sleep(wait)
                self.waited_s += wait
                self.tokens, self.updated = 1.0, max(self.clock(), now + wait)
            self.tokens -= 1.0
            return wait


def per_minute(calls_per_minute: float, burst: int = 1, **kw: Any) -> TokenBucket:
    return TokenBucket(calls_per_minute / 60.0, burst, **kw)


@dataclass
class Retry:
    """Exponential backoff with full jitter: attempt k waits uniform(0, min(max_delay, base * 2**k))."""

    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    jitter: bool = True
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False)
    slept_s: list[float] = field(default_factory=list, repr=False)

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        cap = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        d = self.rng.uniform(0, cap) if self.jitter else cap
        if retry_after_s is not None:
            d = max(d, min(retry_after_s, self.max_delay_s))
        return d

    def call(
        self, fn: Callable[[], T], what: str, on_retry: Callable[[SourceError], None] | None = None
    ) -> T:
        """Run `fn`, retrying TransientError; the last error is re-raised with the attempt count."""
        last: TransientError | None = None
        for attempt in range(self.max_attempts):
            try:
                return fn()
            except TransientError as e:
                last = e
                if attempt + 1 >= self.max_attempts:
                    break
                d = self.delay(attempt, e.retry_after_s)
                log.info("%s: %s; retry %d/%d in %.2f s", what, e, attempt + 1, self.max_attempts - 1, d)
                if on_retry:
                    on_retry(e)
                self.sleep(d)
                self.slept_s.append(d)
        assert last is not None
        raise type(last)(f"{last} (gave up after {self.max_attempts} attempts)") from None
