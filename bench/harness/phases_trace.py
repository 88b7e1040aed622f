"""Phase: what tracing costs (issue 19) — CPU per authenticated read and per confirmed
order, summed over every process of the stack, with every program sampling
always_on and then always_off, A-B-B-A (abba.py).

The programs are restarted with OTEL_TRACES_SAMPLER set (through the stack's
<PROGRAM>_ENV_<NAME> settings). Spans go to the receiver the stack names
(OTEL_EXPORTER_OTLP_ENDPOINT of `stack.sh env`, else of the harness's environment);
without one, "on" records nothing and the phase says so in trace_cost.exporting.
"""

import os

from . import abba
from .util import say


def _endpoint(ctx):
    return (ctx.stack.env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _sampler_env(ctx, sampler: str) -> dict:
    env = {}
    for part in ctx.stack.programs:
        p = abba.prefix(part)
        env[f"{p}_ENV_OTEL_TRACES_SAMPLER"] = sampler
        # The bench stack runs with export off (config.TRACING_OFF_ENV): on here.
        env[f"{p}_ENV_OTEL_TRACES_EXPORTER"] = "otlp"
        if _endpoint(ctx):
            env[f"{p}_ENV_OTEL_EXPORTER_OTLP_ENDPOINT"] = _endpoint(ctx)
    return env


def trace_cost(ctx) -> None:
    """always_on, always_off, always_off, always_on; then the fleet as the stack starts it."""
    exporting = bool(_endpoint(ctx))
    if not exporting:
        say("trace_cost: no OTEL_EXPORTER_OTLP_ENDPOINT: always_on records nothing")
    abba.compare(ctx, "trace_cost", ("always_on", _sampler_env(ctx, "always_on")),
                 ("always_off", _sampler_env(ctx, "always_off")), {"exporting": exporting})
