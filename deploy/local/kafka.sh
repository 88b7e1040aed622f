# Kafka of the local stack: KRaft, a single node, and the fleet's topics (sourced by
# stack.sh after lib.sh, not run).

kafka_java() { java -Xms256m -Xmx512m -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" -cp "$KAFKA_LIBS/*" "$@"; }

kafka_up() {
    local pidfile="$RUNDIR/kafka.pid" props="$DATA/kafka/server.properties"
    [ -f "$KAFKA_LIBS/.complete" ] || die "Kafka is not in $KAFKA_LIBS: run make deps"
    if ! pid_alive "$pidfile" "$props"; then
        rm -f "$pidfile"
        mkdir -p "$DATA/kafka/data"
        # metadata.max.idle.interval.ms: the controller appends a no-op record to the
        # metadata log this often (default 500 ms) so brokers notice a stale log; for one
        # local node every 5 s is plenty, and it took the idle broker from 1.8 % to 1.4 %
        # of a core (bench/README.md, "Kafka settings").
        # message.max.bytes: the fleet's maximum batch, set rather than left at the
        # default (1 MiB + 12), so it is the number the programs are built with
        # (KAFKA_MESSAGE_MAX in lib.sh).
        cat >"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA/kafka/data
num.partitions=$TOPIC_PARTITIONS
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
metadata.max.idle.interval.ms=5000
message.max.bytes=$KAFKA_MESSAGE_MAX
PROPS
        if [ ! -f "$DATA/kafka/data/meta.properties" ]; then
            log "kafka: formatting storage"
            kafka_java kafka.tools.StorageTool format --standalone --ignore-formatted \
                -t "$(kafka_java kafka.tools.StorageTool random-uuid)" -c "$props" \
                >"$LOGDIR/kafka-format.log" 2>&1 || die "kafka storage format failed ($LOGDIR/kafka-format.log)"
        fi
        log "kafka: starting on 127.0.0.1:$KAFKA_PORT"
        setsid java -Xms256m -Xmx512m -XX:+UseSerialGC \
            -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$props" >>"$LOGDIR/kafka.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    fi
    wait_for 90 kafka kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 -t __none
    kafka_topics
}

kafka_topics() {
    local meta missing=() t
    meta=$(kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 5 2>/dev/null)
    for t in "${TOPICS[@]}"; do
        grep -qF "topic \"$t\" with" <<<"$meta" || missing+=("$t")
    done
    ((${#missing[@]})) || return 0
    log "kafka: creating topics ${missing[*]}"
    local pids=() pid
    for t in "${missing[@]}"; do
        kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
            --create --if-not-exists --topic "$t" --partitions "$TOPIC_PARTITIONS" \
            --replication-factor 1 --config "max.message.bytes=$KAFKA_MESSAGE_MAX" \
            >>"$LOGDIR/kafka-topics.log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || die "kafka topic creation failed ($LOGDIR/kafka-topics.log)"
    done
}

kafka_down() {
    pid_alive "$RUNDIR/kafka.pid" "$DATA/kafka/server.properties" && log "kafka: stopping"
    stop_pid "$RUNDIR/kafka.pid" "$DATA/kafka/server.properties" 60
}
