# Kafka of the local stack: KRaft, a single node (HA=0) or three nodes, each a broker and
# a controller (HA=1, docs/ha-kafka.md), and the fleet's topics (sourced by stack.sh
# after lib.sh, not run).
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

# STACK_SECURITY=off (bench only, lib.sh) needs the plaintext listener that only the
# single node has: refused with HA=1 before anything starts (docs/ha-kafka.md).
if ((HA)) && [ "$STACK_SECURITY" = off ]; then
    echo "STACK_SECURITY=off is not supported with HA=1 (the HA Kafka nodes have no plaintext listener)" >&2
    exit 2
fi

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

# The nodes: one (HA=0) or KAFKA_NODES (HA=1, lib.sh), each a broker and a KRaft
# controller. Node k's files: HA=0 keeps the single node's paths ($DATA/kafka/
# server.properties, $DATA/kafka/data, $RUNDIR/kafka.pid, $LOGDIR/kafka.log); HA=1 has
# $DATA/kafka/<k>/server.properties and $DATA/kafka/<k>/data, $RUNDIR/kafka-<k>.pid
# and $LOGDIR/kafka-<k>.log.
kafka_nodes() { seq 1 "$KAFKA_NODES"; }
kafka_dir() { if ((HA)); then echo "$DATA/kafka/$1"; else echo "$DATA/kafka"; fi; }
kafka_props_file() { echo "$(kafka_dir "$1")/server.properties"; }
kafka_pidfile() { if ((HA)); then echo "$RUNDIR/kafka-$1.pid"; else echo "$RUNDIR/kafka.pid"; fi; }
kafka_logfile() { if ((HA)); then echo "$LOGDIR/kafka-$1.log"; else echo "$LOGDIR/kafka.log"; fi; }
# kafka_brokers: every node's client listener, a comma list (bootstrap.servers of the
# programs, kcat and the Java tools: any one node up is enough to find the others).
kafka_brokers() {
    local k list=""
    for k in $(kafka_nodes); do list+="${list:+,}127.0.0.1:$(kafka_port "$k")"; done
    echo "$list"
}
# Durability (HA=1, docs/ha-kafka.md): every topic, the internal ones included, on all
# three nodes, and a write acknowledged (acks=all) only once two of them have it, so
# one node lost loses nothing and a second one down stops writes rather than risk
# them (they are not acknowledged: docs/ha-kafka.md). HA=0: one copy, as before.
KAFKA_RF=$((HA ? 3 : 1))
KAFKA_MIN_ISR=$((HA ? 2 : 1))

