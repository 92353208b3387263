#!/bin/bash
# t_hub_basic: fedhub on its own, no XMPP peer and no DNS needed.
#   - `fedhub -t` accepts the shipped router.conf and rejects a typo with FILE:LINE
#   - the daemon listens on its s2s, component and http ports and speaks XMPP there
#     (s2s stream header answered; XEP-0114 handshake accepted, a wrong one refused)
#   - GET /health is 200 with a JSON body, GET /metrics is Prometheus text
#   - SIGTERM and SIGINT make it exit 0 within 2 s
#   - `fedhub --check-xml` on a good stream and on two bad ones
# Ports 21469 (s2s), 21447 (component), 21480 (http): its own block, so it can
# run while the peer tests hold theirs.
# shellcheck disable=SC2034 # FH_NAME is read by lib/fhit.sh
FH_NAME=hub_basic
. "$(dirname "$0")/lib/fhit.sh"
fh_init 120

S2S=21469 COMP=21447 HTTP=21480
STOP_GRACE=${FHIT_STOP_GRACE:-2}
CASES="config_check_shipped_router_conf config_typo_rejected_with_line start_listens s2s_stream_header_answered
component_handshake_accepted component_bad_handshake_refused http_health_200_json http_metrics_prometheus
sigterm_exits_0_within_2s sigint_exits_0_within_2s check_xml_good_stream check_xml_bad_stream_not_well_formed
check_xml_bad_stream_restricted_xml"

fh_have_fedhub || fh_fail_all "no fedhub binary at $FH_BIN (run make)"

# config_case NAME CONF [LINE]: `fedhub -t -c CONF` passes ("configuration
# ok", exit 0), or, with LINE, fails naming CONF:LINE
config_case() {
	local out rc ok=1
	out=$(timeout 10 "$FH_BIN" -t -c "$2" 2>&1); rc=$?
	if [ -z "${3:-}" ]; then
		[ "$rc" -eq 0 ] && grep -qx "configuration ok" <<<"$out" && ok=0
	else
		[ "$rc" -ne 0 ] && grep -q "^$2:$3: " <<<"$out" && ! grep -q "configuration ok" <<<"$out" && ok=0
	fi
	if [ "$ok" -eq 0 ]; then fh_ok "$1"; else fh_fail "$1" "exit $rc: $(head -c 300 <<<"$out")"; fi
}

# ---- -t on the shipped config
config_case config_check_shipped_router_conf "$FH_REPO/router.conf"

# ---- -t on a typo: the error names the file and the line of the typo (line 4)
conf_typo=$FH_DIR/typo.conf
cat >"$conf_typo" <<EOF
# a config with one typo
[hub]
workers 1
lisen s2s 127.0.0.1:$S2S
EOF
config_case config_typo_rejected_with_line "$conf_typo" 4

# ---- the daemon
conf=$FH_DIR/hub.conf
cat >"$conf" <<EOF
[hub]
workers 2
domain hub.fhtest
listen s2s 127.0.0.1:$S2S tls optional
listen component 127.0.0.1:$COMP
http 127.0.0.1:$HTTP
dns_server 127.0.0.2:53
log_level debug
[component echo.fhtest]
secret s3cret
EOF

start_hub() {
	fh_spawn "$FH_DIR/fedhub-$1.log" "$FH_BIN" -c "$conf"
	HUB_PID=$FH_LAST
	fh_wait_ports 10 "$HUB_PID" "$S2S" "$COMP" "$HTTP"
}

if start_hub 1; then
	fh_ok start_listens
else
	fh_fail start_listens "not listening on $S2S/$COMP/$HTTP; log: $(tail -5 "$FH_DIR/fedhub-1.log" | tr '\n' ' ')"
fi

# s2s: an inbound stream header is answered with the hub's own header and features.
cat >"$FH_DIR/s2s-in.xml" <<'EOF'
<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='pro.fhtest' to='echo.fhtest' version='1.0'>
EOF
reply=$(fh_xmpp_exchange "$S2S" 3 "$FH_DIR/s2s-in.xml")
if grep -q "<stream:stream" <<<"$reply" && grep -q "jabber:server" <<<"$reply" && grep -q "features" <<<"$reply"; then
	fh_ok s2s_stream_header_answered
else
	fh_fail s2s_stream_header_answered "reply: $(head -c 300 <<<"$reply")"
fi

# component: XEP-0114 handshake, sha1(stream id + secret), right and wrong.
handshake() {
	/usr/bin/python3 - "$COMP" "$1" <<'EOF'
import hashlib, re, socket, sys
port, secret = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), 3)
s.settimeout(3)
s.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='echo.fhtest'>")
buf = b""
try:
    while not re.search(rb"<stream:stream[^>]*\sid=['\"]([^'\"]+)['\"][^>]*>", buf):
        d = s.recv(4096)
        if not d:
            break
        buf += d
    m = re.search(rb"<stream:stream[^>]*\sid=['\"]([^'\"]+)['\"]", buf)
    if not m:
        print("no stream id in %r" % buf)
        sys.exit(0)
    digest = hashlib.sha1(m.group(1) + secret.encode()).hexdigest()
    s.sendall(b"<handshake>%s</handshake>" % digest.encode())
    rest = b""
    while b"handshake" not in rest and b"</stream:stream>" not in rest and b"stream:error" not in rest:
        d = s.recv(4096)
        if not d:
            break
        rest += d
    print(rest.decode("utf-8", "replace"))
