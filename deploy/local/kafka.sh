# Kafka of the local stack: KRaft, a single node, and the fleet's topics (sourced by
# stack.sh after lib.sh, not run).
#
# Zero trust inside the fleet (docs/trust.md, "Kafka"): clients reach the broker only
# over TLS (the stack's PKI: pki_cert kafka) and authenticate with a user name and a
# password, one principal per service of deploy/fleet.conf (its program: order-svc,
# product-svc, user-svc) plus admin, the super user of the stack scripts, the tests'
# own administration and shopctl. Passwords: $DATA/secrets/kafka-password-<user>.
# The StandardAuthorizer denies what no ACL allows; kafka_acls derives each service's
# ACLs from the manifest.
#
# The SASL mechanism is PLAIN (inside TLS), not SCRAM-SHA-512: Debian 12's librdkafka
# 2.0.2, which the programs and kcat use, answers a SCRAM challenge with a nonce that
# Kafka 4's strict RFC 5802 check refuses (fixed in librdkafka 2.6.1), so every SCRAM
# login fails with "invalid credentials" (docs/decisions.md).

# The users: admin and every service's program.
kafka_users() {
    local svc
    echo admin
    for svc in "${SERVICES[@]}"; do echo "${FLEET_PROGRAM[$svc]}"; done
}
kafka_password_file() { stack_secret_file "kafka-password-$1" random_b64 24; }
kafka_password() { cat "$(kafka_password_file "$1")"; }

# Files of the broker's TLS and of the tools, under $DATA/kafka (0600: secrets in
# them): server.pem (the broker's key and certificate chain, what ssl.keystore.type=
# PEM reads), admin.properties (the Java tools as admin) and kcat-<user>.conf (kcat -F
# FILE, librdkafka's property names) for every user.
kafka_admin_props() { echo "$DATA/kafka/admin.properties"; }
kafka_kcat_config() { echo "$DATA/kafka/kcat-$1.conf"; }

