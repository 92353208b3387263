#!/bin/bash
# t_signals: how the fedhub process behaves towards signals, systemd and a
# second instance.
#   - SIGHUP, SIGUSR1 and SIGUSR2 do not stop the hub: SIGHUP reloads the
#     configuration (t_reload covers what a reload changes); components connected before still route to each
#     other, a new connection routes too, and SIGTERM then exits 0
#   - under systemd's notify protocol (NOTIFY_SOCKET) it sends READY=1 once
#     it listens and STOPPING=1 when it stops
#   - a second fedhub on the same addresses refuses to start, naming the
#     address; with --takeover it shares them, and after SIGTERM to the first
#     one the second carries on serving the port
# Ports 26447 (component), 26469 (s2s), 26480 (http).
# shellcheck disable=SC2034 # FH_NAME is read by lib/fhit.sh
FH_NAME=signals
. "$(dirname "$0")/lib/fhit.sh"
fh_init 90

COMP=26447 S2S=26469 HTTP=26480
CASES="start_listens sd_notify_ready sighup_reloads_configuration hub_survives_hup_usr1_usr2
existing_links_route_after_signals new_connection_routes_after_signals sigterm_after_hup_exits_0
sd_notify_stopping second_instance_refused takeover_starts_beside takeover_serves_after_old_stops
takeover_exits_0"
fh_have_fedhub || fh_fail_all "no fedhub binary at $FH_BIN (run make)"

conf=$FH_DIR/hub.conf
cat >"$conf" <<EOF
[hub]
workers 2
domain hub.fhsig
listen s2s 127.0.0.1:$S2S tls optional
listen component 127.0.0.1:$COMP
http 127.0.0.1:$HTTP
[component a.fhsig]
secret s3cret
[component b.fhsig]
secret s3cret
[component c.fhsig]
secret s3cret
EOF

# XEP-0114 components: connect a and b, signal the hub (HUPs as given), then
# route a -> b over the links made before, and a -> c over a new one.
cat >"$FH_DIR/comps.py" <<'EOF'
import hashlib, os, re, signal, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])

def comp(name):
    s = socket.create_connection(("127.0.0.1", port), 3)
    s.settimeout(3)
    s.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
              b"xmlns:stream='http://etherx.jabber.org/streams' to='%s'>" % name.encode())
    buf = b""
    while not re.search(rb"<stream:stream[^>]*\sid=['\"]([^'\"]+)['\"][^>]*>", buf):
        d = s.recv(4096)
        if not d:
            raise RuntimeError("%s: closed before the stream header: %r" % (name, buf))
        buf += d
    sid = re.search(rb"<stream:stream[^>]*\sid=['\"]([^'\"]+)['\"]", buf).group(1)
    s.sendall(b"<handshake>%s</handshake>" % hashlib.sha1(sid + b"s3cret").hexdigest().encode())
    buf = b""
    while not re.search(rb"<handshake\s*/>|<handshake></handshake>", buf):
        d = s.recv(4096)
        if not d or b"stream:error" in buf:
            raise RuntimeError("%s: handshake refused: %r" % (name, buf))
        buf += d
    return s

def routes(src, dst, frm, to, tag):
    src.sendall(("<message from='x@%s' to='y@%s' id='%s'><body>%s</body></message>" % (frm, to, tag, tag)).encode())
    buf, end = b"", time.time() + 3
    while tag.encode() not in buf and time.time() < end:
        try:
            d = dst.recv(4096)
        except socket.timeout:
            break
        if not d:
            break
        buf += d
    return tag.encode() in buf

try:
    a, b = comp("a.fhsig"), comp("b.fhsig")
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
        os.kill(pid, sig)
        time.sleep(0.1)
    time.sleep(0.5)
    print("existing" if routes(a, b, "a.fhsig", "b.fhsig", "m1") else "existing-failed")
    c = comp("c.fhsig")
    print("new" if routes(a, c, "a.fhsig", "c.fhsig", "m2") else "new-failed")
except Exception as e:
    print("error %s" % e)
EOF

# A notify socket, as systemd gives a Type=notify service: records each datagram.
cat >"$FH_DIR/notify.py" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(1)
end = time.time() + float(sys.argv[3])
with open(sys.argv[2], "a") as out:
    while time.time() < end:
        try:
            d = s.recv(4096).decode("utf-8", "replace")
        except socket.timeout:
            continue
        out.write(d.replace("\n", " ") + "\n")
        out.flush()
        if "STOPPING=1" in d:
            break
EOF
NSOCK=$FH_DIR/notify.sock NLOG=$FH_DIR/notify.log
: >"$NLOG"
fh_spawn "$FH_DIR/notify.out" /usr/bin/python3 "$FH_DIR/notify.py" "$NSOCK" "$NLOG" 60
for _ in $(seq 50); do [ -S "$NSOCK" ] && break; sleep 0.1; done

