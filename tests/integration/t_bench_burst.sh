#!/bin/bash
# tests/integration/t_bench_burst.sh — fedhub-bench's burst and many-domains
# accounting against a real fedhub (started by bench/peers/target.sh).
#
#   burst_bounce_one_accounted   a burst with one stanza sent to a domain fedhub
#                                serves with nothing attached (absent.fhb):
#                                exit 0, delivered + bounced == sent, exactly
#                                one bounce, counted as service-unavailable
#   burst_drop_one_is_lost       the same burst with one stanza never written:
#                                exit 1, lost 1 (the check above can fail)
#   many_domains_one_link        200 domains piggybacked on one link: every
#                                dialback verification stream fedhub opens to
#                                the bench and closes after its answer is not
#                                a broken link; exit 0, nothing lost
#   remote_domains_come_up       one stanza to each of 300 bench domains: fedhub
#                                dials and authenticates 300 links, all deliver
#   many_domains_series          the many-domains driver itself (its own fedhub)
#                                with 200 domains on one link: exit 0, clean
# Bounded: each bench run has a timeout; fedhub is stopped by its PID file.
. "$(dirname "$0")/lib/bench.sh" fhb-burst
need_built fedhub-bench
target_start fedhub 300 || { echo "not ok fedhub_start ($target_out)"; exit 1; }
fpid=$target_pid

B=(burst --links 2 --domains 4 --burst 2000)
run burst_bounce_one_accounted -- "${B[@]}" --target-pid "$fpid" --fault bounce-one --drain 10
j=$tmp/burst_bounce_one_accounted.json
sent=$(field "$j" sent) delivered=$(field "$j" delivered) bounced=$(field "$j" bounced) lost=$(field "$j" lost)
su=$(field "$j" bounced_by.service-unavailable)
ok=0
[ "$rc" = 0 ] && [ "$sent" = 2000 ] && [ "$bounced" = 1 ] && [ "$su" = 1 ] && [ "$lost" = 0 ] &&
	[ $((delivered + bounced)) = "$sent" ] && ok=1
report burst_bounce_one_accounted $ok "exit $rc; sent $sent, delivered $delivered, bounced $bounced" \
	"(service-unavailable $su), lost $lost"

run burst_drop_one_is_lost -- "${B[@]}" --target-pid "$fpid" --fault drop-one --drain 3
j=$tmp/burst_drop_one_is_lost.json
lost=$(field "$j" lost) delivered=$(field "$j" delivered)
ok=0
[ "$rc" = 1 ] && [ "$lost" = 1 ] && [ "$delivered" = 1999 ] && ok=1
report burst_drop_one_is_lost $ok "exit $rc, want 1; lost $lost, want 1; delivered $delivered, want 1999"

run many_domains_one_link -- s2s-component --links 1 --domains 200 --seconds 2 --warmup 0.5 --drain 5 \
	--target-pid "$fpid"
j=$tmp/many_domains_one_link.json
lost=$(field "$j" lost) ooo=$(field "$j" out_of_order) delivered=$(field "$j" delivered)
links=$(field "$j" links_up) vs=$(field "$j" verify_streams) err=$(field "$j" error)
ok=0
[ "$rc" = 0 ] && [ "$lost" = 0 ] && [ "$ooo" = 0 ] && [ "$links" = 1 ] && [ "$vs" = 200 ] &&
	[ "$err" = missing ] && [ "${delivered:-0}" != missing ] && [ "$delivered" -gt 0 ] && ok=1
report many_domains_one_link $ok "exit $rc; links up $links, verification streams $vs (want 200)," \
	"delivered $delivered, lost $lost, out of order $ooo, error $err"

run remote_domains_come_up -- remote-domains --domains 300 --drain 20 --target-pid "$fpid"
j=$tmp/remote_domains_come_up.json
delivered=$(field "$j" delivered) bounced=$(field "$j" bounced) lost=$(field "$j" lost)
ok=0
[ "$rc" = 0 ] && [ "$delivered" = 300 ] && [ "$bounced" = 0 ] && [ "$lost" = 0 ] && ok=1
report remote_domains_come_up $ok "exit $rc; delivered $delivered of 300, bounced $bounced, lost $lost"

target_stop

# the driver starts (and stops) its own fedhub on the same ports
timeout 90 "$BENCH" many-domains --links 1 --per-link 200 --remote "" --seconds 1 --warmup 0.5 --quiet \
	--json "$tmp/many_domains_series.json" >"$tmp/many_domains_series.out" 2>&1
rc=$?
row=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["targets"]["per-link-200"]
print(t.get("skipped") or t.get("error") or "lost=%d ooo=%d delivered=%d links=%d" % (t["lost"], t["out_of_order"], t["delivered"], t["links_up"]))' \
	"$tmp/many_domains_series.json" 2>/dev/null)
ok=0
[ "$rc" = 0 ] && [[ "$row" == "lost=0 ooo=0 delivered="* ]] && [[ "$row" == *" links=1" ]] &&
	[[ "$row" != *"delivered=0 "* ]] && ok=1
report many_domains_series $ok "exit $rc; $row"
[ "$fails" -eq 0 ]