kafka_java() { java -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" -cp "$KAFKA_LIBS/*" "$@"; }

kafka_files() {
    local ca u
    ca=$(tls_ca_file)
    pki_cert kafka
    mkdir -p "$DATA/kafka"
    (
        umask 077
        cat "$(tls_key_file kafka)" "$(tls_cert_file kafka)" >"$DATA/kafka/server.pem.tmp"
        mv "$DATA/kafka/server.pem.tmp" "$DATA/kafka/server.pem"
        for u in $(kafka_users); do
            printf '%s\n' "security.protocol=SASL_SSL" "sasl.mechanisms=PLAIN" "sasl.username=$u" \
                "sasl.password=$(kafka_password "$u")" "ssl.ca.location=$ca" >"$(kafka_kcat_config "$u")"
        done
        cat >"$(kafka_admin_props)" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$(kafka_password admin)";
ssl.truststore.type=PEM
ssl.truststore.location=$ca
PROPS
    )
}

# kafka_props: the broker's server.properties on stdout.
#
# Listeners (docs/trust.md, "Kafka"):
#   CLIENT      127.0.0.1:KAFKA_PORT, the only one clients reach: SASL_SSL with PLAIN;
#               there is no plaintext client listener. Also the inter-broker listener,
#               as admin (a single node hardly talks to itself). The users are the
#               user_<name> entries of its JAAS configuration (so a new user or a new
#               password restarts the broker: kafka_up).
#   CONTROLLER  127.0.0.1:KAFKA_CONTROLLER_PORT, KRaft's quorum, spoken by this node's
#               broker half to its controller half: TLS with a client certificate
#               required, the principal being the certificate's CN
#               (ssl.principal.mapping.rules), and only the broker's certificate
#               (CN=kafka) is a super user. Not PLAINTEXT: the broker's requests to
#               the controller need a super user, and on a PLAINTEXT listener that
#               would be User:ANONYMOUS, i.e. every local process an administrator.
# Authorization: StandardAuthorizer, nothing allowed without an ACL (kafka_acls), the
# super users admin and kafka.
#
# metadata.max.idle.interval.ms: the controller appends a no-op record to the metadata
# log this often (default 500 ms) so brokers notice a stale log; for one local node
# every 5 s is plenty, and it took the idle broker from 1.8 % to 1.4 % of a core
# (bench/README.md, "Kafka settings"). message.max.bytes: the fleet's maximum batch,
# set rather than left at the default (1 MiB + 12), so it is the number the programs
# are built with (KAFKA_MESSAGE_MAX in lib.sh).
# The bench profile alone adds PLAIN, a plaintext listener on KAFKA_PLAIN_PORT whose
# anonymous user is a super user: make bench's STACK_SECURITY=off runs (lib.sh).
kafka_props() {
    local u users="" plain="" plain_map="" plain_super=""
    for u in $(kafka_users); do users+=" user_$u=\"$(kafka_password "$u")\""; done
    if bench_plaintext; then
        plain=",PLAIN://127.0.0.1:$KAFKA_PLAIN_PORT" plain_map=",PLAIN:PLAINTEXT" plain_super=";User:ANONYMOUS"
    fi
    cat <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=CLIENT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT$plain
advertised.listeners=CLIENT://127.0.0.1:$KAFKA_PORT$plain
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:SSL$plain_map
sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.client.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$(kafka_password admin)"$users;
ssl.keystore.type=PEM
ssl.keystore.location=$DATA/kafka/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$(tls_ca_file)
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+),.*\$/\$1/,RULE:^CN=([^,]+)\$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:kafka$plain_super
allow.everyone.if.no.acl.found=false
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
}

# kcat as admin (every kcat call of the stack scripts).
kafka_kcat() { kcat -F "$(kafka_kcat_config admin)" -b "127.0.0.1:$KAFKA_PORT" "$@"; }

kafka_up() {
    local pidfile="$RUNDIR/kafka.pid" props="$DATA/kafka/server.properties"
    [ -f "$KAFKA_LIBS/.complete" ] || die "Kafka is not in $KAFKA_LIBS: run make deps"
    kafka_files
    (umask 077 && kafka_props >"$props.new")
    # A running broker of other settings (a data directory from before TLS and ACLs, a
    # user added to fleet.conf, a password file deleted) starts again with these.
    if pid_alive "$pidfile" "$props" && ! cmp -s "$props" "$props.new"; then
        log "kafka: settings changed, restarting"
        kafka_down
    fi
    mv "$props.new" "$props"
    if ! pid_alive "$pidfile" "$props"; then
        rm -f "$pidfile"
        mkdir -p "$DATA/kafka/data"
        if [ ! -f "$DATA/kafka/data/meta.properties" ]; then
            log "kafka: formatting storage"
            kafka_java kafka.tools.StorageTool format --standalone --ignore-formatted \
                -t "$(kafka_java kafka.tools.StorageTool random-uuid)" -c "$props" \
                >"$LOGDIR/kafka-format.log" 2>&1 || die "kafka storage format failed ($LOGDIR/kafka-format.log)"
        fi
        log "kafka: starting on 127.0.0.1:$KAFKA_PORT (SASL_SSL)"
        setsid java -Xms256m -Xmx512m -XX:+UseSerialGC \
            -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$props" >>"$LOGDIR/kafka.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    fi
    wait_for 90 kafka kafka_kcat -L -m 2 -t __none
    kafka_topics
    kafka_acls
}

kafka_topics() {
    local meta missing=() t
    meta=$(kafka_kcat -L -m 5 2>/dev/null)
    for t in "${TOPICS[@]}"; do
        grep -qF "topic \"$t\" with" <<<"$meta" || missing+=("$t")
    done
    ((${#missing[@]})) || return 0
    log "kafka: creating topics ${missing[*]}"
    local pids=() pid
    for t in "${missing[@]}"; do
        kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
            --command-config "$(kafka_admin_props)" \
            --create --if-not-exists --topic "$t" --partitions "$TOPIC_PARTITIONS" \
            --replication-factor 1 --config "max.message.bytes=$KAFKA_MESSAGE_MAX" \
            >>"$LOGDIR/kafka-topics.log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || die "kafka topic creation failed ($LOGDIR/kafka-topics.log)"
    done
}

# kafka_acl_spec: the ACLs of every service, from deploy/fleet.conf, as AclCommand
# arguments, one run per line (tab-separated). A service's principal is its program,
# and so is its consumer group:
#   --consumer on the topics it consumes and its group: READ and DESCRIBE on those
#     topics, READ on the group (join, fetch, commit offsets);
#   WRITE and DESCRIBE on the topic it produces (its outbox) and on T.dlq for every
#     topic T it consumes (where its consumer copies what it cannot apply).
# Nothing else: no CREATE, no other group, no cluster operation (since Kafka 3.0 an
# idempotent producer needs WRITE on a topic, not IDEMPOTENT_WRITE on the cluster).
kafka_acl_spec() {
    local svc p t args
    for svc in "${SERVICES[@]}"; do
        p=${FLEET_PROGRAM[$svc]}
        if [ -n "${FLEET_CONSUMES[$svc]}" ]; then
            args=(--add --allow-principal "User:$p" --consumer --group "$p")
            for t in ${FLEET_CONSUMES[$svc]//,/ }; do args+=(--topic "$t"); done
            (IFS=$'\t' && echo "${args[*]}")
        fi
        args=(--add --allow-principal "User:$p" --operation Write --operation Describe)
        for t in ${FLEET_PRODUCES[$svc]//,/ }; do args+=(--topic "$t"); done
        for t in ${FLEET_CONSUMES[$svc]//,/ }; do args+=(--topic "$t.dlq"); done
        if ((${#args[@]} > 7)); then (IFS=$'\t' && echo "${args[*]}"); fi
    done
    return 0
}

# kafka_acls: applies kafka_acl_spec unless this data directory has it already: the
# digest of what was applied is kept in $DATA/kafka/data/shop-acls.applied (gone with
# the data), so an `up` after the first costs no JVM. One JVM per line, in parallel,
# as admin. ACLs only add up: one of a topic taken out of fleet.conf stays until wipe.
kafka_acls() {
    local line args pids=() pid stamp="$DATA/kafka/data/shop-acls.applied" digest
    digest=$(kafka_acl_spec | sha256sum | cut -d' ' -f1)
    [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ] && return 0
    log "kafka: applying the services' ACLs (deploy/fleet.conf)"
    while IFS= read -r line; do
        IFS=$'\t' read -r -a args <<<"$line"
        kafka_java org.apache.kafka.tools.AclCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
            --command-config "$(kafka_admin_props)" "${args[@]}" >>"$LOGDIR/kafka-acls.log" 2>&1 &
        pids+=($!)
    done < <(kafka_acl_spec)
    for pid in "${pids[@]}"; do
        wait "$pid" || die "kafka: applying ACLs failed ($LOGDIR/kafka-acls.log)"
    done
    echo "$digest" >"$stamp"
}

kafka_down() {
    pid_alive "$RUNDIR/kafka.pid" "$DATA/kafka/server.properties" && log "kafka: stopping"
    stop_pid "$RUNDIR/kafka.pid" "$DATA/kafka/server.properties" 60
}

# Parts (parts.sh): kafka, the one node.
kafka_parts() { echo kafka; }
kafka_part_root_pid() {
    pid_alive "$RUNDIR/kafka.pid" "$DATA/kafka/server.properties" && head -n1 "$RUNDIR/kafka.pid"
    return 0
}
kafka_part_start() { kafka_up; }
