#!/bin/bash
# bench/run-suite.sh — the standard benchmark suite (`make bench`).
#
# Runs, in bounded time (about 12 minutes on 2 cores), each with a time limit:
#   1. tokenizer       the XML tokenizer alone (bench/tok_bench.c)
#   2. handshakes      the TLS engine alone: handshakes/s, bulk cost (bench/tls_bench.c)
#   3. relay           the worker runtime alone: bytes through one worker (bench/net_relay.c)
#   4. s2s-component   fedhub, plaintext dialback links in, one component out;
#                      then the same with --tls (STARTTLS + SASL EXTERNAL), and
#                      both again open loop at one rate (a quarter of the lower
#                      of the two maxima, well clear of overload on a shared
#                      machine), so that TLS's CPU per stanza is compared at
#                      equal load, not only at each one's maximum
#   5. echo            fedhub round trip, closed loop to find the max, the same
#                      with TLS on every s2s link (both directions), then open
#                      loop at 50% of the plaintext max (latency at a sane load)
#   5b. s2s-backend    the bench as a backend server behind fedhub and as the
#                      remote servers at once (remote -> fedhub -> backend,
#                      backend -> fedhub -> remote), closed loop right after
#                      s2s-component with the same links and domains
#                      (s2s-backend-comp); then both open loop at 20,000/s
#                      back to back, each beside the bench's direct baseline
#                      (router-added latency), for the CPU per stanza of the
#                      two paths (BENCHMARKS.md "Backends: backend -> hub ->
#                      remote")
#   6. idle-links      10,000 authenticated links (fewer if the fd limit is low);
#                      idle-links-tls: fedhub with as many TLS links (STARTTLS,
#                      SASL EXTERNAL), a domain and so a certificate name each
#   7. compare s2s-component --targets fedhub,prosody,ejabberd,haproxy
#   8. many-domains    fedhub with 1, 64, 1000 domains per link (CPU per
#                      stanza, throughput), then 1k, 10k, 100k new remote
#                      domains coming up (DNS through a dnsmasq on
#                      127.0.0.1:22353, and again by static routes); counts
#                      above the hard fd limit are skipped and say so
#   9. burst           100,000 stanzas written at once to a component that
#                      reads 50,000/s and pauses; fedhub, Prosody, ejabberd;
#                      burst-tls: fedhub, the same over TLS links
#  10. stall           one of two component domains stops reading for 3 s
#                      (stall_timeout 5 s: nothing bounced); stall-long: for
#                      8 s (stall_timeout 2 s: bounced after it, not before);
#                      the other's latency meanwhile (fedhub)
#  11. sweep           s2s-component at 10k..300k stanzas/s and max, fedhub,
#                      haproxy, ejabberd: CPU per stanza and latency per rate
#  12. router-latency  fedhub, the bench's direct loopback baseline and
#                      haproxy at 50% of fedhub's maximum from the sweep
#  13. cluster         one hub against a two-node cluster (bench/cluster-fwd.sh):
#                      stanzas/s, CPU per stanza on the forwarded path, Redis
#                      operations per node at rest and under load
# then rewrites BENCHMARKS.md from the JSON results: every table with the
# exact command that produced it, the machine and the date. A step that fails
# is marked skipped (with why) in BENCHMARKS.md; the suite goes on.
#
# The bench is pinned to CPU 0, the targets to the other CPUs (compare mode
# does this itself). Results and logs stay in build/bench/.
# Environment: SECONDS_PER_RUN (10), IDLE_LINKS (10000), IDLE_TARGETS
# (fedhub,prosody,ejabberd), COMPARE_TARGETS (fedhub,prosody,ejabberd,haproxy),
# BURST_TARGETS (fedhub,prosody,ejabberd), SWEEP_TARGETS (fedhub,haproxy,ejabberd),
# ONLY (step names, e.g. ONLY="s2s-component s2s-component-tls": run just
# those, keep the other steps' results from the last run, rewrite the report).
set -u
cd "$(dirname "$0")/.."
BENCH=./fedhub-bench
OUT=build/bench
mkdir -p "$OUT"
ONLY=${ONLY:-}
# wanted NAME: whether the step runs in this invocation
wanted() { [ -z "$ONLY" ] || [[ " ${ONLY//,/ } " == *" $1 "* ]]; }
if [ -z "$ONLY" ]; then
	rm -f "$OUT"/*.json "$OUT"/*.log "$OUT"/*.txt "$OUT"/*.skip "$OUT"/*.rc "$OUT"/*.cmd
fi
T=${SECONDS_PER_RUN:-10}
IDLE_TARGETS=${IDLE_TARGETS:-fedhub,prosody,ejabberd}
COMPARE_TARGETS=${COMPARE_TARGETS:-fedhub,prosody,ejabberd,haproxy}
ulimit -n "$(ulimit -Hn)" 2>/dev/null
nofile=$(ulimit -n)
links=${IDLE_LINKS:-10000}
# each side needs one fd per link plus some headroom
if [ "$links" -gt $((nofile - 500)) ]; then links=$((nofile - 500)); fi

# the targets' ports are shared with tests/integration/t_bench_*: one at a time
exec 9>/tmp/fhb-bench.lock
flock -w 900 9 || { echo "run-suite: another bench run holds /tmp/fhb-bench.lock" >&2; exit 1; }

[ -x "$BENCH" ] || { echo "run-suite: $BENCH is not built (make)" >&2; exit 1; }

# step NAME LIMIT_S -- COMMAND...: runs it, keeps its output and exact command
step() {
	local name=$1 limit=$2
	shift 3
	wanted "$name" || return 0
	rm -f "$OUT/$name".*
	echo "== $name: $*" >&2
	printf '%s\n' "$*" >"$OUT/$name.cmd"
	timeout "$limit" "$@" >"$OUT/$name.txt" 2>"$OUT/$name.log"
	local rc=$?
	echo "$rc" >"$OUT/$name.rc"
	tail -n 12 "$OUT/$name.txt" >&2
	[ "$rc" -eq 0 ] || echo "   ($name exited $rc; see $OUT/$name.log)" >&2
	return 0
}

# rate FILE: stanzas/s measured for fedhub in a result, 0 if none
rate() {
	python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["targets"]["fedhub"]["stanzas_per_s"]))' \
		"$1" 2>/dev/null || echo 0
}

step tokenizer 120 -- "$BENCH" tokenizer
step handshakes 120 -- taskset -c 0 "$BENCH" handshakes --json "$OUT/handshakes.json"
step relay 120 -- "$BENCH" relay --json "$OUT/relay.json"

# plaintext and TLS: the same command but for --tls
S2SC=(--targets fedhub --cpus 0 --links 8 --domains 32 --components 1 --warmup 2 --quiet)
step s2s-component 120 -- "$BENCH" compare s2s-component "${S2SC[@]}" --seconds "$T" \
	--json "$OUT/s2s-component.json"
step s2s-component-tls 120 -- "$BENCH" compare s2s-component "${S2SC[@]}" --seconds "$T" --tls \
	--json "$OUT/s2s-component-tls.json"
plain=$(rate "$OUT/s2s-component.json")
tls=$(rate "$OUT/s2s-component-tls.json")
eq=$((plain < tls ? plain / 4 : tls / 4))
if [ "$eq" -gt 0 ]; then
	step s2s-component-eq 120 -- "$BENCH" compare s2s-component "${S2SC[@]}" --seconds "$T" \
		--rate "$eq" --json "$OUT/s2s-component-eq.json"
	step s2s-component-tls-eq 120 -- "$BENCH" compare s2s-component "${S2SC[@]}" --seconds "$T" \
		--rate "$eq" --tls --json "$OUT/s2s-component-tls-eq.json"
elif wanted s2s-component-eq; then
	echo "a closed-loop s2s-component run measured nothing; no equal-load comparison" \
		>"$OUT/s2s-component-eq.skip"
fi

step echo-max 120 -- "$BENCH" compare echo --targets fedhub --cpus 0 \
	--links 8 --domains 8 --seconds 5 --warmup 2 --quiet --json "$OUT/echo-max.json"
step echo-tls 120 -- "$BENCH" compare echo --targets fedhub --cpus 0 \
	--links 8 --domains 8 --seconds 5 --warmup 2 --quiet --tls --json "$OUT/echo-tls.json"
max=$(rate "$OUT/echo-max.json")
if [ "${max:-0}" -gt 0 ]; then
	step echo-half 120 -- "$BENCH" compare echo --targets fedhub --cpus 0 \
		--links 8 --domains 8 --rate $((max / 2)) --seconds "$T" --warmup 2 --quiet \
		--json "$OUT/echo-half.json"
elif wanted echo-half; then
	echo "closed-loop echo measured nothing; open-loop echo skipped" >"$OUT/echo-half.skip"
fi

S2SB=(--cpus 0 --links 8 --domains 32 --warmup 2 --quiet)
# the component path again, closed loop, right before the backend's: the
# ratio of the two comes from back-to-back runs, not from runs minutes apart
step s2s-backend-comp 120 -- "$BENCH" compare s2s-component --targets fedhub "${S2SB[@]}" --seconds "$T" \
	--components 1 --json "$OUT/s2s-backend-comp.json"
step s2s-backend 120 -- "$BENCH" compare s2s-backend --targets fedhub "${S2SB[@]}" --seconds "$T" \
	--json "$OUT/s2s-backend.json"
step s2s-backend-20k 120 -- "$BENCH" compare s2s-backend --targets fedhub,direct "${S2SB[@]}" --seconds "$T" \
	--rate 20000 --json "$OUT/s2s-backend-20k.json"
step s2s-component-20k 120 -- "$BENCH" compare s2s-component --targets fedhub,direct "${S2SB[@]}" --seconds "$T" \
	--components 1 --rate 20000 --json "$OUT/s2s-component-20k.json"

step idle-links 400 -- "$BENCH" compare idle-links --targets "$IDLE_TARGETS" --cpus 0 \
	--links "$links" --domains 100 --seconds "$T" --warmup 0 --setup-timeout 120 --quiet \
	--json "$OUT/idle-links.json"
step idle-links-tls 400 -- "$BENCH" compare idle-links --tls --targets fedhub --cpus 0 \
	--links "$links" --domains "$links" --seconds "$T" --warmup 0 --setup-timeout 200 --quiet \
	--json "$OUT/idle-links-tls.json"

step compare 400 -- "$BENCH" compare s2s-component --targets "$COMPARE_TARGETS" --cpus 0 \
	--links 8 --domains 32 --components 1 --seconds "$T" --warmup 2 --quiet \
	--json "$OUT/compare.json"

step many-domains 420 -- "$BENCH" many-domains --cpus 0 --links 2 --per-link 1,64,1000 \
	--remote 1000,10000,100000 --seconds 3 --warmup 1 --setup-timeout 60 --quiet \
	--json "$OUT/many-domains.json"

BURST_TARGETS=${BURST_TARGETS:-fedhub,prosody,ejabberd}
step burst 300 -- "$BENCH" compare burst --targets "$BURST_TARGETS" --cpus 0 --links 4 --domains 8 \
	--burst 100000 --comp-read-rate 50000 --comp-pause 200 --comp-pause-every 20000 --drain 30 \
	--quiet --json "$OUT/burst.json"

step burst-tls 120 -- "$BENCH" compare burst --targets fedhub --cpus 0 --links 4 --domains 8 --tls \
	--burst 100000 --comp-read-rate 50000 --comp-pause 200 --comp-pause-every 20000 --drain 30 \
	--quiet --json "$OUT/burst-tls.json"

step stall 120 -- "$BENCH" compare stall --targets fedhub --cpus 0 --links 4 --domains 8 --components 2 \
	--comp-domain comp.fhb,comp2.fhb --rate 20000 --stall-ms 3000 --stall-timeout 5 --seconds 6 --warmup 1 \
	--drain 10 --quiet --json "$OUT/stall.json"
step stall-long 120 -- "$BENCH" compare stall --targets fedhub --cpus 0 --links 4 --domains 8 --components 2 \
	--comp-domain comp.fhb,comp2.fhb --rate 20000 --stall-ms 8000 --stall-timeout 2 --seconds 10 --warmup 1 \
	--drain 10 --quiet --json "$OUT/stall-long.json"

SWEEP_TARGETS=${SWEEP_TARGETS:-fedhub,haproxy,ejabberd}
step sweep 400 -- "$BENCH" compare s2s-component --targets "$SWEEP_TARGETS" --cpus 0 --links 8 --domains 32 \
	--rates 10000,20000,50000,100000,300000,max --seconds 2 --warmup 1 --drain 5 --quiet \
	--json "$OUT/sweep.json"

# sweep_max FILE: fedhub's closed-loop rate in a sweep, 0 if none
sweep_max() {
	python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["targets"]["fedhub@max"]["stanzas_per_s"]))' \
		"$1" 2>/dev/null || echo 0
}
smax=$(sweep_max "$OUT/sweep.json")
if [ "${smax:-0}" -gt 0 ]; then
	step router-latency 120 -- "$BENCH" compare s2s-component --targets fedhub,direct,haproxy --cpus 0 \
		--links 8 --domains 32 --rate $((smax / 2)) --seconds 5 --warmup 1 --quiet \
		--json "$OUT/router-latency.json"
elif wanted router-latency; then
	echo "the sweep measured no maximum for fedhub; router-latency needs it" >"$OUT/router-latency.skip"
fi

# a single hub against a two-node cluster (forwarded path, Redis operations per node)
step cluster 300 -- env BURST=1000000 RATES=20000,80000 SECONDS_RUN=10 REST_S=10 JSON="$OUT/cluster.json" \
	bench/cluster-fwd.sh

python3 bench/report.py "$OUT" BENCHMARKS.md && echo "run-suite: BENCHMARKS.md rewritten" >&2
