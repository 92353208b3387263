#!/bin/bash
# t_emfile: fedhub out of file descriptors.
#   - at start it logs its descriptor limit (raised to the hard limit)
#   - under `ulimit -n 64`, more connections than it may accept: it logs the
#     failure (with a count, at most about once a second), pauses accepting
#     instead of spinning (its CPU over ~2 s stays low), and keeps running
#   - once the connections are closed, it accepts and serves a stream again
# Ports 21569 (s2s): its own.
# shellcheck disable=SC2034 # FH_NAME is read by lib/fhit.sh
FH_NAME=emfile
. "$(dirname "$0")/lib/fhit.sh"
fh_init 90

S2S=21569
NOFILE=64
CONNS=150
CASES="start_logs_fd_limit accept_failure_logged log_rate_limited cpu_low_while_out_of_fds still_running
accepts_again_after_close"

fh_have_fedhub || fh_fail_all "no fedhub binary at $FH_BIN (run make)"

conf=$FH_DIR/hub.conf
cat >"$conf" <<EOF
[hub]
workers 1
domain hub.fhtest
listen s2s 127.0.0.1:$S2S tls optional
dns_server 127.0.0.2:53
[component echo.fhtest]
secret s3cret
EOF

log=$FH_DIR/fedhub.log
# ulimit -n sets the soft and the hard limit: fedhub cannot raise it
fh_spawn "$log" bash -c 'ulimit -n '"$NOFILE"' && exec "$@"' _ "$FH_BIN" -c "$conf"
HUB=$FH_LAST
if ! fh_wait_ports 10 "$HUB" "$S2S"; then
	for c in $CASES; do fh_fail "$c" "fedhub did not start: $(tail -3 "$log" | tr '\n' ' ')"; done
	fh_done
fi

if grep -q "file descriptors: up to $NOFILE " "$log"; then
	fh_ok start_logs_fd_limit
else
	fh_fail start_logs_fd_limit "no 'file descriptors: up to $NOFILE' line"
fi

# Hold CONNS connections open until $FH_DIR/release appears.
holder() {
	python3 - "$S2S" "$CONNS" "$FH_DIR" <<'EOF'
import os, socket, sys, time
port, n, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for _ in range(n):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        break  # the backlog is full: enough
    socks.append(s)
open(os.path.join(d, "opened"), "w").write(str(len(socks)))
end = time.time() + 40
while not os.path.exists(os.path.join(d, "release")) and time.time() < end:
    time.sleep(0.05)
for s in socks:
    s.close()
EOF
}
holder &
HOLDER=$!
FH_PIDS+=("$HOLDER")
for _ in $(seq 100); do [ -e "$FH_DIR/opened" ] && break; sleep 0.1; done
fh_log "holder opened $(cat "$FH_DIR/opened" 2>/dev/null) connections"

pat='accept: Too many open files'
for _ in $(seq 50); do grep -q "$pat" "$log" && break; sleep 0.1; done
if grep -q "$pat.*since the last report" "$log"; then
	fh_ok accept_failure_logged
else
	fh_fail accept_failure_logged "no '$pat' line; log: $(tail -3 "$log" | tr '\n' ' ')"
fi

# CPU of the hub over 2 s, from /proc/PID/stat (utime + stime, in clock ticks)
ticks() { awk '{print $14 + $15}' "/proc/$HUB/stat"; }
hz=$(getconf CLK_TCK)
l0=$(grep -c "$pat" "$log")
t0=$(ticks)
sleep 2
t1=$(ticks)
l1=$(grep -c "$pat" "$log")
cpu=$(((t1 - t0) * 100 / (2 * hz)))
fh_log "hub CPU while out of descriptors: ${cpu}% of a core; $((l1 - l0)) log lines in 2 s"
if [ "$cpu" -le 15 ]; then
	fh_ok cpu_low_while_out_of_fds
else
	fh_fail cpu_low_while_out_of_fds "${cpu}% of a core over 2 s"
fi
if [ $((l1 - l0)) -le 3 ]; then
	fh_ok log_rate_limited
else
	fh_fail log_rate_limited "$((l1 - l0)) lines in 2 s"
fi
if kill -0 "$HUB" 2>/dev/null; then
	fh_ok still_running
else
	fh_fail still_running "fedhub exited: $(tail -3 "$log" | tr '\n' ' ')"
fi

touch "$FH_DIR/release"
wait "$HOLDER" 2>/dev/null

# A new stream is answered once descriptors are free again (the hub first
# accepts and closes the connections that waited in its backlog).
cat >"$FH_DIR/s2s-in.xml" <<'EOF'
<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='pro.fhtest' to='echo.fhtest' version='1.0'>
EOF
ok=0
for _ in 1 2 3 4 5; do
	out=$(fh_xmpp_exchange "$S2S" 2 "$FH_DIR/s2s-in.xml")
	if grep -q "<stream:stream" <<<"$out"; then
		ok=1
		break
	fi
	sleep 0.5
done
if [ "$ok" = 1 ]; then
	fh_ok accepts_again_after_close
else
	fh_fail accepts_again_after_close "no stream header back; log: $(tail -3 "$log" | tr '\n' ' ')"
fi
fh_done