# kafka_props K: node K's server.properties on stdout.
#
# Listeners (docs/trust.md, "Kafka"):
#   CLIENT      127.0.0.1:$(kafka_port K), the only one clients reach: SASL_SSL with
#               PLAIN; there is no plaintext client listener. Also the inter-broker
#               listener, as admin (replication between the HA nodes). The users are
#               the user_<name> entries of its JAAS configuration (so a new user or a
#               new password restarts the broker: kafka_up).
#   CONTROLLER  127.0.0.1:$(kafka_controller_port K), KRaft's quorum, spoken by the
#               brokers to the controllers and between controllers: TLS with a client
#               certificate required, the principal being the certificate's CN
#               (ssl.principal.mapping.rules), and only the nodes' certificate
#               (CN=kafka, the same for every node) is a super user. Not PLAINTEXT: the
#               broker's requests to the controller need a super user, and on a
#               PLAINTEXT listener that would be User:ANONYMOUS, i.e. every local
#               process an administrator.
# Authorization: StandardAuthorizer, nothing allowed without an ACL (kafka_acls), the
# super users admin and kafka.
#
# The quorum: HA=0, one controller that formats itself as the only voter (--standalone,
# controller.quorum.bootstrap.servers); HA=1, a static quorum of the three nodes
# (controller.quorum.voters), formatted with one cluster id ($DATA/kafka/cluster.id).
#
# metadata.max.idle.interval.ms: the controller appends a no-op record to the metadata
# log this often (default 500 ms) so brokers notice a stale log; for one local node
# every 5 s is plenty, and it took the idle broker from 1.8 % to 1.4 % of a core
# (bench/README.md, "Kafka settings"). message.max.bytes: the fleet's maximum batch,
# set rather than left at the default (1 MiB + 12), so it is the number the programs
# are built with (KAFKA_MESSAGE_MAX in lib.sh).
# The bench profile alone adds PLAIN, a plaintext listener on KAFKA_PLAIN_PORT whose
# anonymous user is a super user: make bench's STACK_SECURITY=off runs (lib.sh); not
# in HA (kafka_up refuses STACK_SECURITY=off with HA=1).
kafka_props() {
    local k=$1 u users="" plain="" plain_map="" plain_super="" quorum j voters=""
    for u in $(kafka_users); do users+=" user_$u=\"$(kafka_password "$u")\""; done
    if bench_plaintext && ! ((HA)); then
        plain=",PLAIN://127.0.0.1:$KAFKA_PLAIN_PORT" plain_map=",PLAIN:PLAINTEXT" plain_super=";User:ANONYMOUS"
    fi
    if ((HA)); then
        for j in $(kafka_nodes); do voters+="${voters:+,}$j@127.0.0.1:$(kafka_controller_port "$j")"; done
        quorum="controller.quorum.voters=$voters"
    else
        quorum="controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT"
    fi
    cat <<PROPS
process.roles=broker,controller
node.id=$k
$quorum
listeners=CLIENT://127.0.0.1:$(kafka_port "$k"),CONTROLLER://127.0.0.1:$(kafka_controller_port "$k")$plain
advertised.listeners=CLIENT://127.0.0.1:$(kafka_port "$k")$plain
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
log.dirs=$(kafka_dir "$k")/data
num.partitions=$TOPIC_PARTITIONS
auto.create.topics.enable=false
offsets.topic.replication.factor=$KAFKA_RF
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$KAFKA_RF
transaction.state.log.min.isr=$KAFKA_MIN_ISR
share.coordinator.state.topic.replication.factor=$KAFKA_RF
share.coordinator.state.topic.min.isr=$KAFKA_MIN_ISR
group.initial.rebalance.delay.ms=0
metadata.max.idle.interval.ms=5000
message.max.bytes=$KAFKA_MESSAGE_MAX
PROPS
    ((HA)) || return 0
    # HA=1: durability, then how fast a lost node is noticed (docs/ha-kafka.md has the
    # measurements). A node SIGKILLed or frozen stops heartbeating: the active
    # controller fences it after broker.session.timeout.ms (default 9 s) and moves its
    # leaderships to the other replicas in the ISR; with a heartbeat every 500 ms a
    # live node must miss six in a row to be fenced, which a GC pause or a busy 2-vCPU
    # machine did not do in the runs measured. When the lost node was the active
    # controller, the other two elect a new one first: a follower that heard nothing
    # for controller.quorum.fetch.timeout.ms (default 2 s) starts an election, which
    # ends within controller.quorum.election.timeout.ms (default 1 s) plus a random
    # backoff (up to controller.quorum.election.backoff.max.ms, default 1 s); 1.5 s /
    # 750 ms / 500 ms here. replica.lag.time.max.ms (default 30 s): a follower that
    # fetches nothing this long leaves the ISR, so acks=all writes stop waiting for
    # it; a fenced node leaves at once, this covers a live but stuck one.
    cat <<PROPS
default.replication.factor=$KAFKA_RF
min.insync.replicas=$KAFKA_MIN_ISR
unclean.leader.election.enable=false
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
controller.quorum.fetch.timeout.ms=1500
controller.quorum.election.timeout.ms=750
controller.quorum.election.backoff.max.ms=500
replica.lag.time.max.ms=10000
PROPS
}

# kcat as admin (every kcat call of the stack scripts), to every node.
kafka_kcat() { kcat -F "$(kafka_kcat_config admin)" -b "$(kafka_brokers)" "$@"; }

# kafka_node_answers K: node K takes a login and its metadata lists it (it is
# registered and unfenced, so the quorum has a leader). kafka_all_answer: a node's
# metadata lists every node (what a topic of replication factor 3 needs).
kafka_node_answers() {
    kcat -F "$(kafka_kcat_config admin)" -b "127.0.0.1:$(kafka_port "$1")" -L -m 2 -t __none 2>/dev/null |
        grep -q "^ *broker $1 at "
}
kafka_all_answer() { kafka_kcat -L -m 2 -t __none 2>/dev/null | grep -q "^ *$KAFKA_NODES brokers:"; }