except socket.timeout:
    print("timeout after %r" % buf)
EOF
}
reply=$(timeout 10 bash -c "$(declare -f handshake); COMP=$COMP handshake s3cret")
if grep -qE "<handshake */>|<handshake></handshake>" <<<"$reply"; then
	fh_ok component_handshake_accepted
else
	fh_fail component_handshake_accepted "reply: $(head -c 300 <<<"$reply")"
fi
reply=$(timeout 10 bash -c "$(declare -f handshake); COMP=$COMP handshake wrong-secret")
if grep -q "not-authorized" <<<"$reply"; then
	fh_ok component_bad_handshake_refused
else
	fh_fail component_bad_handshake_refused "reply: $(head -c 300 <<<"$reply")"
fi

# http
body=$(curl -s -m 5 -o "$FH_DIR/health" -w '%{http_code}' "http://127.0.0.1:$HTTP/health")
if [ "$body" = 200 ] && /usr/bin/python3 -m json.tool "$FH_DIR/health" >/dev/null 2>&1; then
	fh_ok http_health_200_json
else
	fh_fail http_health_200_json "status $body: $(head -c 200 "$FH_DIR/health" 2>/dev/null)"
fi
code=$(curl -s -m 5 -o "$FH_DIR/metrics" -w '%{http_code}' "http://127.0.0.1:$HTTP/metrics")
if [ "$code" = 200 ] && grep -qE '^# TYPE fedhub_[a-z0-9_]+ (counter|gauge|histogram)' "$FH_DIR/metrics" &&
	grep -qE '^fedhub_[a-z0-9_]+(\{[^}]*\})? [0-9]' "$FH_DIR/metrics"; then
	fh_ok http_metrics_prometheus
else
	fh_fail http_metrics_prometheus "status $code: $(head -c 200 "$FH_DIR/metrics" 2>/dev/null)"
fi

# ---- clean exit on SIGTERM, then on SIGINT
stop_case() { # NAME SIGNAL
	if ! kill -0 "$HUB_PID" 2>/dev/null; then
		fh_fail "$1" "fedhub is not running"
		return
	fi
	kill -"$2" "$HUB_PID"
	if fh_wait_exit "$HUB_PID" "$STOP_GRACE"; then
		if [ "$FH_RC" -eq 0 ]; then fh_ok "$1"; else fh_fail "$1" "exit status $FH_RC"; fi
	else
		kill -KILL "$HUB_PID" 2>/dev/null
		fh_fail "$1" "still running ${STOP_GRACE} s after SIG$2"
	fi
}
stop_case sigterm_exits_0_within_2s TERM
if start_hub 2; then
	stop_case sigint_exits_0_within_2s INT
else
	fh_fail sigint_exits_0_within_2s "restart failed: $(tail -3 "$FH_DIR/fedhub-2.log" | tr '\n' ' ')"
fi

# ---- --check-xml
HDR="<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='pro.fhtest' to='echo.fhtest' version='1.0'>"
good=$FH_DIR/good.xml
printf '%s' "$HDR" >"$good"
printf '%s' "<message from='a@pro.fhtest' to='bot@echo.fhtest' type='chat'><body>caf&#xE9; &amp; &lt;tea&gt;</body></message>" >>"$good"
printf '%s' "<iq type='get' id='1' from='pro.fhtest' to='hub.fhtest'><ping xmlns='urn:xmpp:ping'/></iq>" >>"$good"
printf '%s' "<presence from='a@pro.fhtest/r' to='bot@echo.fhtest'/></stream:stream>" >>"$good"
out=$(timeout 10 "$FH_BIN" --check-xml "$good" 2>&1); rc=$?
if [ "$rc" -eq 0 ] && grep -qx "ok 3 stanzas" <<<"$out"; then
	fh_ok check_xml_good_stream
else
	fh_fail check_xml_good_stream "exit $rc: $(head -c 200 <<<"$out")"
fi

# check_bad NAME CONDITION PREFIX BADTOKEN: the stream is HDR + PREFIX + BADTOKEN + more;
# fedhub must name CONDITION at a byte offset inside BADTOKEN (0- or 1-based, start or end).
check_bad() {
	local f=$FH_DIR/$1.xml
	printf '%s%s%s' "$HDR" "$3" "$4" >"$f"
	printf '%s' "<message to='bot@echo.fhtest'><body>after</body></message></stream:stream>" >>"$f"
	local lo=$(( $(printf '%s%s' "$HDR" "$3" | wc -c) ))
	local hi=$((lo + $(printf '%s' "$4" | wc -c) + 1))
	out=$(timeout 10 "$FH_BIN" --check-xml "$f" 2>&1); rc=$?
	local at
	at=$(sed -nE "s/^error $2 at byte ([0-9]+)\$/\1/p" <<<"$out" | head -1)
	if [ "$rc" -ne 0 ] && [ -n "$at" ] && [ "$at" -ge "$lo" ] && [ "$at" -le "$hi" ]; then
		fh_ok "$1"
	else
		fh_fail "$1" "exit $rc, want 'error $2 at byte $lo..$hi': $(head -c 200 <<<"$out")"
	fi
}
check_bad check_xml_bad_stream_not_well_formed not-well-formed \
	"<message to='bot@echo.fhtest'><body>hi" "</message>"
check_bad check_xml_bad_stream_restricted_xml restricted-xml \
	"<message to='bot@echo.fhtest'><body>hi</body></message>" "<!-- a comment -->"

fh_done
