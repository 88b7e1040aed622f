# The trace backend and the metrics server of the local stack (sourced by stack.sh after
# lib.sh, not run).
#
# Jaeger (every profile): the all-in-one program with in-memory storage, receiving
# OTLP from the fleet's programs (they get OTEL_EXPORTER_OTLP_ENDPOINT, programs.sh) and
# answering trace queries over HTTP (UI and /api/traces). Its traces last until it stops.
# Prometheus (dev profile only, i.e. make run / make up): Debian's, scraping every
# program's /metrics and evaluating deploy/observability/prometheus/alerts.yml.

otlp_endpoint() { echo "http://127.0.0.1:$OTLP_PORT"; }
trace_query_url() { echo "http://127.0.0.1:$JAEGER_QUERY_PORT/api/traces"; }

jaeger_config() {
    cat <<YAML
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:$JAEGER_HEALTH_PORT
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:$JAEGER_QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$JAEGER_QUERY_GRPC_PORT
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 50000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$OTLP_PORT
      http:
        endpoint: 127.0.0.1:$OTLP_HTTP_PORT
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
YAML
}

jaeger_up() {
    local pidfile="$RUNDIR/jaeger.pid" conf="$DATA/jaeger/config.yaml"
    [ -x "$JAEGER_BIN" ] || die "Jaeger is not in $JAEGER_BIN: run make deps"
    pid_alive "$pidfile" "$conf" && return 0
    rm -f "$pidfile"
    mkdir -p "$DATA/jaeger"
    jaeger_config >"$conf"
    log "jaeger: starting (OTLP 127.0.0.1:$OTLP_PORT, UI http://127.0.0.1:$JAEGER_QUERY_PORT)"
    # GOMAXPROCS=1: the collector's worker pools size themselves by CPU; one is plenty
    # here and leaves the machine's cores to the fleet. (enable_tracing: false above keeps
    # its query service from tracing itself to localhost:4317.)
    GOMAXPROCS=1 setsid "$JAEGER_BIN" --config "$conf" >>"$LOGDIR/jaeger.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    wait_for 60 jaeger curl -sf "http://127.0.0.1:$JAEGER_QUERY_PORT/api/services"
}

jaeger_down() {
    pid_alive "$RUNDIR/jaeger.pid" "$DATA/jaeger/config.yaml" && log "jaeger: stopping"
    stop_pid "$RUNDIR/jaeger.pid" "$DATA/jaeger/config.yaml"
}

# Prometheus scrapes each program as its own job (job=gateway, job=order-svc, ...), one
# target per instance, the labels the alert rules and the dashboard use.
prometheus_config() {
    local svc rules="$ROOT/deploy/observability/prometheus/alerts.yml"
    cat <<YAML
global:
  scrape_interval: 5s
  evaluation_interval: 5s
YAML
    [ -f "$rules" ] && printf 'rule_files:\n  - %s\n' "$rules"
    echo "scrape_configs:"
    printf '  - job_name: gateway\n    static_configs:\n      - targets: ["127.0.0.1:%s"]\n' "$GATEWAY_PORT"
    for svc in "${SERVICES[@]}"; do
        printf '  - job_name: %s\n    static_configs:\n      - targets: ["%s"]\n' \
            "${FLEET_PROGRAM[$svc]}" "$(addr_list admin "$svc" | sed 's/,/", "/g')"
    done
}

prometheus_up() {
    local pidfile="$RUNDIR/prometheus.pid" conf="$DATA/prometheus/prometheus.yml"
    [ "$STACK_PROFILE" = dev ] || return 0
    command -v prometheus >/dev/null || die "prometheus is not installed: run make deps"
    mkdir -p "$DATA/prometheus/data"
    prometheus_config >"$conf.tmp" && mv "$conf.tmp" "$conf"
    if pid_alive "$pidfile" "$conf"; then
        kill -HUP "$(head -n1 "$pidfile")" # a new SCALE: reload the targets
        return 0
    fi
    rm -f "$pidfile"
    log "prometheus: starting on http://127.0.0.1:$PROMETHEUS_PORT"
    setsid prometheus --config.file="$conf" --storage.tsdb.path="$DATA/prometheus/data" \
        --storage.tsdb.retention.time=2d --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
        >>"$LOGDIR/prometheus.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    wait_for 60 prometheus curl -sf "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
}

prometheus_down() {
    pid_alive "$RUNDIR/prometheus.pid" "$DATA/prometheus/prometheus.yml" && log "prometheus: stopping"
    stop_pid "$RUNDIR/prometheus.pid" "$DATA/prometheus/prometheus.yml"
}