# kafka_node_start K: writes node K's settings, restarts it when they changed, starts
# it unless it runs (formatting its storage the first time); does not wait.
kafka_node_start() {
    local k=$1 pidfile props heap=(-Xms256m -Xmx512m) fmt=(--standalone)
    pidfile=$(kafka_pidfile "$k")
    props=$(kafka_props_file "$k")
    mkdir -p "$(kafka_dir "$k")"
    (umask 077 && kafka_props "$k" >"$props.new")
    # A running broker of other settings (a data directory from before TLS and ACLs, a
    # user added to fleet.conf, a password file deleted) starts again with these.
    if pid_alive "$pidfile" "$props" && ! cmp -s "$props" "$props.new"; then
        log "$(kafka_part_name "$k"): settings changed, restarting"
        kafka_node_stop "$k"
    fi
    mv "$props.new" "$props"
    pid_alive "$pidfile" "$props" && return 0
    rm -f "$pidfile"
    mkdir -p "$(kafka_dir "$k")/data"
    if [ ! -f "$(kafka_dir "$k")/data/meta.properties" ]; then
        log "$(kafka_part_name "$k"): formatting storage"
        # HA: the static voters are in the settings; the one cluster id is kept.
        ((HA)) && fmt=()
        kafka_java kafka.tools.StorageTool format "${fmt[@]}" --ignore-formatted \
            -t "$(kafka_cluster_id)" -c "$props" \
            >"$LOGDIR/kafka-format.log" 2>&1 || die "kafka storage format failed ($LOGDIR/kafka-format.log)"
    fi
    # HA: three JVMs on a small machine, each with a smaller heap.
    if ((HA)); then heap=(-Xms128m -Xmx384m); fi
    log "$(kafka_part_name "$k"): starting on 127.0.0.1:$(kafka_port "$k") (SASL_SSL)"
    setsid java "${heap[@]}" -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$props" >>"$(kafka_logfile "$k")" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

# kafka_cluster_id: the cluster's id, made once ($DATA/kafka/cluster.id): every node is
# formatted with it.
kafka_cluster_id() {
    local f="$DATA/kafka/cluster.id"
    [ -s "$f" ] || kafka_java kafka.tools.StorageTool random-uuid >"$f"
    cat "$f"
}

kafka_node_stop() {
    local k=$1
    pid_alive "$(kafka_pidfile "$k")" "$(kafka_props_file "$k")" && log "$(kafka_part_name "$k"): stopping"
    stop_pid "$(kafka_pidfile "$k")" "$(kafka_props_file "$k")" 60
}

kafka_up() {
    local k
    [ -f "$KAFKA_LIBS/.complete" ] || die "Kafka is not in $KAFKA_LIBS: run make deps"
    kafka_files
    for k in $(kafka_nodes); do kafka_node_start "$k"; done
    for k in $(kafka_nodes); do wait_for 120 "$(kafka_part_name "$k")" kafka_node_answers "$k"; done
    wait_for 60 "kafka (every node)" kafka_all_answer
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
        kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$(kafka_brokers)" \
            --command-config "$(kafka_admin_props)" \
            --create --if-not-exists --topic "$t" --partitions "$TOPIC_PARTITIONS" \
            --replication-factor "$KAFKA_RF" --config "max.message.bytes=$KAFKA_MESSAGE_MAX" \
            --config "min.insync.replicas=$KAFKA_MIN_ISR" \
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
# digest of what was applied is kept in node 1's data directory, shop-acls.applied (gone
# with the data), so an `up` after the first costs no JVM. One JVM per line, in parallel,
# as admin. ACLs only add up: one of a topic taken out of fleet.conf stays until wipe.
kafka_acls() {
    local line args pids=() pid stamp="$(kafka_dir 1)/data/shop-acls.applied" digest
    digest=$(kafka_acl_spec | sha256sum | cut -d' ' -f1)
    [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ] && return 0
    log "kafka: applying the services' ACLs (deploy/fleet.conf)"
    while IFS= read -r line; do
        IFS=$'\t' read -r -a args <<<"$line"
        kafka_java org.apache.kafka.tools.AclCommand --bootstrap-server "$(kafka_brokers)" \
            --command-config "$(kafka_admin_props)" "${args[@]}" >>"$LOGDIR/kafka-acls.log" 2>&1 &
        pids+=($!)
    done < <(kafka_acl_spec)
    for pid in "${pids[@]}"; do
        wait "$pid" || die "kafka: applying ACLs failed ($LOGDIR/kafka-acls.log)"
    done
    echo "$digest" >"$stamp"
}

# kafka_down: every node at once (SIGTERM: a controlled shutdown each), so that the
# last ones do not wait for a quorum that the first ones took away.
kafka_down() {
    local k pids=() pid
    for k in $(kafka_nodes); do
        kafka_node_stop "$k" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
}

# Parts (parts.sh): kafka, the one node (HA=0); kafka/1 .. kafka/3, the nodes (HA=1).
kafka_part_name() { if ((HA)); then echo "kafka/$1"; else echo kafka; fi; }
kafka_parts() {
    local k
    for k in $(kafka_nodes); do kafka_part_name "$k"; done
}
# kafka_part_node PART: the node number of PART.
kafka_part_node() { if [ "$1" = kafka ]; then echo 1; else echo "${1#kafka/}"; fi; }
kafka_part_root_pid() {
    local k
    k=$(kafka_part_node "$1")
    pid_alive "$(kafka_pidfile "$k")" "$(kafka_props_file "$k")" && head -n1 "$(kafka_pidfile "$k")"
    return 0
}
# kafka_part_start PART: HA=0, kafka_up; HA=1, that node, until it answers.
kafka_part_start() {
    local k
    if ! ((HA)); then kafka_up; return 0; fi
    k=$(kafka_part_node "$1")
    kafka_files
    kafka_node_start "$k"
    wait_for 120 "$1" kafka_node_answers "$k"
}

# kafka_settled: every node is back in every partition's ISR (no partition
# under-replicated), so the cluster can lose a node again. HA=0: the node answers.
kafka_settled() {
    local meta
    meta=$(kafka_kcat -L -m 5 2>/dev/null) || return 1
    grep -q "^ *$KAFKA_NODES brokers:" <<<"$meta" || return 1
    # "partition 0, leader 1, replicas: 1,2,3, isrs: 1,2,3": as many ISR as replicas
    awk '/ partition [0-9]+, leader/ {
            r = $0; sub(/.*replicas: /, "", r); sub(/, isrs:.*/, "", r)
            i = $0; sub(/.*isrs: /, "", i); sub(/ .*/, "", i)
            if (split(r, a, ",") != split(i, b, ",") || $0 ~ /leader -1/) bad++
         }
         END { exit bad > 0 }' <<<"$meta"
}
