#!/bin/sh
# bench/peers/mkcerts.sh DIR [NDOMAINS] — the certificates of a TLS benchmark run.
#
# Writes into DIR (created if missing), all EC P-256, valid from now:
#   ca.pem ca.key          the test CA both sides trust (fedhub's ca_file,
#                          the bench's --tls-dir)
#   bench.pem bench.key    the bench's domains bench1.fhb..benchN.fhb
#   bench-K.pem bench-K.key  (NDOMAINS, default 64) in multi-SAN leaves of
#                          MKCERTS_GROUP (default 10) domains each, one key
#                          for all: bench.pem names bench1..bench10,
#                          bench-2.pem bench11..bench20, and so on (the bench
#                          loads them all). A server's certificate names its
#                          domain and a few more; one leaf for all would make a
#                          Certificate message larger than a TLS peer accepts
#                          beyond about a thousand names, and the peer keeps a
#                          decoded copy of it per link (wolfSSL: about 75 bytes
#                          per name). Not a wildcard: *.fhb has a single label
#                          after the '*', which fedhub refuses as RFC 6125
#                          advises
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

leaf() { # NAME CN SAN [KEY: an existing key to certify]
	if [ $# -ge 4 ]; then cp "$4.key" "$1.key"; else key "$1"; fi
	# one openssl run per leaf (req -x509 -CA): thousands of domains make
	# hundreds of leaves
	q openssl req -new -x509 -key "$1.key" -subj "/CN=$2" -CA ca.pem -CAkey ca.key -days 30 -sha256 \
		-addext "basicConstraints=CA:FALSE" -addext "keyUsage=critical,digitalSignature" \
		-addext "extendedKeyUsage=serverAuth,clientAuth" -addext "subjectAltName=$3" -out "$1.pem"
}
GROUP=${MKCERTS_GROUP:-10}
g=1
first=1
while [ "$first" -le "$N" ]; do
	last=$((first + GROUP - 1))
	[ "$last" -le "$N" ] || last=$N
	san=DNS:bench$first.fhb
	i=$((first + 1))
	while [ "$i" -le "$last" ]; do san="$san,DNS:bench$i.fhb"; i=$((i + 1)); done
	if [ "$g" = 1 ]; then leaf bench "bench$first.fhb" "$san"; else leaf "bench-$g" "bench$first.fhb" "$san" bench; fi
	g=$((g + 1))
	first=$((last + 1))
done
leaf target comp.fhb "DNS:comp.fhb,DNS:hub.fhb"
rm -f .err ca.srl
