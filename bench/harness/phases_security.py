"""Phase: what the fleet's transport security costs (issue 20) — CPU per authenticated
read and per confirmed order, summed over every process of the stack, with security on
(as every stack runs: gRPC mutual TLS, Kafka SASL/SCRAM over TLS, PostgreSQL over TLS,
Redis with an ACL user) and off (gRPC plaintext, Kafka and PostgreSQL plaintext), in
A-B-B-A order (abba.py).

"off" restarts the programs with STACK_SECURITY=off, which only the bench profile
accepts: its broker and PostgreSQL servers also listen plaintext so that the price of
security can be measured (deploy/local/programs.sh, docs/trust.md). Redis keeps its
password either way (one AUTH per pooled connection: nothing to price per request).
"""

from . import abba

OFF_ENV = {"STACK_SECURITY": "off"}


def security_cost(ctx) -> None:
    """on, off, off, on; then the fleet as the stack starts it (on)."""
    abba.compare(ctx, "security_cost", ("on", {}), ("off", OFF_ENV), {})
