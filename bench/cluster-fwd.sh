#!/bin/bash
# bench/cluster-fwd.sh — hub CPU per stanza on the forwarded cluster path
# against the direct one, with fedhub-bench:
#
#   forwarded: bench s2s links -> node A -> node link -> node B -> bench component
#   direct:    bench s2s links -> hub D -> bench component
#
# Each hub runs one worker. fedhub-bench writes BURST stanzas at once over
# 4 dialback links (the burst scenario: every stanza is accounted, delivered +
# bounced == sent), or, with RATE set, sends open loop at RATE stanzas/s for
# SECONDS. The hubs' CPU (utime + stime from /proc, all threads) is taken
# from just before the bench starts to just after it ends, so it includes
# the four links' set-up (a few dialback exchanges), and divided by the
# stanzas delivered. A and B find each other and B's component through a
# redis-server started here (the cluster registry). Ports: 27140-27143 (A),
# 27160-27163 (B), 27170-27172 (D), 27180 (the bench's dialback listener),
# 27189 (Redis).
#
#   bench/cluster-fwd.sh                 # burst of 300000
#   BURST=500000 bench/cluster-fwd.sh
#   RATE=50000 SECONDS_RUN=10 bench/cluster-fwd.sh
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FEDHUB=${FEDHUB:-$ROOT/fedhub}
BENCH=${BENCH:-$ROOT/fedhub-bench}
BURST=${BURST:-300000}
RATE=${RATE:-}
SECONDS_RUN=${SECONDS_RUN:-10}
SIZE=${SIZE:-300}
TMP=$(mktemp -d /tmp/fh-clfwd-XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "${KEEP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT

conf() { # s2s comp http [node_id node_port]
	cat <<EOF
[hub]
workers 1
domain hub.fhb
listen s2s 127.0.0.1:$1
listen component 127.0.0.1:$2
http 127.0.0.1:$3
log_level warn
[component comp.fhb]
secret s3cret
EOF
	for i in 1 2 3 4; do printf '[route bench%d.fhb]\nconnect 127.0.0.1:27180\n' "$i"; done
	[ -n "${4:-}" ] && printf '[cluster]\nredis 127.0.0.1:27189\nnode_id %s\nnode_listen 127.0.0.1:%s\ncluster_secret_file %s\n' \
		"$4" "$5" "$TMP/cluster.key"
	return 0
}

cpu() { # utime+stime of a process in clock ticks
	awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

start() { # var name s2s comp http [node_id node_port]: the pid in $var
	conf "$3" "$4" "$5" "${6:-}" "${7:-}" >"$TMP/$2.conf"
	"$FEDHUB" -c "$TMP/$2.conf" >"$TMP/$2.log" 2>&1 &
	PIDS+=($!)
	printf -v "$1" %d $!
}

wait_port() {
	for _ in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "port $1 never opened" >&2
	exit 1
}

run_bench() { # s2s comp label
	local load=(burst --burst "$BURST")
	[ -n "$RATE" ] && load=(s2s-component --rate "$RATE" --seconds "$SECONDS_RUN" --warmup 1)
	"$BENCH" "${load[@]}" --target-s2s 127.0.0.1:"$1" --target-comp 127.0.0.1:"$2" --listen 127.0.0.1:27180 \
		--links 4 --domains 4 --components 1 --size "$SIZE" --quiet >"$TMP/$3.out" 2>&1
	local rc=$?
	grep -E "^(stanzas|throughput)" "$TMP/$3.out" | sed "s/^/$3: /"
	return $rc
}

delivered() { sed -n 's/^stanzas .* delivered \([0-9]*\).*/\1/p' "$TMP/$1.out"; }

# direct
start D d 27170 27171 27172
wait_port 27170
c0=$(cpu "$D")
run_bench 27170 27171 direct || { cat "$TMP/direct.out"; exit 1; }
c1=$(cpu "$D")
kill "$D"
wait "$D" 2>/dev/null
nd=$(delivered direct)

# forwarded: the component is on B only
umask 077
echo "bench-cluster-secret-0123456789abcdef" >"$TMP/cluster.key"
redis-server --port 27189 --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait_port 27189
start A a 27140 27141 27142 a 27143
start B b 27160 27161 27162 b 27163
wait_port 27140
wait_port 27160
wait_port 27143
wait_port 27163
a0=$(cpu "$A")
b0=$(cpu "$B")
run_bench 27140 27161 forwarded || { cat "$TMP/forwarded.out"; exit 1; }
a1=$(cpu "$A")
b1=$(cpu "$B")
nf=$(delivered forwarded)
tck=$(getconf CLK_TCK)
awk -v d=$((c1 - c0)) -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v nd="$nd" -v nf="$nf" -v t="$tck" 'BEGIN {
	ud = d / t * 1e6 / nd; ua = a / t * 1e6 / nf; ub = b / t * 1e6 / nf
	printf "direct     hub D  %.2f s CPU, %d stanzas: %.3f us/stanza\n", d / t, nd, ud
	printf "forwarded  node A %.2f s, node B %.2f s, %d stanzas: A %.3f + B %.3f = %.3f us/stanza\n", a / t, b / t, nf, ua, ub, ua + ub
	printf "forwarding adds %.3f us/stanza (A + B - D)\n", ua + ub - ud
}'
