#!/bin/sh
# bench/peers/mkcerts.sh DIR [NDOMAINS] — the certificates of a TLS benchmark run.
#
# Writes into DIR (created if missing), all EC P-256, valid from now:
#   ca.pem ca.key          the test CA both sides trust (fedhub's ca_file,
#                          the bench's --tls-dir)
#   bench.pem bench.key    the bench's domains bench1.fhb..benchN.fhb
#                          (NDOMAINS, default 64) in one multi-SAN leaf; not
#                          a wildcard: *.fhb has a single label after the
#                          '*', which fedhub refuses as RFC 6125 advises
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
san=DNS:bench1.fhb
i=2
while [ "$i" -le "$N" ]; do san="$san,DNS:bench$i.fhb"; i=$((i + 1)); done
leaf bench bench1.fhb "$san"
leaf target comp.fhb "DNS:comp.fhb,DNS:hub.fhb"
rm -f .err ca.srl
