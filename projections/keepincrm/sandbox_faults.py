"""Faults on purpose: the sandbox failing the ways a busy CRM and network do.

A `FaultPlan` says how often each fault happens. `install_faults` puts it into a
sandbox app as a middleware around the handlers, after the token check, on the
API routes only. Every decision is drawn from one `random.Random(seed)`, so
the same plan faults the same requests when the requests come in the same order.

    server error         a 5xx answered before the handler: nothing is stored
    timeout after store  the handler runs (a new deal IS stored), then the answer
                         waits `hang_seconds`, longer than the client waits
    rate limited         every Nth request starts a burst of 429s, each with
                         Retry-After 0 or 1
    dropped connection   the connection closes with no answer; a write is dropped
                         before or after the handler stored it (a coin toss)

A timeout after store and a write dropped after storing are the uncertain
outcomes of C14: the client sent its request and cannot tell whether the CRM
acted on it. A plan may fault only some methods (`methods=("PATCH",)`).
`FaultInjector.enabled` switches all faults off and on while the app runs (a
test turns them off to check what the CRM holds), and `FaultInjector.counter`
says how many of each were injected.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Final, Literal

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Fault = Literal[
    "server_error", "timeout_after_store", "rate_limited", "dropped", "dropped_after"
]

# Faults apply under this path only: the routes the client calls.
_API_PREFIX: Final = "/v1/"
_SERVER_ERRORS: Final = (500, 502, 503, 504)
_WRITES: Final = frozenset({"POST", "PATCH", "PUT", "DELETE"})
# `FaultPlan.parse` keys, short enough for a command line.
_SPEC_KEYS: Final = {
    "seed": "seed",
    "5xx": "server_error_rate",
    "timeouts": "timeout_after_store_rate",
    "drops": "drop_connection_rate",
    "429_every": "rate_limit_every",
    "429_burst": "rate_limit_burst",
    "hang": "hang_seconds",
    "methods": "methods",
}

_LOG = structlog.get_logger("ocsync.keepincrm.sandbox")


@dataclass(frozen=True)
class FaultPlan:
    """How often the sandbox fails; rates are per request, from 0 to 1.

    `rate_limit_every` N > 0 makes every Nth request (counted while faults are
    on) start a burst of `rate_limit_burst` 429s. `hang_seconds` must be longer
    than the client's timeout (`crm.timeout`) for a hang to be a timeout.
    `methods` limits the faults to requests of those HTTP methods (empty: all),
    e.g. ("PATCH",) to fault corrections alone.
    """

    seed: int
    server_error_rate: float = 0.2
    timeout_after_store_rate: float = 0.05
    drop_connection_rate: float = 0.02
    rate_limit_every: int = 50
    rate_limit_burst: int = 3
    hang_seconds: float = 40.0
    methods: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        rates = (
            self.server_error_rate,
            self.timeout_after_store_rate,
            self.drop_connection_rate,
        )
        if any(not 0 <= rate <= 1 for rate in rates) or sum(rates) > 1:
            raise ValueError(
                f"fault plan: each rate must be from 0 to 1 and together at most 1,"
                f" got 5xx={rates[0]}, timeouts={rates[1]}, drops={rates[2]}"
            )
        if self.rate_limit_every < 0 or self.rate_limit_burst < 1:
            raise ValueError(
                "fault plan: 429_every must be 0 (never) or more, 429_burst at least 1"
            )
        if self.hang_seconds < 0:
            raise ValueError("fault plan: hang must be 0 seconds or more")

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """A plan from `seed=7,5xx=0.2,timeouts=0.05,drops=0.02,429_every=50,...`.

        Keys: seed (required), 5xx, timeouts, drops, 429_every, 429_burst, hang,
        methods (joined by `+`: `methods=POST+PATCH`); a key left out keeps its
        default.
        """
        types = {field.name: field.type for field in fields(cls)}
        values: dict[str, int | float | tuple[str, ...]] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, _, text = item.partition("=")
            name = _SPEC_KEYS.get(key.strip())
            if name is None:
                known = ", ".join(_SPEC_KEYS)
                raise ValueError(f"fault plan: unknown key {key!r} (known: {known})")
            if name == "methods":
                values[name] = tuple(m.strip().upper() for m in text.split("+"))
                continue
            convert = int if types[name] == "int" else float
            try:
                values[name] = convert(text.strip())
            except ValueError:
                raise ValueError(
                    f"fault plan: {key}={text!r} is not {types[name]}"
                ) from None
        if "seed" not in values:
            raise ValueError("fault plan: give a seed, e.g. seed=7")
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class FaultCounter:
    """How many faults of each kind were injected, and out of how many requests."""

    requests: int = 0
    server_error: int = 0
    timeout_after_store: int = 0
    rate_limited: int = 0
    dropped: int = 0
    # Of `dropped`: writes whose handler ran (and stored) before the drop.
    dropped_after: int = 0

    @property
    def total(self) -> int:
        """Faults of every kind together."""
        kinds = (self.server_error, self.timeout_after_store, self.rate_limited)
        return sum(kinds) + self.dropped

    def summary(self) -> str:
        """`5xx=12, timeouts=3, 429=9, dropped=2`."""
        return (
            f"5xx={self.server_error}, timeouts={self.timeout_after_store},"
            f" 429={self.rate_limited}, dropped={self.dropped}"
        )


class FaultInjector:
    """A plan at work in one app: its random stream, its switch and its counts."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.counter = FaultCounter()
        self.enabled = True
        self._random = random.Random(plan.seed)
        self._burst_left = 0

    def decide(self, method: str) -> Fault | None:
        """The fault for the next request, if any (counted as injected)."""
        if not self.enabled or (self.plan.methods and method not in self.plan.methods):
            return None
        plan, counter = self.plan, self.counter
        counter.requests += 1

        fault = self._rate_limit()
        if fault is None:
            roll = self._random.random()
            if roll < plan.server_error_rate:
                fault = "server_error"
            elif roll < plan.server_error_rate + plan.timeout_after_store_rate:
                fault = "timeout_after_store"
            elif roll < (
                plan.server_error_rate
                + plan.timeout_after_store_rate
                + plan.drop_connection_rate
            ):
                stored = method in _WRITES and self._random.random() < 0.5
                fault = "dropped_after" if stored else "dropped"

        match fault:
            case "server_error" | "timeout_after_store" | "rate_limited" | "dropped":
                setattr(counter, fault, getattr(counter, fault) + 1)
            case "dropped_after":
                counter.dropped += 1
                counter.dropped_after += 1
        return fault

    def _rate_limit(self) -> Fault | None:
        every = self.plan.rate_limit_every
        if self._burst_left == 0 and every and self.counter.requests % every == 0:
            self._burst_left = self.plan.rate_limit_burst
        if self._burst_left == 0:
            return None
        self._burst_left -= 1
        return "rate_limited"

    async def apply(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answer `request` through `handler`, with the fault drawn for it."""
        if not request.path.startswith(_API_PREFIX):
            return await handler(request)
        fault = self.decide(request.method)
        if fault is None:
            return await handler(request)

        _LOG.debug(
            "fault injected", fault=fault, method=request.method, path=request.path
        )
        match fault:
            case "server_error":
                status = self._random.choice(_SERVER_ERRORS)
                # Gateways answer these with a page of their own, not JSON.
                return web.Response(
                    status=status, text=f"<h1>{status}</h1>", content_type="text/html"
                )
            case "rate_limited":
                wait = self._random.choice(("0", "1"))
                return web.json_response(
                    {"message": "Too many requests"},
                    status=429,
                    headers={"Retry-After": wait},
                )
            case "timeout_after_store":
                response = await handler(request)
                await asyncio.sleep(self.plan.hang_seconds)
                return response
            case "dropped_after":
                await handler(request)
                return _drop(request)
            case "dropped":
                return _drop(request)


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection with no answer; what is returned is never sent."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


FAULTS: Final = web.AppKey("faults", FaultInjector)


def fault_middleware(injector: FaultInjector) -> Middleware:
    """The aiohttp middleware that lets `injector` fault the API's requests."""

    @web.middleware
    async def inject_faults(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        return await injector.apply(request, handler)

    return inject_faults


def install_faults(app: web.Application, plan: FaultPlan) -> FaultInjector:
    """Fault `app`'s API routes by `plan`; `app[FAULTS]` is the injector at work.

    Call it before the app starts, when its middlewares can still change.
    """
    injector = FaultInjector(plan)
    app[FAULTS] = injector
    app.middlewares.append(fault_middleware(injector))
    _LOG.info("sandbox faults on", plan=str(plan))
    return injector
