#!/bin/bash
# t_config_check: `fedhub -t` proves a configuration will start, and start-up
# refuses what -t refuses. Certificates are made here with openssl (a test CA
# signs each, with the validity dates the case needs):
#   - a good configuration (cert + key, a wildcard, a cert and key in one
#     file, ca_file) passes; a certificate expiring within 30 days is a warning
#   - expired, not yet valid, wrong name, key of another certificate, junk
#     cert, cert without its key, junk key, junk ca_file: exit 1 and a
#     FILE:LINE message naming the file
#   - overlapping listeners (0.0.0.0:P beside 127.0.0.1:P, the same address
#     twice, http on a listener's port, [::]:P beside another kind on v4):
#     exit 1 naming both; the dual-stack pair [::]:P + 0.0.0.0:P passes
#   - the daemon itself (no -t) refuses an expired certificate with the
#     same message, and names the address it cannot bind
# Ports 26269, 26270, 26347, 26280 (bound only by the start-up cases).
# shellcheck disable=SC2034 # FH_NAME is read by lib/fhit.sh
FH_NAME=config_check
. "$(dirname "$0")/lib/fhit.sh"
fh_init 120

CASES="good_config_passes expiring_soon_warns expired_cert_refused not_yet_valid_cert_refused
wrong_name_refused mismatched_key_refused junk_cert_refused cert_without_key_refused junk_key_refused
junk_ca_file_refused listen_wildcard_and_specific_refused listen_same_address_twice_refused
http_on_listener_port_refused v6_wildcard_beside_other_v4_kind_refused dual_stack_pair_passes
startup_refuses_expired_cert startup_names_unbindable_address"
if ! fh_have_fedhub || ! command -v openssl >/dev/null; then
	fh_fail_all "no fedhub binary at $FH_BIN (run make) or no openssl"
fi

D=$FH_DIR
ts() { date -u -d "$1" +%Y%m%d%H%M%SZ; }

# ---- a test CA, and certificates signed by it
mkdir -p "$D/ca/newcerts"
: >"$D/ca/index.txt"
echo 1000 >"$D/ca/serial"
cat >"$D/ca/ca.cnf" <<EOF
[ca]
default_ca = fh
[fh]
dir = $D/ca
database = $D/ca/index.txt
new_certs_dir = $D/ca/newcerts
serial = $D/ca/serial
default_md = sha256
policy = anything
unique_subject = no
[anything]
commonName = supplied
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/ca.key" -out "$D/ca.pem" \
	-days 3650 -subj /CN=fhtest-ca 2>/dev/null

