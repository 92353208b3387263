#!/bin/bash
# bench/cluster-fwd.sh — a single node against a two-node cluster, with
# fedhub-bench: stanzas/s and hub CPU per stanza, the forwarded path's extra
# CPU per stanza, and the Redis operations per node at rest and under load.
#
#   direct:    bench s2s links -> hub D -> bench component
#   forwarded: bench s2s links -> node A -> node link -> node B -> bench component
#
# Each hub runs one worker. Two loads, each against D and then against A+B:
#   burst  fedhub-bench writes BURST stanzas at once over 4 dialback links (every
#          stanza accounted: delivered + bounced == sent): the maximum rate;
#   rates  open loop at each of RATES (stanzas/s) for SECONDS_RUN seconds.
# The hubs' CPU (utime + stime from /proc, all threads) is taken from just
# before a bench run starts to just after it ends, so it includes the four
# links' set-up (a few dialback exchanges), and divided by the stanzas
# delivered. A and B find each other and B's component through a
# redis-server started here (the cluster registry). Redis operations: each
# node's fedhub_redis_commands_total (/metrics) and Redis's own
# total_commands_processed (INFO stats), over REST_S seconds with no traffic
# and over each run; per node = per fedhub process, all its connections.
# Ports: 27140-27143 (A), 27160-27163 (B), 27170-27172 (D), 27180 (the
# bench's dialback listener), 27189 (Redis).
#
#   bench/cluster-fwd.sh                 # burst of 300000, then 20000/s and 80000/s
#   BURST=1000000 RATES=20000,80000 SECONDS_RUN=10 bench/cluster-fwd.sh
#   JSON=out.json bench/cluster-fwd.sh   # the figures as JSON too (bench/report.py)
# Exit status 1 when a run lost or reordered stanzas.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FEDHUB=${FEDHUB:-$ROOT/fedhub}
BENCH=${BENCH:-$ROOT/fedhub-bench}
BURST=${BURST:-300000}
RATES=${RATES:-20000,80000}
SECONDS_RUN=${SECONDS_RUN:-10}
REST_S=${REST_S:-10}
JSON=${JSON:-}
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

run_bench() { # s2s comp label [rate]
	local load=(burst --burst "$BURST")
	[ -n "${4:-}" ] && load=(s2s-component --rate "$4" --seconds "$SECONDS_RUN" --warmup 1)
	"$BENCH" "${load[@]}" --target-s2s 127.0.0.1:"$1" --target-comp 127.0.0.1:"$2" --listen 127.0.0.1:27180 \
		--links 4 --domains 4 --components 1 --size "$SIZE" --quiet >"$TMP/$3.out" 2>&1
	local rc=$?
	grep -E "^(stanzas|throughput)" "$TMP/$3.out" | sed "s/^/$3: /" >&2
	return $rc
}

delivered() { sed -n 's/^stanzas .* delivered \([0-9]*\).*/\1/p' "$TMP/$1.out"; }
clean() { grep -qE '^stanzas .* lost 0 +out-of-order 0' "$TMP/$1.out"; }
rate_of() { sed -n 's/^throughput *\([0-9.]*\) stanzas.*/\1/p' "$TMP/$1.out" | head -1; }
# metric PORT NAME: a sample of a node's /metrics, 0 if absent
metric() { curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2; f = 1 } END { if (!f) print 0 }'; }
redis_total() { redis-cli -p 27189 INFO stats | tr -d '\r' | sed -n 's/^total_commands_processed://p'; }
now() { date +%s.%N; }
tck=$(getconf CLK_TCK)
fail=0
R=() # result lines: "key value ..." for the JSON

# measure LABEL S2S COMP RATE PID...: one run; CPU per stanza of the pids
measure() {
	local label=$1 s2s=$2 comp=$3 rate=$4
	shift 4
	local pids=("$@") c0=() c1=() p
	for p in "${pids[@]}"; do c0+=("$(cpu "$p")"); done
	local ra=$(metric 27142 fedhub_redis_commands_total) rb=$(metric 27162 fedhub_redis_commands_total)
	local rt=$(redis_total 2>/dev/null) t0=$(now)
	run_bench "$s2s" "$comp" "$label" "$rate" || { cat "$TMP/$label.out" >&2; exit 1; }
	local t1=$(now)
	for p in "${pids[@]}"; do c1+=("$(cpu "$p")"); done
	clean "$label" || fail=1
	local n=$(delivered "$label") us="" k
	for k in "${!pids[@]}"; do
		us+=" $(awk -v c=$((c1[k] - c0[k])) -v t="$tck" -v n="$n" 'BEGIN { printf "%.3f", c / t * 1e6 / n }')"
	done
	local line="$label rate=${rate:-burst} delivered=$n stanzas_per_s=$(rate_of "$label") cpu_us=${us# }"
	if [ "${#pids[@]}" -eq 2 ]; then
		local ra1=$(metric 27142 fedhub_redis_commands_total) rb1=$(metric 27162 fedhub_redis_commands_total)
		local rt1=$(redis_total)
		line+=$(awk -v a="$ra" -v a1="$ra1" -v b="$rb" -v b1="$rb1" -v r="$rt" -v r1="$rt1" -v t0="$t0" -v t1="$t1" \
			'BEGIN { d = t1 - t0; printf " redis_ops_per_s_a=%.1f redis_ops_per_s_b=%.1f redis_server_ops_per_s=%.1f", (a1 - a) / d, (b1 - b) / d, (r1 - r) / d }')
	fi
	R+=("$line")
	echo "$line" >&2
}

