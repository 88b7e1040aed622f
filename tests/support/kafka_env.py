"""The tests' Kafka principals, from the stack's settings (deploy/local/stack.sh env):
each service started by a test runs as its own principal (KAFKA_<SVC>_USERNAME and
KAFKA_<SVC>_PASSWORD_FILE, the program's name), the tests' own kcat calls as the admin
(KAFKA_ADMIN_KCAT_CONFIG). Without them (a broker without authentication) nothing is
added. Standard library only."""

import os


def service_env(program):
    """KAFKA_USERNAME and KAFKA_PASSWORD_FILE of the service whose program is `program`
    ("order-svc": KAFKA_ORDER_USERNAME, ...), for its environment; {} when the stack
    names no principal for it."""
    svc = program.split("-")[0].upper()
    user = os.environ.get("KAFKA_%s_USERNAME" % svc)
    pw_file = os.environ.get("KAFKA_%s_PASSWORD_FILE" % svc)
    if not user or not pw_file:
        return {}
    return {"KAFKA_USERNAME": user, "KAFKA_PASSWORD_FILE": pw_file}


def admin_kcat():
    """kcat's first arguments as the stack's admin: the -F configuration and -b."""
    conf = os.environ.get("KAFKA_ADMIN_KCAT_CONFIG")
    return ["kcat"] + (["-F", conf] if conf else []) + ["-b", os.environ["KAFKA_BROKERS"]]
