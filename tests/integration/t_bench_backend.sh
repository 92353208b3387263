#!/bin/bash
# tests/integration/t_bench_backend.sh — fedhub-bench's s2s-backend scenario:
# the bench as a backend server behind fedhub and as the remote servers.
#
# Against a real fedhub started by bench/peers/target.sh:
#   backend_both_directions   with `backend` (a [backend bench] for back.fhb,
#                             connect and allow_from the bench's listener):
#                             exit 0, every stanza delivered, none lost or
#                             out of order, and fedhub's /metrics count the
#                             stanzas of both directions on the backend path
#                             (fedhub_backend_stanzas_in/out_total), about
#                             half of them each
#   backend_needs_the_backend against a fedhub without that section the
#                             backend's streams to remote domains are refused
#                             (host-unknown): exit 2, nothing measured (the
#                             check above can fail)
# Each case checks the exit status and the JSON the bench wrote.
. "$(dirname "$0")/lib/bench.sh" fhb-bbk
tdir=""
fails=0
stop_target() {
	[ -n "$tdir" ] && bench/peers/target.sh stop fedhub "$tdir" >/dev/null 2>&1
	tdir=""
}
cleanup() {
	stop_target
	rm -rf "$tmp"
}
trap cleanup EXIT
# the targets' ports are shared with `make bench`: one at a time
exec 9>/tmp/fhb-bench.lock
flock -w 600 9 || { echo "not ok bench_lock (another bench run holds /tmp/fhb-bench.lock)"; exit 1; }
if [ ! -x "$BENCH" ] || { ! [ -x fedhub ] && ! [ -x build/release/fedhub ]; }; then
	echo "not ok built (fedhub and fedhub-bench: run make)"
	exit 1
fi

field() { # field FILE NAME: a value from the bench's JSON (first target)
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); t=list(d["targets"].values())[0]
print(t.get(sys.argv[2], "missing"))' "$1" "$2" 2>/dev/null || echo missing
}
metric() { # metric NAME: its value in fedhub's /metrics (the bench config's http port)
	curl -s --max-time 5 http://127.0.0.1:22280/metrics | awk -v n="$1" 'index($1, n "{") == 1 || $1 == n { s += $2 } END { print s + 0 }'
}
start_target() { # start_target OPTIONS
	tdir=$(mktemp -d /tmp/fhb-bbk-fedhub-XXXXXX)
	local out
	out=$(bench/peers/target.sh start fedhub "$tdir" "0-$(($(nproc) - 1))" 4 "$1")
	fpid=$(sed -n 's/^pid=//p' <<<"$out")
	[ -n "$fpid" ] || { echo "not ok fedhub_start ($out)"; exit 1; }
}
report() { # report NAME OK DETAIL
	if [ "$2" = 1 ]; then
		echo "ok $1"
	else
		fails=$((fails + 1))
		echo "not ok $1 (${*:3})"
		sed 's/^/#   /' "$tmp/$1.out" | tail -n 15
	fi
}
run() { # run NAME -- bench args...
	local name=$1
	shift 2
	timeout 60 "$BENCH" s2s-backend --links 2 --domains 4 --rate 2000 --seconds 2 --warmup 1 --drain 5 \
		--target-pid "$fpid" --quiet --json "$tmp/$name.json" "$@" >"$tmp/$name.out" 2>&1
	rc=$?
}

start_target backend
run backend_both_directions --
j=$tmp/backend_both_directions.json
sent=$(field "$j" sent) delivered=$(field "$j" delivered) lost=$(field "$j" lost) ooo=$(field "$j" out_of_order)
in=$(metric fedhub_backend_stanzas_in_total) out=$(metric fedhub_backend_stanzas_out_total)
ok=0
[ "$rc" = 0 ] && [ "$sent" -gt 1000 ] 2>/dev/null && [ "$delivered" = "$sent" ] && [ "$lost" = 0 ] &&
	[ "$ooo" = 0 ] && [ $((in + out)) -ge "$sent" ] && [ $((in * 3)) -ge "$sent" ] &&
	[ $((out * 3)) -ge "$sent" ] && ok=1
report backend_both_directions $ok "exit $rc; sent $sent, delivered $delivered, lost $lost," \
	"out of order $ooo; fedhub backend stanzas in $in, out $out"
stop_target

start_target ""
run backend_needs_the_backend -- --setup-timeout 5
j=$tmp/backend_needs_the_backend.json
sent=$(field "$j" sent)
ok=0
[ "$rc" = 2 ] && { [ "$sent" = 0 ] || [ "$sent" = missing ]; } && ok=1
report backend_needs_the_backend $ok "exit $rc (want 2), sent $sent"
stop_target

[ "$fails" = 0 ]