IFS=, read -r -a rates <<<"$RATES"

# direct
start D d 27170 27171 27172
wait_port 27170
measure direct-burst 27170 27171 "" "$D"
for r in "${rates[@]}"; do measure "direct-$r" 27170 27171 "$r" "$D"; done
kill "$D"
wait "$D" 2>/dev/null

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
sleep 1 # both registered, the first resync done
ra=$(metric 27142 fedhub_redis_commands_total); rb=$(metric 27162 fedhub_redis_commands_total); rt=$(redis_total)
sleep "$REST_S"
ra1=$(metric 27142 fedhub_redis_commands_total); rb1=$(metric 27162 fedhub_redis_commands_total); rt1=$(redis_total)
line=$(awk -v a="$ra" -v a1="$ra1" -v b="$rb" -v b1="$rb1" -v r="$rt" -v r1="$rt1" -v d="$REST_S" \
	'BEGIN { printf "rest seconds=%d redis_ops_per_s_a=%.1f redis_ops_per_s_b=%.1f redis_server_ops_per_s=%.1f", d, (a1 - a) / d, (b1 - b) / d, (r1 - r) / d }')
R+=("$line")
echo "$line" >&2
measure forwarded-burst 27140 27161 "" "$A" "$B"
for r in "${rates[@]}"; do measure "forwarded-$r" 27140 27161 "$r" "$A" "$B"; done
leases="$(metric 27142 fedhub_cluster_leases_held) $(metric 27162 fedhub_cluster_leases_held)"
fwd=$(metric 27142 'fedhub_cluster_forwarded_total{direction="out"}')
cmdstats=$(redis-cli -p 27189 INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\).*/\1=\2/p' | sort -t= -k2 -nr | head -8 | tr '\n' ' ')

# the report: one table, then the JSON if asked
{
	echo "run                 rate/s     delivered  stanzas/s  hub CPU us/stanza         Redis ops/s: node A  node B  server"
	for l in "${R[@]}"; do
		awk -v l="$l" 'BEGIN {
			n = split(l, f, " "); name = f[1]; delete v
			for (i = 2; i <= n; i++) { if (split(f[i], kv, "=") == 2) v[kv[1]] = kv[2]; else extra = extra " " f[i] }
			cpu = v["cpu_us"] extra
			if (name == "rest") { printf "%-19s %-10s %-10s %-10s %-25s %9s %7s %7s\n", "rest (" v["seconds"] " s)", "0", "-", "-", "-", v["redis_ops_per_s_a"], v["redis_ops_per_s_b"], v["redis_server_ops_per_s"]; exit }
			split(cpu, c, " ")
			cs = (c[2] != "") ? sprintf("A %s + B %s = %.3f", c[1], c[2], c[1] + c[2]) : c[1]
			printf "%-19s %-10s %-10s %-10s %-25s %9s %7s %7s\n", name, v["rate"], v["delivered"], v["stanzas_per_s"], cs, v["redis_ops_per_s_a"] == "" ? "-" : v["redis_ops_per_s_a"], v["redis_ops_per_s_b"] == "" ? "-" : v["redis_ops_per_s_b"], v["redis_server_ops_per_s"] == "" ? "-" : v["redis_server_ops_per_s"]
		}'
	done
	echo "leases held at the end: A B = $leases; stanzas A forwarded: $fwd"
	echo "Redis calls by command over the whole cluster run: $cmdstats"
}
for l in "${R[@]}"; do
	case $l in direct-burst*) d=$l ;; forwarded-burst*) f=$l ;; esac
done
awk -v d="$d" -v f="$f" 'BEGIN {
	split(d, a, "cpu_us="); split(a[2], x, " "); split(f, b, "cpu_us="); split(b[2], y, " ")
	printf "forwarding adds %.3f us/stanza at the maximum (A + B - D: %.3f + %.3f - %.3f)\n", y[1] + y[2] - x[1], y[1], y[2], x[1]
}'
for r in "${rates[@]}"; do
	for l in "${R[@]}"; do
		case $l in "direct-$r "*) d=$l ;; "forwarded-$r "*) f=$l ;; esac
	done
	awk -v d="$d" -v f="$f" -v r="$r" 'BEGIN {
		split(d, a, "cpu_us="); split(a[2], x, " "); split(f, b, "cpu_us="); split(b[2], y, " ")
		printf "forwarding adds %.3f us/stanza at %d/s\n", y[1] + y[2] - x[1], r
	}'
done
if [ -n "$JSON" ]; then
	printf '%s\n' "${R[@]}" | python3 -c '
import json, sys
runs = []
for line in sys.stdin:
    f = line.split()
    d = {"run": f[0]}
    for kv in f[1:]:
        if "=" in kv:
            k, v = kv.split("=", 1)
            d[k] = v
        else:
            d["cpu_us"] = d["cpu_us"] + " " + kv
    if "cpu_us" in d:
        d["cpu_us"] = [float(x) for x in d["cpu_us"].split()]
    for k in list(d):
        if k not in ("run", "cpu_us", "rate"):
            d[k] = float(d[k])
    runs.append(d)
leases = [float(x) for x in sys.argv[2].split()]
json.dump({"runs": runs, "leases_held": leases, "forwarded": float(sys.argv[3] or 0),
           "commandstats": sys.argv[4].split()}, open(sys.argv[1], "w"), indent=1)
' "$JSON" "$leases" "$fwd" "$cmdstats"
fi
exit $fail
