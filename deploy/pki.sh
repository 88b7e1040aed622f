#!/bin/sh
# The fleet's private PKI: one local certificate authority and a certificate per
# program and server, made with openssl on first use (docs/trust.md). Used by the local
# stack (deploy/local/stack.sh) and by the compose stack's `pki` container, so it is
# POSIX sh and needs nothing but openssl.
#
#   pki.sh DIR ca                      the CA (DIR/ca.crt, DIR/ca.key) unless it exists
#   pki.sh DIR cert NAME [SAN...]      DIR/NAME.crt and DIR/NAME.key, signed by the CA,
#                                      CN=NAME and the subject alternative names
#                                      NAME, localhost, 127.0.0.1 and SAN... (DNS names
#                                      or IPv4 addresses); made again when missing,
#                                      when the CA changed, when its names differ or
#                                      when it expires within 30 days
#   pki.sh DIR rotate [NAME...]        new certificates (and keys) for NAME..., or a
#                                      new CA and every certificate when no NAME is given
#
# A certificate's CN is the identity a peer is known by: gRPC servers accept x-user-*
# metadata only from a caller whose certificate's CN they trust (RPC_USER_CALLERS).
# Keys are EC P-256 in PKCS#8 PEM (gRPC, PostgreSQL, Kafka and librdkafka all read
# them); DIR is 0700, keys 0600, certificates 0644.
set -eu

dir=${1:?usage: pki.sh DIR ca|cert NAME [SAN...]|rotate [NAME...]}
cmd=${2:?usage: pki.sh DIR ca|cert NAME [SAN...]|rotate [NAME...]}
shift 2

CA_DAYS=3650
CERT_DAYS=825
RENEW_SECONDS=$((30 * 24 * 3600))

umask 077
mkdir -p "$dir"
chmod 700 "$dir"

ca() {
    [ -s "$dir/ca.crt" ] && [ -s "$dir/ca.key" ] && return 0
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key.tmp" 2>/dev/null
    openssl req -x509 -new -key "$dir/ca.key.tmp" -sha256 -days "$CA_DAYS" \
        -subj "/O=shop fleet/CN=shop fleet local CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.crt.tmp" 2>/dev/null
    chmod 644 "$dir/ca.crt.tmp"
    mv "$dir/ca.key.tmp" "$dir/ca.key"
    mv "$dir/ca.crt.tmp" "$dir/ca.crt"
}

# san_list NAME [SAN...]: "DNS:NAME,DNS:localhost,IP:127.0.0.1,..." without repeats.
san_list() {
    out="" seen=" "
    for n in "$@" localhost 127.0.0.1; do
        case "$seen" in *" $n "*) continue ;; esac
        seen="$seen$n "
        if printf '%s' "$n" | grep -Eq '^[0-9]+(\.[0-9]+){3}$'; then e="IP:$n"; else e="DNS:$n"; fi
        out="${out:+$out,}$e"
    done
    printf '%s' "$out"
}

# current NAME SANS: true when DIR/NAME.crt exists, was signed by this CA, carries
# exactly these names and is valid for more than RENEW_SECONDS.
current() {
    crt="$dir/$1.crt"
    [ -s "$crt" ] && [ -s "$dir/$1.key" ] || return 1
    openssl verify -CAfile "$dir/ca.crt" "$crt" >/dev/null 2>&1 || return 1
    openssl x509 -in "$crt" -noout -checkend "$RENEW_SECONDS" >/dev/null 2>&1 || return 1
    [ "$(cat "$dir/$1.san" 2>/dev/null)" = "$2" ]
}

cert() {
    name=${1:?cert needs a NAME}
    case "$name" in *[!A-Za-z0-9._-]*) echo "pki.sh: bad name '$name'" >&2; exit 2 ;; esac
    sans=$(san_list "$@")
    ca
    current "$name" "$sans" && return 0
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name.key.tmp" 2>/dev/null
    openssl req -new -key "$dir/$name.key.tmp" -subj "/O=shop fleet/CN=$name" \
        -out "$dir/$name.csr" 2>/dev/null
    ext="$dir/$name.ext"
    cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans
EXT
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -sha256 -days "$CERT_DAYS" -extfile "$ext" \
        -out "$dir/$name.crt.tmp" 2>/dev/null
    rm -f "$dir/$name.csr" "$ext"
    chmod 644 "$dir/$name.crt.tmp"
    mv "$dir/$name.key.tmp" "$dir/$name.key"
    mv "$dir/$name.crt.tmp" "$dir/$name.crt"
    printf '%s' "$sans" >"$dir/$name.san"
}

case "$cmd" in
ca) ca ;;
cert) cert "$@" ;;
rotate)
    if [ $# -eq 0 ]; then
        rm -f "$dir"/*.crt "$dir"/*.key "$dir"/*.san "$dir"/ca.srl
        ca
    else
        for n in "$@"; do rm -f "$dir/$n.crt" "$dir/$n.key"; done
    fi
    ;;
*) echo "pki.sh: unknown command '$cmd' (ca, cert, rotate)" >&2; exit 2 ;;
esac