fh_spawn "$FH_DIR/hub1.log" env NOTIFY_SOCKET="$NSOCK" "$FH_BIN" -c "$conf"
HUB=$FH_LAST
if fh_wait_ports 10 "$HUB" "$COMP" "$S2S" "$HTTP"; then
	fh_ok start_listens
else
	fh_fail start_listens "log: $(tail -5 "$FH_DIR/hub1.log" | tr '\n' ' ')"
fi
for _ in $(seq 30); do grep -q "READY=1" "$NLOG" && break; sleep 0.1; done
if grep -q "READY=1" "$NLOG"; then fh_ok sd_notify_ready; else fh_fail sd_notify_ready "notify log: $(cat "$NLOG")"; fi

out=$(timeout 20 /usr/bin/python3 "$FH_DIR/comps.py" "$COMP" "$HUB" 2>&1)
if grep -q "reload (SIGHUP): reading" "$FH_DIR/hub1.log" && grep -q "reload: done" "$FH_DIR/hub1.log"; then
	fh_ok sighup_reloads_configuration
else
	fh_fail sighup_reloads_configuration "log: $(tail -5 "$FH_DIR/hub1.log" | tr '\n' ' ')"
fi
if kill -0 "$HUB" 2>/dev/null && fh_port_open "$COMP"; then
	fh_ok hub_survives_hup_usr1_usr2
else
	fh_fail hub_survives_hup_usr1_usr2 "not running after the signals: $(tail -3 "$FH_DIR/hub1.log" | tr '\n' ' ')"
fi
if grep -qx existing <<<"$out"; then fh_ok existing_links_route_after_signals; else
	fh_fail existing_links_route_after_signals "$(tr '\n' ' ' <<<"$out")"; fi
if grep -qx new <<<"$out"; then fh_ok new_connection_routes_after_signals; else
	fh_fail new_connection_routes_after_signals "$(tr '\n' ' ' <<<"$out")"; fi

# ---- a second instance on the same addresses
out=$(timeout 10 "$FH_BIN" -c "$conf" 2>&1); rc=$?
if [ "$rc" -eq 1 ] && grep -q "listen component 127.0.0.1:$COMP: address already in use" <<<"$out" &&
	grep -q "http 127.0.0.1:$HTTP: address already in use" <<<"$out" && kill -0 "$HUB" 2>/dev/null; then
	fh_ok second_instance_refused
else
	fh_fail second_instance_refused "exit $rc: $(head -c 400 <<<"$out" | tr '\n' '|')"
fi
fh_spawn "$FH_DIR/hub2.log" "$FH_BIN" --takeover -c "$conf"
HUB2=$FH_LAST
for _ in $(seq 100); do grep -q "fedhub running" "$FH_DIR/hub2.log" && break; kill -0 "$HUB2" 2>/dev/null || break; sleep 0.1; done
if grep -q "fedhub running" "$FH_DIR/hub2.log" && kill -0 "$HUB2" 2>/dev/null; then
	fh_ok takeover_starts_beside
else
	fh_fail takeover_starts_beside "log: $(tail -5 "$FH_DIR/hub2.log" | tr '\n' ' ')"
fi

# ---- the first one stops (SIGTERM after the HUPs): exit 0, STOPPING=1
kill -TERM "$HUB"
if fh_wait_exit "$HUB" 5 && [ "$FH_RC" -eq 0 ]; then
	fh_ok sigterm_after_hup_exits_0
else
	fh_fail sigterm_after_hup_exits_0 "exit ${FH_RC:-none}: $(tail -3 "$FH_DIR/hub1.log" | tr '\n' ' ')"
fi
for _ in $(seq 30); do grep -q "STOPPING=1" "$NLOG" && break; sleep 0.1; done
if grep -q "STOPPING=1" "$NLOG"; then fh_ok sd_notify_stopping; else fh_fail sd_notify_stopping "notify log: $(cat "$NLOG")"; fi

# the port is still served, by the second one alone now
out=$(timeout 20 /usr/bin/python3 "$FH_DIR/comps.py" "$COMP" "$HUB2" 2>&1)
code=$(curl -s -m 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP/health")
if grep -qx existing <<<"$out" && grep -qx new <<<"$out" && [ "$code" = 200 ]; then
	fh_ok takeover_serves_after_old_stops
else
	fh_fail takeover_serves_after_old_stops "health $code; $(tr '\n' ' ' <<<"$out")"
fi
kill -TERM "$HUB2"
if fh_wait_exit "$HUB2" 5 && [ "$FH_RC" -eq 0 ]; then fh_ok takeover_exits_0; else
	fh_fail takeover_exits_0 "exit ${FH_RC:-none}"; fi
fh_done