# mkcert NAME SAN START END: NAME.pem (signed by the CA) and NAME.key
mkcert() {
	local n=$1
	printf 'subjectAltName = %s\nbasicConstraints = CA:FALSE\n' "$2" >"$D/$n.ext"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/$n.key" \
		-out "$D/$n.csr" -subj "/CN=${2#DNS:}" 2>/dev/null &&
		openssl ca -batch -config "$D/ca/ca.cnf" -cert "$D/ca.pem" -keyfile "$D/ca.key" -in "$D/$n.csr" \
			-out "$D/$n.pem" -notext -startdate "$3" -enddate "$4" -extfile "$D/$n.ext" >/dev/null 2>&1
}
NOW=$(ts '-1 hour') YEAR=$(ts '+1 year')
mkcert good DNS:good.fhcheck "$NOW" "$YEAR"
mkcert wild 'DNS:*.wild.fhcheck' "$NOW" "$YEAR"
mkcert soon DNS:soon.fhcheck "$NOW" "$(ts '+10 days')"
mkcert expired DNS:good.fhcheck "$(ts '-2 years')" "$(ts '-1 year')"
mkcert future DNS:good.fhcheck "$(ts '+1 year')" "$(ts '+2 years')"
mkcert other DNS:other.fhcheck "$NOW" "$YEAR"
cat "$D/wild.pem" "$D/wild.key" >"$D/wild-both.pem"
echo "this is not a certificate" >"$D/junk.pem"
printf -- '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n' >"$D/junkder.pem"
echo "not a key either" >"$D/junk.key"
for f in good wild soon expired future other; do
	[ -s "$D/$f.pem" ] || fh_log "openssl did not make $f.pem"
done

# conf NAME BODY: a configuration with listeners on loopback and BODY after [hub]
conf() {
	cat >"$D/$1.conf" <<EOF
[hub]
workers 1
domain hub.fhcheck
listen s2s 127.0.0.1:26269
listen component 127.0.0.1:26347
$2
EOF
}

# expect_ok CASE NAME [GREP]: -t passes (and the output matches GREP)
expect_ok() {
	local out rc
	out=$(timeout 10 "$FH_BIN" -t -c "$D/$2.conf" 2>&1); rc=$?
	if [ "$rc" -eq 0 ] && grep -qx "configuration ok" <<<"$out" && { [ -z "$3" ] || grep -qE -- "$3" <<<"$out"; }; then
		fh_ok "$1"
	else
		fh_fail "$1" "exit $rc: $(head -c 400 <<<"$out" | tr '\n' '|')"
	fi
}
# expect_err CASE NAME LINE REGEX: -t exits 1 with "NAME.conf:LINE: ..." matching REGEX
expect_err() {
	local out rc
	out=$(timeout 10 "$FH_BIN" -t -c "$D/$2.conf" 2>&1); rc=$?
	if [ "$rc" -eq 1 ] && grep -qE -- "^$D/$2.conf:$3: .*$4" <<<"$out" && ! grep -q "configuration ok" <<<"$out"; then
		fh_ok "$1"
	else
		fh_fail "$1" "exit $rc: $(head -c 400 <<<"$out" | tr '\n' '|')"
	fi
}

conf good "ca_file $D/ca.pem
http 127.0.0.1:26280
[domain good.fhcheck]
cert $D/good.pem
key $D/good.key
[domain a.wild.fhcheck]
cert $D/wild-both.pem"
expect_ok good_config_passes good

conf soon "[domain soon.fhcheck]
cert $D/soon.pem
key $D/soon.key"
expect_ok expiring_soon_warns soon "^$D/soon.conf:7: warning: .*cert $D/soon.pem: .*expires within 30 days"

# the [domain] opens on line 6, its cert on 7, its key on 8
dom() { conf "$1" "[domain ${4:-good.fhcheck}]
cert $2
${3:+key $3}"; }
dom expired "$D/expired.pem" "$D/expired.key"
expect_err expired_cert_refused expired 7 "cert $D/expired.pem: certificate has expired"
dom future "$D/future.pem" "$D/future.key"
expect_err not_yet_valid_cert_refused future 7 "cert $D/future.pem: certificate is not valid yet"
dom wrongname "$D/other.pem" "$D/other.key"
expect_err wrong_name_refused wrongname 7 "cert $D/other.pem does not cover good.fhcheck \(it names: other.fhcheck\)"
dom mismatch "$D/good.pem" "$D/other.key"
expect_err mismatched_key_refused mismatch 8 "key $D/other.key does not match the certificate in $D/good.pem"
dom junkcert "$D/junk.pem" "$D/good.key"
dom junkder "$D/junkder.pem" "$D/good.key"
out=$(timeout 10 "$FH_BIN" -t -c "$D/junkder.conf" 2>&1); rc=$?
if [ "$rc" -eq 1 ] && grep -qE "^$D/junkder.conf:7: .*cert $D/junkder.pem: certificate 1 does not parse" <<<"$out"; then
	expect_err junk_cert_refused junkcert 7 "cert $D/junk.pem: no PEM certificate in it"
else
	fh_fail junk_cert_refused "a PEM block of junk: exit $rc: $(head -c 300 <<<"$out" | tr '\n' '|')"
fi
dom nokey "$D/good.pem"
expect_err cert_without_key_refused nokey 7 "cert $D/good.pem holds no private key"
dom junkkey "$D/good.pem" "$D/junk.key"
expect_err junk_key_refused junkkey 8 "key $D/junk.key: no PEM private key in it"
conf junkca "ca_file $D/junk.pem"
expect_err junk_ca_file_refused junkca 6 "ca_file $D/junk.pem: no PEM certificate in it"

# ---- listeners: line 4 is s2s 127.0.0.1:26269, line 5 component 127.0.0.1:26347
conf wildspec "listen s2s 0.0.0.0:26269"
expect_err listen_wildcard_and_specific_refused wildspec 6 \
	"listen s2s 0.0.0.0:26269 overlaps listen s2s 127.0.0.1:26269 \(line 4\)"
conf twice "listen s2s-tls 127.0.0.1:26347"
expect_err listen_same_address_twice_refused twice 6 "127\.0\.0\.1:26347 (is already used|overlaps)"
conf httpport "http 127.0.0.1:26269"
expect_err http_on_listener_port_refused httpport 6 "http 127.0.0.1:26269 overlaps listen s2s 127.0.0.1:26269 \(line 4\)"
conf v6other "listen s2s [::]:26347"
expect_err v6_wildcard_beside_other_v4_kind_refused v6other 6 \
	"listen s2s \[::\]:26347 overlaps listen component 127.0.0.1:26347 \(line 5\)"
cat >"$D/dual.conf" <<EOF
[hub]
workers 1
listen s2s 0.0.0.0:26269 tls optional
listen s2s [::]:26269 tls optional
listen component 127.0.0.1:26347
EOF
if [ -e /proc/net/if_inet6 ]; then
	expect_ok dual_stack_pair_passes dual
else
	fh_ok "dual_stack_pair_passes # SKIP no IPv6 on this host"
fi

# ---- the daemon refuses what -t refuses, before binding anything
out=$(timeout 10 "$FH_BIN" -c "$D/expired.conf" 2>&1); rc=$?
if [ "$rc" -eq 1 ] && grep -qE "^$D/expired.conf:7: .*cert $D/expired.pem: certificate has expired" <<<"$out" &&
	! fh_port_open 26269; then
	fh_ok startup_refuses_expired_cert
else
	fh_fail startup_refuses_expired_cert "exit $rc: $(head -c 300 <<<"$out" | tr '\n' '|')"
fi
# 192.0.2.1 (TEST-NET-1) is on no interface here: the address is named
conf unbindable "listen s2s 192.0.2.1:26270 tls optional"
out=$(timeout 10 "$FH_BIN" -c "$D/unbindable.conf" 2>&1); rc=$?
if [ "$rc" -eq 1 ] && grep -qE "^$D/unbindable.conf:6: listen s2s 192.0.2.1:26270: cannot bind: " <<<"$out"; then
	fh_ok startup_names_unbindable_address
else
	fh_fail startup_names_unbindable_address "exit $rc: $(head -c 300 <<<"$out" | tr '\n' '|')"
fi

fh_done
