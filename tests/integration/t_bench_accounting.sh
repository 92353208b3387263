#!/bin/bash
# tests/integration/t_bench_accounting.sh — fedhub-bench's own accounting.
#
# The bench must notice what it is there to notice. Its hidden --fault option
# changes only what the bench's sender writes (one stanza counted as sent but
# never written; two stanzas of one flow written in swapped order); the
# receive side, which parses ids and keeps per-flow sequence state, runs as in
# any measurement. Each case checks the exit status and the JSON counters:
#   clean run            exit 0, lost 0, out_of_order 0
#   drop-one             exit 1, lost 1, out_of_order 0
#   reorder              exit 1, lost 0, out_of_order 1
# The path is a real HAProxy in TCP mode (the bench's "relay" target) and,
# when Prosody is installed, the full path through Prosody: s2s dialback
# links in, external component out.
. "$(dirname "$0")/lib/bench.sh" fhb-acct
hpid=""
cleanup() {
	[ -n "$hpid" ] && kill "$hpid" 2>/dev/null && wait "$hpid" 2>/dev/null
}
need_built fedhub-bench

# check NAME WANT_RC WANT_LOST WANT_OOO -- bench args...
check() {
	local name=$1 want_rc=$2 want_lost=$3 want_ooo=$4
	shift 4
	run "$name" "$@"
	local j="$tmp/$name.json" lost ooo delivered
	lost=$(field "$j" lost)
	ooo=$(field "$j" out_of_order)
	delivered=$(field "$j" delivered)
	local ok=0
	[ "$rc" = "$want_rc" ] && [ "$lost" = "$want_lost" ] && [ "$ooo" = "$want_ooo" ] &&
		[ "$delivered" != missing ] && [ "$delivered" -gt 0 ] && ok=1
	report "$name" $ok "exit $rc, want $want_rc; lost $lost, want $want_lost;" \
		"out_of_order $ooo, want $want_ooo; delivered $delivered"
}

# --- through HAProxy (TCP relay) ---------------------------------------------
if command -v haproxy >/dev/null; then
	cat >"$tmp/haproxy.cfg" <<'EOF'
global
	maxconn 1000
defaults
	mode tcp
	timeout connect 5s
	timeout client 60s
	timeout server 60s
frontend f
	bind 127.0.0.1:22710
	default_backend b
backend b
	server bench 127.0.0.1:22711
EOF
	haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
	hpid=$!
	for ((i = 0; i < 50; i++)); do ss -Hltn "src 127.0.0.1:22710" | grep -q . && break; sleep 0.1; done
	R=(s2s-component --target-s2s 127.0.0.1:22710 --relay 127.0.0.1:22711 --links 2
		--seconds 1 --warmup 0.5 --drain 3 --window 16)
	check relay_clean_run 0 0 0 -- "${R[@]}"
	check relay_drop_one_is_lost 1 1 0 -- "${R[@]}" --fault drop-one
	check relay_reorder_is_out_of_order 1 0 1 -- "${R[@]}" --fault reorder
	kill "$hpid" 2>/dev/null
	wait "$hpid" 2>/dev/null
	hpid=""
else
	echo "not ok relay (haproxy is not installed)"
	fails=$((fails + 1))
fi

# --- through Prosody (dialback in, component out) ----------------------------
if command -v prosody >/dev/null; then
	if ! target_start prosody 2; then
		echo "not ok prosody_start ($target_out)"
		fails=$((fails + 1))
	else
		P=(s2s-component --target-s2s 127.0.0.1:22469 --target-comp 127.0.0.1:22447 --target-pid "$target_pid"
			--links 2 --domains 2 --seconds 1 --warmup 0.5 --drain 5 --window 8)
		check prosody_clean_run 0 0 0 -- "${P[@]}"
		check prosody_drop_one_is_lost 1 1 0 -- "${P[@]}" --fault drop-one
		check prosody_reorder_is_out_of_order 1 0 1 -- "${P[@]}" --fault reorder
	fi
	target_stop
fi
[ "$fails" -eq 0 ]
