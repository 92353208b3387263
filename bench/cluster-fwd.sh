#!/bin/bash
# bench/cluster-fwd.sh — a single node against a cluster, with fedhub-bench:
# stanzas/s and hub CPU per stanza, the forwarded path's extra CPU per
# stanza, and the Redis operations per node at rest and under load.
#
#   direct:    bench s2s links -> hub D -> bench component
#   forwarded: bench s2s links -> node A -> node link -> node B -> bench component
#   haproxy:   bench s2s links -> HAProxy (TCP, send-proxy-v2, round robin) ->
#              nodes A, B, C -> (a node link to B, unless on B) -> bench
#              component on B: 3 of the 4 links land off B
#
# Each hub runs one worker. Each load runs against D, then A+B, then the
# three behind HAProxy:
#   burst  fedhub-bench writes BURST stanzas at once over 4 dialback links (every
#          stanza accounted: delivered + bounced == sent): the maximum rate;
#   rates  open loop at each of RATES (stanzas/s) for SECONDS_RUN seconds.
# The hubs' CPU (utime + stime from /proc, all threads) is taken from just
# before a bench run starts to just after it ends, so it includes the four
# links' set-up (a few dialback exchanges), and divided by the stanzas
# delivered; HAProxy's own CPU is reported apart. The nodes find each other
# and B's component through a redis-server started here (the cluster
# registry). Redis operations: each node's fedhub_redis_commands_total
# (/metrics) and Redis's own total_commands_processed (INFO stats), over
# REST_S seconds with no traffic and over each run. Forwarded share: the
# nodes' fedhub_cluster_forwarded_total{direction="out"} over the stanzas
# delivered. Ports: 27140-27144 (A), 27160-27164 (B), 27150-27154 (C),
# 27170-27172 (D), 27165 (HAProxy), 27180 (the bench's dialback listener),
# 27189 (Redis).
#
#   bench/cluster-fwd.sh                 # burst of 300000, then 20000/s and 80000/s
#   BURST=1000000 RATES=20000,80000 SECONDS_RUN=10 bench/cluster-fwd.sh
#   JSON=out.json bench/cluster-fwd.sh   # the figures as JSON too (bench/report.py)
# Exit status 1 when a run lost or reordered stanzas.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FEDHUB=${FEDHUB:-$ROOT/fedhub}
BENCH=${BENCH:-$ROOT/fedhub-bench}
HAPROXY=${HAPROXY:-haproxy}
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

conf() { # s2s comp http [node_id node_port proxy_port]
	printf '[hub]\nworkers 1\ndomain hub.fhb\nlisten s2s 127.0.0.1:%s\nlisten component 127.0.0.1:%s\nhttp 127.0.0.1:%s\nlog_level warn\n' \
		"$1" "$2" "$3"
	# the balanced listener: PROXY v2 headers from HAProxy (127.0.0.1) only
	[ -n "${6:-}" ] && printf 'listen s2s 127.0.0.1:%s proxy_protocol\nproxy_from 127.0.0.1\n' "$6"
	printf '[component comp.fhb]\nsecret s3cret\n'
	for i in 1 2 3 4; do printf '[route bench%d.fhb]\nconnect 127.0.0.1:27180\n' "$i"; done
	[ -n "${4:-}" ] && printf '[cluster]\nredis 127.0.0.1:27189\nnode_id %s\nnode_listen 127.0.0.1:%s\ncluster_secret_file %s\n' \
		"$4" "$5" "$TMP/cluster.key"
	return 0
}

