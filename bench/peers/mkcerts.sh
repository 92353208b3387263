#!/bin/sh
# bench/peers/mkcerts.sh DIR [NDOMAINS] — the certificates of a TLS benchmark run.
#
# Writes into DIR (created if missing), all EC P-256, valid from now:
#   ca.pem ca.key          the test CA both sides trust (fedhub's ca_file,
#                          the bench's --tls-dir)
#   bench.pem bench.key    the bench's domains bench1.fhb..benchN.fhb
#   bench-K.pem bench-K.key  (NDOMAINS, default 64) in multi-SAN leaves of
#                          GROUP (100) domains each: bench.pem names bench1..
#                          bench100, bench-2.pem bench101..bench200, and so on
#                          (the bench loads them all). Not one leaf for all: a
#                          Certificate message naming ten thousand domains is
#                          larger than a TLS peer accepts, and every link would
#                          keep that certificate. Not a wildcard: *.fhb has a
#                          single label after the '*', which fedhub refuses as
#                          RFC 6125 advises
#   target.pem target.key  the target's domains: comp.fhb and hub.fhb
# Leaves carry serverAuth and clientAuth: an s2s peer is a TLS client on the
# links it dials and a server on those it accepts, and SASL EXTERNAL
# (XEP-0178) checks the client certificate.
set -eu
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 DIR [NDOMAINS]" >&2; exit 2; }
D=$1
N=${2:-64}
mkdir -p "$D"
cd "$D"

# openssl talks on stderr even when it succeeds: shown only on failure
q() { "$@" 2>.err || { echo "mkcerts.sh: failed: $*" >&2; cat .err >&2; exit 1; }; }
key() { q openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"; }

key ca
q openssl req -new -x509 -key ca.key -out ca.pem -days 30 -subj "/CN=fedhub-bench test CA" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

leaf() { # NAME CN SAN
	key "$1"
	q openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
	printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$3" >"$1.ext"
	q openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -sha256 \
		-extfile "$1.ext" -out "$1.pem"
	rm -f "$1.csr" "$1.ext"
}
GROUP=100
g=1
first=1
while [ "$first" -le "$N" ]; do
	last=$((first + GROUP - 1))
	[ "$last" -le "$N" ] || last=$N
	san=DNS:bench$first.fhb
	i=$((first + 1))
	while [ "$i" -le "$last" ]; do san="$san,DNS:bench$i.fhb"; i=$((i + 1)); done
	if [ "$g" = 1 ]; then name=bench; else name=bench-$g; fi
	leaf "$name" "bench$first.fhb" "$san"
	g=$((g + 1))
	first=$((last + 1))
done
leaf target comp.fhb "DNS:comp.fhb,DNS:hub.fhb"
rm -f .err ca.srl
