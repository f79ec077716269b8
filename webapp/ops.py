"""Running the server: health and readiness, Prometheus metrics, request logs, rate limits.

    GET /healthz   200 "ok" while the process answers
    GET /readyz    200 when the model is ready, else 503 with the state and the reason
    GET /metrics   Prometheus text: requests by endpoint and outcome, latency, queue depth,
                   model state, active adapter

Every named endpoint is timed and counted in one place (`Telemetry.instrument`, after the
page is built) and logs one line per call with a request id: as JSON with
`log_format: json` (or SIGNLENS_LOG_FORMAT=json). Only names and numbers are logged,
never a token, a file's contents or a server path.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import logging
import time
import uuid
from typing import Any, Callable

import gradio as gr
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from engine import Engine
from webapp.status import public_text

log = logging.getLogger("signlens.requests")
# The id of the request being handled, for every log line written while handling it.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
STATES = ("idle", "loading", "ready", "failed", "closed")


class Telemetry:
    """Counters and timings of one app, in a registry of its own (several apps can share a process)."""

    def __init__(self, engine: Engine, blocks: gr.Blocks) -> None:
        self.engine, self.blocks = engine, blocks
        self.registry = CollectorRegistry()
        self.requests = Counter("signlens_requests", "Calls by endpoint and outcome (ok, refused, error).",
                                ["endpoint", "outcome"], registry=self.registry)
        self.seconds = Histogram("signlens_request_seconds", "Time to answer a call, by endpoint.", ["endpoint"],
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
                                 registry=self.registry)
        self.queue = Gauge("signlens_queue_depth", "Events waiting in Gradio's queue.", registry=self.registry)
        self.queue.set_function(self._queue_depth)
        self.state = Gauge("signlens_model_state", "1 for the model's current state.", ["state"], registry=self.registry)
        self.adapter = Gauge("signlens_adapter_active", "1 while a LoRA adapter is active, labelled with its name.",
                             ["adapter"], registry=self.registry)

    def instrument(self) -> None:
        """Time, count and log every named endpoint of the app (plain functions; streams too)."""
        for block_fn in self.blocks.fns.values():
            fn = block_fn.fn
            if fn is None or not isinstance(block_fn.api_name, str) or inspect.iscoroutinefunction(fn) \
                    or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
                continue
            block_fn.fn = self._observed(fn, block_fn.api_name)

    def _observed(self, fn: Callable, endpoint: str) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = request_id.set(uuid.uuid4().hex[:12])
            started, outcome = time.perf_counter(), "ok"
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                outcome = "refused"  # the user's input, a role, a rate limit: one sentence was shown
                raise
            except BaseException:
                outcome = "error"
                raise
            finally:
                seconds = time.perf_counter() - started
                self.requests.labels(endpoint, outcome).inc()
                self.seconds.labels(endpoint).observe(seconds)
                if endpoint not in QUIET:
                    log.info("request", extra={"endpoint": endpoint, "outcome": outcome, "ms": round(seconds * 1000, 1)})
                request_id.reset(token)

        return wrapper

    def metrics(self) -> bytes:
        status = self.engine.status()
        for state in STATES:
            self.state.labels(state).set(1.0 if status.state == state else 0.0)
        self.adapter.clear()
        if status.adapter:
            self.adapter.labels(public_text(status.adapter)).set(1.0)
        return generate_latest(self.registry)

    def _queue_depth(self) -> float:
        # Gradio keeps no public count of waiting events; read its queue's lists, and say 0
        # rather than fail the scrape if a Gradio release renames them.
        queue = getattr(self.blocks, "_queue", None)
        waiting = getattr(queue, "event_queue_per_concurrency_id", {}) or {}
        return float(sum(len(getattr(q, "queue", ())) for q in waiting.values()))


# Polled every second or two by every open page: counted, not logged.
QUIET = {"status", "status_load", "curate_job_status", "finetune_status"}


def add_routes(blocks: gr.Blocks, engine: Engine, telemetry: Telemetry) -> None:
    """/healthz, /readyz and /metrics on the launched app's server (no login in front of them)."""
    from fastapi.responses import JSONResponse, PlainTextResponse, Response

    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    def readyz() -> JSONResponse:
        status = engine.status()
        body = {"state": status.state, "detail": public_text(status.detail)}
        return JSONResponse(body, status_code=200 if status.state == "ready" else 503)

    def metrics() -> Response:
        return Response(telemetry.metrics(), media_type=CONTENT_TYPE_LATEST)

    for path, endpoint in (("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics)):
        blocks.server_app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)


def too_large(max_mb: float) -> str:
    return f"That file is larger than the {max_mb:g} MB this server accepts."


def plain_413(blocks: gr.Blocks, max_mb: float) -> None:
    """Gradio answers a too-large upload with its limit in bytes; say it in MB, as a sentence.

    Wraps the launched server's ASGI stack: only a 413 from an upload route is rewritten.
    """
    inner = blocks.server_app.middleware_stack
    body = json.dumps({"detail": too_large(max_mb)}).encode()

    async def app(scope, receive, send):
        if scope["type"] != "http" or not scope["path"].endswith("/upload"):
            return await inner(scope, receive, send)
        replaced = False

        async def reply(message):
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                replaced = True
                headers = [(k, v) for k, v in message["headers"] if k.lower() != b"content-length"]
                await send({**message, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
            elif not replaced:
                await send(message)

        await inner(scope, receive, reply)

    blocks.server_app.middleware_stack = app


def throttle_logins(blocks: gr.Blocks, spec: str) -> None:
    """Refuse login attempts over `spec` per client address with 429 and one sentence.

    Gradio's /login has no limit of its own; each attempt checks a scrypt hash (~50 ms
    of CPU), so without one a script could guess passwords, and hog a core, as fast as
    it likes. Counted per address (nobody is logged in yet), before the form is read.
    """
    limit = RateLimit(spec)
    inner = blocks.server_app.middleware_stack

    async def app(scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            return await inner(scope, receive, send)
        client = scope.get("client") or ("-",)
        refusal = limit.refusal(f"ip:{client[0]}", what="login attempts")
        if refusal is None:
            return await inner(scope, receive, send)
        await send_sentence(send, 429, refusal)

    blocks.server_app.middleware_stack = app


async def send_sentence(send, status: int, sentence: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Answer an ASGI request with `{"detail": sentence}`, as FastAPI's own errors read."""
    payload = json.dumps({"detail": sentence}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})


class RateLimit:
    """Per-client limits on the recognition endpoints (the `limits` library, moving window, in memory)."""

    def __init__(self, spec: str) -> None:
        from limits import parse_many
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.items = parse_many(spec) if spec else []
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, request: gr.Request | None, cost: int = 1) -> None:
        """Count `cost` calls (one per clip) of this client; refuse with a sentence saying when to retry."""
        refusal = self.refusal(client_key(request), cost)
        if refusal:
            raise gr.Error(refusal, print_exception=False)

    def refusal(self, client: str, cost: int = 1, what: str = "requests") -> str | None:
        """Count `cost` against `client`; the sentence to refuse with when over a limit, else None.

        For callers outside a Gradio event too (the upload route, `webapp/cache.py`).
        """
        for item in self.items:
            if not self.limiter.hit(item, client, cost=max(1, cost)):
                wait = max(1, round(self.limiter.get_window_stats(item, client).reset_time - time.time()))
                return f"Too many {what} from you ({item}): try again in {wait} s."
        return None


def client_key(request: gr.Request | None) -> str:
    """Who is calling: the login name, else the client's address."""
    if request is None:
        return "-"
    if getattr(request, "username", None):
        return f"user:{request.username}"
    client = getattr(request, "client", None)
    return f"ip:{getattr(client, 'host', '-')}"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being handled when it was logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and the record's fields."""

    FIELDS = ("endpoint", "outcome", "ms")

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage(),
                 "request_id": getattr(record, "request_id", "-")}
        entry.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={getattr(record, k)}" for k in JsonFormatter.FIELDS if hasattr(record, k))
        rid = getattr(record, "request_id", "-")
        return " ".join(part for part in (line, fields, f"request_id={rid}" if rid != "-" else "") if part)


def log_handler(log_format: str, stream=None) -> logging.Handler:
    """A handler writing text or JSON lines, each with the request id it was logged under."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def configure_logging(log_format: str) -> None:
    """Where `python app.py` starts: one handler on the root logger, text or JSON."""
    handler = log_handler(log_format)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
