# The fleet manifest (deploy/fleet.conf) as bash data (sourced, not run). Needs ROOT.
#
#   SERVICES            the services' names, in manifest order (rows with a gRPC port)
#   FLEET_PROGRAMS      every program, services first, then the others (the gateway)
#   FLEET_PROGRAM[n]    program of row n; FLEET_GRPC[n], FLEET_ADMIN[n], FLEET_PG[n]
#                       port offsets; FLEET_DB[n] database; FLEET_CONSUMES[n],
#                       FLEET_PRODUCES[n], FLEET_UPSTREAMS[n] comma lists ('' for none)
#   TOPICS              every consumed or produced topic, then their dead-letter topics
#   fleet_program_path PROGRAM   its path in a build tree (services/<name>/<program>)

FLEET_CONF=${FLEET_CONF:-$ROOT/deploy/fleet.conf}
SERVICES=()
FLEET_PROGRAMS=()
declare -A FLEET_PROGRAM=() FLEET_GRPC=() FLEET_ADMIN=() FLEET_PG=() FLEET_DB=() \
    FLEET_CONSUMES=() FLEET_PRODUCES=() FLEET_UPSTREAMS=()

fleet_load() {
    local name program grpc admin pg db consumes produces upstreams extra others=() topics=() t
    [ -r "$FLEET_CONF" ] || { echo "fleet: cannot read $FLEET_CONF" >&2; exit 2; }
    while read -r name program grpc admin pg db consumes produces upstreams extra; do
        [ -z "$name" ] || [[ "$name" == \#* ]] && continue
        if [ -z "$upstreams" ] || [ -n "$extra" ]; then
            echo "fleet: $FLEET_CONF: the line of '$name' needs exactly 9 columns" >&2
            exit 2
        fi
        FLEET_PROGRAM[$name]=$program
        FLEET_GRPC[$name]=${grpc#-} FLEET_ADMIN[$name]=${admin#-} FLEET_PG[$name]=${pg#-}
        FLEET_DB[$name]=${db#-}
        FLEET_CONSUMES[$name]=${consumes#-} FLEET_PRODUCES[$name]=${produces#-}
        FLEET_UPSTREAMS[$name]=${upstreams#-}
        if [ -n "${FLEET_GRPC[$name]}" ]; then SERVICES+=("$name"); else others+=("$name"); fi
        for t in ${produces//,/ } ${consumes//,/ }; do
            [ "$t" = - ] || [[ " ${topics[*]} " == *" $t "* ]] || topics+=("$t")
        done
    done <"$FLEET_CONF"
    for name in "${SERVICES[@]}" "${others[@]}"; do FLEET_PROGRAMS+=("${FLEET_PROGRAM[$name]}"); done
    TOPICS=("${topics[@]}")
    for t in "${topics[@]}"; do TOPICS+=("$t.dlq"); done
}
fleet_load

fleet_program_path() { # fleet_program_path PROGRAM: services/<name>/<program>, or <program>/<program>
    local name
    for name in "${SERVICES[@]}"; do
        [ "${FLEET_PROGRAM[$name]}" = "$1" ] && { echo "services/$name/$1"; return 0; }
    done
    echo "$1/$1"
}
