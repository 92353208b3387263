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
need_built fedhub-bench fedhub

metric() { # metric NAME: its value in fedhub's /metrics (the bench config's http port)
	curl -s --max-time 5 http://127.0.0.1:22280/metrics | awk -v n="$1" 'index($1, n "{") == 1 || $1 == n { s += $2 } END { print s + 0 }'
}
start_target() { # start_target OPTIONS
	target_start fedhub 4 "$1" || { echo "not ok fedhub_start ($target_out)"; exit 1; }
}
BK=(s2s-backend --links 2 --domains 4 --rate 2000 --seconds 2 --warmup 1 --drain 5)

start_target backend
run backend_both_directions -- "${BK[@]}" --target-pid "$target_pid"
j=$tmp/backend_both_directions.json
sent=$(field "$j" sent) delivered=$(field "$j" delivered) lost=$(field "$j" lost) ooo=$(field "$j" out_of_order)
in=$(metric fedhub_backend_stanzas_in_total) out=$(metric fedhub_backend_stanzas_out_total)
ok=0
[ "$rc" = 0 ] && [ "$sent" -gt 1000 ] 2>/dev/null && [ "$delivered" = "$sent" ] && [ "$lost" = 0 ] &&
	[ "$ooo" = 0 ] && [ $((in + out)) -ge "$sent" ] && [ $((in * 3)) -ge "$sent" ] &&
	[ $((out * 3)) -ge "$sent" ] && ok=1
report backend_both_directions $ok "exit $rc; sent $sent, delivered $delivered, lost $lost," \
	"out of order $ooo; fedhub backend stanzas in $in, out $out"
target_stop

start_target ""
run backend_needs_the_backend -- "${BK[@]}" --target-pid "$target_pid" --setup-timeout 5
j=$tmp/backend_needs_the_backend.json
sent=$(field "$j" sent)
ok=0
[ "$rc" = 2 ] && { [ "$sent" = 0 ] || [ "$sent" = missing ]; } && ok=1
report backend_needs_the_backend $ok "exit $rc (want 2), sent $sent"
target_stop

[ "$fails" = 0 ]