cpu() { # utime+stime of a process in clock ticks
	awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

start() { # var name s2s comp http [node_id node_port proxy_port]: the pid in $var
	conf "$3" "$4" "$5" "${6:-}" "${7:-}" "${8:-}" >"$TMP/$2.conf"
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
metric() {
	curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2; f = 1 } END { if (!f) print 0 }'
}
redis_total() { redis-cli -p 27189 INFO stats | tr -d '\r' | sed -n 's/^total_commands_processed://p'; }
now() { date +%s.%N; }
FWD='fedhub_cluster_forwarded_total{direction="out"}'
tck=$(getconf CLK_TCK)
fail=0
R=()    # result lines "run key=value ...", lists comma-separated
HTTP=() # the http ports of the cluster nodes measured (empty: a single hub)
HAPROXY_PID=""

each() { # metric NAME of every node in HTTP, comma-separated
	local out="" p
	for p in "${HTTP[@]}"; do out+="$(metric "$p" "$1"),"; done
	echo "${out%,}"
}

# per_s R0 R1 SECONDS RT0 RT1: "redis_ops_per_s=a,b redis_server_ops_per_s=x"
per_s() {
	python3 -c '
import sys
r0, r1 = ([float(x) for x in a.split(",")] for a in sys.argv[1:3])
d, rt0, rt1 = (float(x) for x in sys.argv[3:6])
print("redis_ops_per_s=%s redis_server_ops_per_s=%.1f" % (",".join("%.1f" % ((b - a) / d) for a, b in zip(r0, r1)),
      (rt1 - rt0) / d))' "$@"
}

# measure LABEL S2S COMP RATE PID...: one run; CPU per stanza of each pid
measure() {
	local label=$1 s2s=$2 comp=$3 rate=$4
	shift 4
	local pids=("$@") c0=() c1=() p h0=0 h1=0 r0="" r1="" f0="" f1="" rt0=0 rt1=0
	for p in "${pids[@]}"; do c0+=("$(cpu "$p")"); done
	[ -n "$HAPROXY_PID" ] && h0=$(cpu "$HAPROXY_PID")
	if [ "${#HTTP[@]}" -gt 0 ]; then
		r0=$(each fedhub_redis_commands_total)
		f0=$(each "$FWD")
		rt0=$(redis_total)
	fi
	local t0 t1
	t0=$(now)
	run_bench "$s2s" "$comp" "$label" "$rate" || { cat "$TMP/$label.out" >&2; exit 1; }
	t1=$(now)
	for p in "${pids[@]}"; do c1+=("$(cpu "$p")"); done
	[ -n "$HAPROXY_PID" ] && h1=$(cpu "$HAPROXY_PID")
	clean "$label" || fail=1
	local n us="" k
	n=$(delivered "$label")
	for k in "${!pids[@]}"; do
		us+="$(awk -v c=$((c1[k] - c0[k])) -v t="$tck" -v n="$n" 'BEGIN { printf "%.3f", c / t * 1e6 / n }'),"
	done
	local line="$label rate=${rate:-burst} delivered=$n stanzas_per_s=$(rate_of "$label") cpu_us=${us%,}"
	[ -n "$HAPROXY_PID" ] &&
		line+=" haproxy_cpu_us=$(awk -v c=$((h1 - h0)) -v t="$tck" -v n="$n" 'BEGIN { printf "%.3f", c / t * 1e6 / n }')"
	if [ "${#HTTP[@]}" -gt 0 ]; then
		r1=$(each fedhub_redis_commands_total)
		f1=$(each "$FWD")
		rt1=$(redis_total)
		line+=" $(per_s "$r0" "$r1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$rt0" "$rt1")"
		line+=" $(awk -v a="$f0" -v b="$f1" -v n="$n" 'BEGIN {
			k = split(a, x, ","); split(b, y, ","); s = 0
			for (i = 1; i <= k; i++) s += y[i] - x[i]
			printf "forwarded_share=%.3f", s / n }')"
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
start A a 27140 27141 27142 a 27143 27144
start B b 27160 27161 27162 b 27163 27164
for p in 27140 27160 27143 27163; do wait_port $p; done
HTTP=(27142 27162)
sleep 1 # both registered, the first resync done
r0=$(each fedhub_redis_commands_total)
rt0=$(redis_total)
sleep "$REST_S"
line="rest seconds=$REST_S $(per_s "$r0" "$(each fedhub_redis_commands_total)" "$REST_S" "$rt0" "$(redis_total)")"
R+=("$line")
echo "$line" >&2
measure forwarded-burst 27140 27161 "" "$A" "$B"
for r in "${rates[@]}"; do measure "forwarded-$r" 27140 27161 "$r" "$A" "$B"; done

# haproxy: a third node and the balancer in front of the three; the component stays on B
start C c 27150 27151 27152 c 27153 27154
for p in 27150 27153 27154; do wait_port $p; done
cat >"$TMP/haproxy.cfg" <<HAP
global
	maxconn 2000
defaults
	mode tcp
	timeout connect 5s
	timeout client 120s
	timeout server 120s
frontend s2s
	bind 127.0.0.1:27165
	default_backend nodes
backend nodes
	balance roundrobin
	server a 127.0.0.1:27144 send-proxy-v2
	server b 127.0.0.1:27164 send-proxy-v2
	server c 127.0.0.1:27154 send-proxy-v2
HAP
"$HAPROXY" -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=($!)
wait_port 27165
HTTP=(27142 27162 27152)
sleep 1 # C registered
measure haproxy-burst 27165 27161 "" "$A" "$B" "$C"
for r in "${rates[@]}"; do measure "haproxy-$r" 27165 27161 "$r" "$A" "$B" "$C"; done
leases=$(each fedhub_cluster_leases_held)
cmdstats=$(redis-cli -p 27189 INFO commandstats | tr -d '\r' |
	sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\).*/\1=\2/p' | sort -t= -k2 -nr | head -8 | tr '\n' ' ')

# the report (and the JSON bench/report.py reads)
printf '%s\n' "${R[@]}" | python3 -c '
import json, sys
json_path, leases, cmdstats = sys.argv[1], sys.argv[2], sys.argv[3]
runs = []
for line in sys.stdin:
    f = line.split()
    d = {"run": f[0]}
    for kv in f[1:]:
        k, v = kv.split("=", 1)
        d[k] = [float(x) for x in v.split(",")] if k in ("cpu_us", "redis_ops_per_s") else v if k == "rate" else float(v)
    runs.append(d)
fmt = "%-15s %-7s %9s %9s  %-36s %8s %5s  %-15s %s"
print(fmt % ("run", "offered", "delivered", "stanzas/s", "hub CPU us/stanza", "haproxy", "fwd", "Redis ops/s", "server"))
for r in runs:
    ops = ",".join("%.1f" % x for x in r.get("redis_ops_per_s", []))
    srv = "%.1f" % r["redis_server_ops_per_s"] if "redis_server_ops_per_s" in r else ""
    if r["run"] == "rest":
        print(fmt % ("rest %ds" % r["seconds"], "0", "", "", "", "", "", ops, srv))
        continue
    c = r["cpu_us"]
    cs = "%.3f" % c[0] if len(c) == 1 else " + ".join("%.3f" % x for x in c) + " = %.3f" % sum(c)
    print(fmt % (r["run"], r["rate"], "%d" % r["delivered"], "%d" % r["stanzas_per_s"], cs,
                 "%.3f" % r["haproxy_cpu_us"] if "haproxy_cpu_us" in r else "",
                 "%.2f" % r["forwarded_share"] if "forwarded_share" in r else "", ops, srv))
by = {r["run"]: r for r in runs}
for r in runs:
    if r["run"].startswith("direct-"):
        k = r["run"][len("direct-"):]
        for kind in ("forwarded", "haproxy"):
            f = by.get(kind + "-" + k)
            if f:
                print("%s-%s: the nodes use %.3f us/stanza more hub CPU than D; %.2fx its stanzas/s" % (
                    kind, k, sum(f["cpu_us"]) - r["cpu_us"][0], f["stanzas_per_s"] / r["stanzas_per_s"]))
print("leases held at the end (A, B, C): %s" % leases)
print("Redis calls by command over the cluster runs: %s" % cmdstats)
if json_path:
    with open(json_path, "w") as fh:
        json.dump({"runs": runs, "leases_held": [float(x) for x in leases.split(",")], "commandstats": cmdstats.split()},
                  fh, indent=1)
' "$JSON" "$leases" "$cmdstats"
exit $fail
