#!/bin/sh
# tests/certs/mkcerts.sh DIR — a throw-away PKI for the TLS tests, all EC P-256.
#
# Writes into DIR (created if missing; nothing is generated in the source tree,
# keys are never committed):
#   ca.pem ca.key            the trusted test CA
#   other-ca.pem other-ca.key a CA nobody trusts
#   NAME.pem NAME.key        leaf certificates signed by ca unless said otherwise:
#     a        DNS a.example, *.wild.example, f*.partial.example, x.*.inner.example,
#              *.tld (wildcard rules, positive and negative)
#     b        SAN: SRV-ID _xmpp-server.srv.example, XmppAddr addr.example,
#              DNS b.example; subject CN cn-ignored.example (a SAN exists, so
#              the CN must not count)
#     idn      XmppAddr bücher.example (UTF-8), DNS xn--bcher-kva.example
#     cn       no SAN, subject CN cn.example
#     c        DNS c.example: the outbound side's own (client) certificate
#     expired  DNS expired.example, validity in 2020
#     untrusted DNS untrusted.example, signed by other-ca
#     clientonly DNS clientonly.example, extendedKeyUsage clientAuth only
#     serveronly DNS serveronly.example, extendedKeyUsage serverAuth only
# Every leaf but clientonly/serveronly has EKU serverAuth + clientAuth (s2s
# peers act as both TLS client and server).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
D=$1
mkdir -p "$D"
cd "$D"

# openssl is chatty on stderr even when it succeeds: show it only on failure
q() { "$@" 2>.err || { echo "mkcerts.sh: failed: $*" >&2; cat .err >&2; exit 1; }; }
key() { q openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"; }

ca() {  # NAME CN
	key "$1"
	q openssl req -new -x509 -key "$1.key" -out "$1.pem" -days 3650 -subj "/CN=$2" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

leaf() {  # NAME CN EXTENSIONS [CA] [EXTRA-SECTIONS]
	name=$1 cn=$2 ext=$3 signer=${4:-ca}
	key "$name"
	q openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
	printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "$ext" "${5:-}" >"$name.ext"
	q openssl x509 -req -in "$name.csr" -CA "$signer.pem" -CAkey "$signer.key" -CAcreateserial \
		-days 825 -sha256 -extfile "$name.ext" -out "$name.pem"
	rm -f "$name.csr" "$name.ext"
}

BOTH="extendedKeyUsage=serverAuth,clientAuth"
ca ca "fedhub test CA"
ca other-ca "fedhub untrusted CA"
leaf a a.example "subjectAltName=DNS:a.example,DNS:*.wild.example,DNS:f*.partial.example,DNS:x.*.inner.example,DNS:*.tld
$BOTH"
leaf b cn-ignored.example "subjectAltName=otherName:1.3.6.1.5.5.7.8.7;IA5STRING:_xmpp-server.srv.example,otherName:1.3.6.1.5.5.7.8.5;UTF8:addr.example,DNS:b.example
$BOTH"
# the XmppAddr value is UTF-8 whatever the locale; in a section, as the
# FORMAT modifier's comma would end an inline SAN entry
U=$(printf 'b\303\274cher.example')
leaf idn idn.example "subjectAltName=@san
$BOTH" ca "[san]
otherName.1 = 1.3.6.1.5.5.7.8.5;FORMAT:UTF8,UTF8:$U
DNS.1 = xn--bcher-kva.example"
leaf cn cn.example "$BOTH"
leaf c c.example "subjectAltName=DNS:c.example
$BOTH"
leaf untrusted untrusted.example "subjectAltName=DNS:untrusted.example
$BOTH" other-ca
leaf clientonly clientonly.example "subjectAltName=DNS:clientonly.example
extendedKeyUsage=clientAuth"
leaf serveronly serveronly.example "subjectAltName=DNS:serveronly.example
extendedKeyUsage=serverAuth"

# Expired: `openssl x509` cannot back-date, `openssl ca` can.
key expired
q openssl req -new -key expired.key -subj "/CN=expired.example" -out expired.csr
mkdir -p cadb
: >cadb/index.txt
cat >cadb/ca.cnf <<EOF
[ca]
default_ca = t
[t]
database = cadb/index.txt
new_certs_dir = cadb
serial = cadb/serial
default_md = sha256
policy = p
copy_extensions = none
x509_extensions = x
[p]
commonName = supplied
[x]
basicConstraints = CA:FALSE
subjectAltName = DNS:expired.example
$BOTH
EOF
echo 1000 >cadb/serial
q openssl ca -batch -notext -config cadb/ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \
	-startdate 20200101000000Z -enddate 20200201000000Z
rm -rf cadb expired.csr ca.srl other-ca.srl .err
