"""The encoder service's client: the ``Embedder`` used when ``STREAMREC_ENCODER_URL`` is set.

One ``aiohttp.ClientSession`` (a pooled connector) per client, created on
first use in the running event loop. Each attempt has a total timeout and a
shorter connect timeout.

What is retried (bounded attempts, exponential backoff with jitter, the
server's ``Retry-After`` honoured): connection errors, timeouts, 429, 502,
503 and 504 -- the answers of a service that is down, restarting, behind a
restarting proxy, or full. What is not: other 4xx (the request is wrong),
500 (the model failed on these texts), a malformed answer or a different
model than the one this client was built for (mixing vector spaces is never
right). A circuit breaker counts failed attempts and, once open, refuses
calls at once until a cool-down has passed and a probe succeeds.

Failures raise ``EncoderUnavailable`` (retriable) or ``EncoderError`` (not).
Callers named in ``wait_callers`` (the stream worker) never see
``EncoderUnavailable``: they wait with backoff until the service is back,
which back-pressures the stream instead of dropping its work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from encoders.breaker import CircuitBreaker
from encoders.metrics import CLIENT_ATTEMPTS, ENCODE_BATCH_SIZE, ENCODE_SECONDS
from encoders.settings import EncoderSettings
from encoders.text import Vectors
from encoders.wire import decode_vectors
from streamrec.errors import ConfigError, EncoderError, EncoderUnavailable

log = logging.getLogger(__name__)

RETRIABLE_STATUSES = frozenset({429, 502, 503, 504})
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The model a service serves and the limits of its requests."""

    name: str
    version: str
    dim: int
    device: str
    max_request_texts: int
    max_text_chars: int

    @classmethod
    def parse(cls, answer: dict[str, Any], url: str) -> ModelInfo:
        """Read ``GET /v1/model``; a malformed answer is a non-retriable error."""
        try:
            info = cls(
                name=str(answer["model"]),
                version=str(answer["version"]),
                dim=int(answer["dim"]),
                device=str(answer["device"]),
                max_request_texts=int(answer["max_request_texts"]),
                max_text_chars=int(answer["max_text_chars"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EncoderError("malformed model info from the encoder service", url=url) from exc
        if info.dim < 1 or info.max_request_texts < 1:
            raise EncoderError("impossible model info from the encoder service", url=url, dim=info.dim)
        return info


class _Retriable(Exception):
    """One attempt failed in a way a later attempt may not."""

    def __init__(self, outcome: str, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.retry_after_s = retry_after_s


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (the HTTP-date form is ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _detail(payload: bytes) -> str:
    try:
        body = json.loads(payload)
    except ValueError:
        return payload[:200].decode("utf-8", "replace")
    if isinstance(body, dict):
        return " ".join(str(body[key]) for key in ("error", "field", "detail") if key in body)
    return str(body)[:200]


class RemoteEncoder:
    """An ``Embedder`` backed by the encoder service over HTTP."""

    def __init__(
        self,
        settings: EncoderSettings,
        url: str | None = None,
        *,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = (url or settings.url).rstrip("/")
        if not self._url.startswith(("http://", "https://")):
            raise ConfigError("encoder URL must be http(s)://host:port", url=self._url)
        self._settings = settings
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_s, sock_connect=settings.connect_timeout_s)
        self._breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s, clock)
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Task[None] | None = None
        self._info: ModelInfo | None = None

    @classmethod
    async def open(cls, settings: EncoderSettings, url: str | None = None, **options: Any) -> RemoteEncoder:
        """A client whose service has answered with its model (waits up to ``startup_wait_s``)."""
        client = cls(settings, url, **options)
        try:
            await client._fetch_info()
        except BaseException:
            await client.aclose()
            raise
        return client

    @classmethod
    def connect(cls, settings: EncoderSettings, url: str | None = None) -> RemoteEncoder:
        """``open`` for synchronous start-up code, before the process's event loop runs.

        A private loop, not ``asyncio.run``: that would clear the current
        loop, which faust and mode expect to find afterwards.
        """
        loop = asyncio.new_event_loop()
        try:
            client = loop.run_until_complete(cls.open(settings, url))
            # The session belongs to this loop; the real one makes its own.
            loop.run_until_complete(client.aclose())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
        return client

    @property
    def info(self) -> ModelInfo:
        """The served model and the service's request limits."""
        if self._info is None:
            raise EncoderError("encoder client used before it reached the service", url=self._url)
        return self._info

    @property
    def dim(self) -> int:
        """Dimension of the vectors."""
        return self.info.dim

    @property
    def name(self) -> str:
        """Model name; stored with every vector."""
        return self.info.name

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker guarding the service."""
        return self._breaker

    async def encode(self, texts: Sequence[str], caller: str = "api") -> Vectors:
        """Embed texts on the service; long lists go in requests of the service's maximum size."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        started = time.perf_counter()
        step = self.info.max_request_texts
        wait = caller in self._settings.wait_callers
        parts = [await self._embed(texts[i : i + step], wait) for i in range(0, len(texts), step)]
        vectors = parts[0] if len(parts) == 1 else np.concatenate(parts)
        ENCODE_SECONDS.labels(caller).observe(time.perf_counter() - started)
        ENCODE_BATCH_SIZE.labels(caller).observe(len(texts))
        return vectors

    async def aclose(self) -> None:
        """Close the pooled connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def close(self) -> None:
        """Close the connections from synchronous code (on the running loop if there is one)."""
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        try:
            self._closing = asyncio.get_running_loop().create_task(session.close())
        except RuntimeError:
            loop = self._session_loop
            if loop is not None and not loop.is_closed():
                loop.run_until_complete(session.close())

    async def _embed(self, texts: Sequence[str], wait: bool) -> Vectors:
        body = {"texts": list(texts), "encoding": "base64"}
        answer = await (self._call_waiting(body) if wait else self._call(body))
        info = self.info
        if answer.get("model") != info.name or answer.get("dim") != info.dim:
            raise EncoderError(
                "encoder service now serves another model; its vectors would not match the stored ones",
                expected=f"{info.name}/{info.dim}",
                got=f"{answer.get('model')}/{answer.get('dim')}",
                url=self._url,
            )
        vectors = decode_vectors(answer.get("vectors"), len(texts), info.dim)
        if vectors is None:
            raise EncoderError("malformed vectors from the encoder service", url=self._url, texts=len(texts))
        return vectors

    async def _call_waiting(self, body: dict[str, Any]) -> dict[str, Any]:
        """``_call`` until the service answers; back-pressure for callers that must not lose work."""
        attempt = 0
        while True:
            try:
                return await self._call(body)
            except EncoderUnavailable as exc:
                delay = max(self._delay(attempt), self._breaker.retry_in_s())
                attempt += 1
                log.warning("encoder unavailable (wait %d), retrying in %.2fs: %s", attempt, delay, exc)
                await self._sleep(delay)

    async def _call(self, body: dict[str, Any]) -> dict[str, Any]:
        """One embed call: bounded attempts through the circuit breaker."""
        last: _Retriable | None = None
        for attempt in range(self._settings.attempts):
            if not self._breaker.allow():
                CLIENT_ATTEMPTS.labels("circuit_open").inc()
                raise EncoderUnavailable(
                    "encoder circuit is open", url=self._url, retry_in_s=round(self._breaker.retry_in_s(), 3)
                )
            try:
                answer = await self._attempt("POST", "/v1/embed", body)
            except _Retriable as exc:
                CLIENT_ATTEMPTS.labels(exc.outcome).inc()
                self._breaker.record_failure()
                last = exc
                if attempt + 1 < self._settings.attempts:
                    await self._sleep(self._delay(attempt, exc.retry_after_s))
                continue
            except EncoderError:
                self._breaker.record_success()  # it answered; the request was the problem
                raise
            except BaseException:
                self._breaker.release()
                raise
            CLIENT_ATTEMPTS.labels("ok").inc()
            self._breaker.record_success()
            return answer
        assert last is not None
        raise EncoderUnavailable(
            "encoder service unavailable", url=self._url, attempts=self._settings.attempts, last=last.detail
        )

    async def _attempt(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """One HTTP exchange: the decoded JSON answer, or ``_Retriable``, or ``EncoderError``."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._session_loop = asyncio.get_running_loop()
        try:
            async with self._session.request(method, self._url + path, json=body) as response:
                status = response.status
                retry_after = _retry_after_s(response.headers.get("Retry-After"))
                payload = await response.read()
        except TimeoutError as exc:
            raise _Retriable("timeout", f"no answer within {self._settings.timeout_s}s") from exc
        except aiohttp.InvalidURL as exc:
            raise ConfigError("invalid encoder URL", url=self._url) from exc
        except aiohttp.ClientError as exc:
            raise _Retriable("connection", f"{type(exc).__name__}: {exc}") from exc
        if status in RETRIABLE_STATUSES:
            raise _Retriable("unavailable", f"HTTP {status} {_detail(payload)}", retry_after)
        if status != 200:
            CLIENT_ATTEMPTS.labels("rejected" if status < 500 else "error").inc()
            raise EncoderError(
                "encoder service refused the request" if status < 500 else "encoder service failed",
                status=status,
                detail=_detail(payload),
                url=self._url,
            )
        try:
            answer = json.loads(payload)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            CLIENT_ATTEMPTS.labels("error").inc()
            raise EncoderError("encoder service answered something other than a JSON object", url=self._url)
        return answer

    async def _fetch_info(self) -> None:
        """Ask for the model until the service is ready or ``startup_wait_s`` has passed."""
        deadline = self._clock() + self._settings.startup_wait_s
        attempt = 0
        while True:
            try:
                answer = await self._attempt("GET", "/v1/model", None)
                break
            except _Retriable as exc:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise EncoderUnavailable(
                        "encoder service did not become ready",
                        url=self._url,
                        waited_s=self._settings.startup_wait_s,
                        last=exc.detail,
                    ) from None
                delay = min(remaining, self._delay(attempt, exc.retry_after_s))
                attempt += 1
                log.warning("waiting for the encoder service at %s (%s); next try in %.1fs", self._url, exc, delay)
                await self._sleep(delay)
        self._info = ModelInfo.parse(answer, self._url)
        log.info(
            "encoder service at %s serves %s (version %s, dim %d)", self._url, self.name, self._info.version, self.dim
        )

    def _delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds before the next attempt: the server's hint, or exponential backoff with jitter."""
        cap = self._settings.backoff_max_s
        if retry_after_s is not None:
            # A little jitter still, so clients told the same moment do not return together.
            return min(cap, retry_after_s) + self._rng.uniform(0, self._settings.backoff_base_s)
        ceiling = min(cap, self._settings.backoff_base_s * 2.0 ** min(attempt, 32))  # a long outage must not overflow
        # "Equal jitter": at least half the step, so waits still grow.
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)
