#!/bin/bash
# tests/integration/t_bench_tls.sh — fedhub-bench's TLS links and `transit`.
#
# Against a real fedhub started by bench/peers/target.sh (with `tls`: a test
# CA, certificates, `tls required` on both directions):
#   tls_s2s_component         every bench link did STARTTLS and SASL EXTERNAL
#                             for its first domain (JSON counters), the other
#                             piggybacked domain by dialback; traffic clean
#   tls_echo_both_directions  fedhub's own links to the bench ran TLS and
#                             SASL EXTERNAL too (the bench as TLS server)
#   tls_dialback_fallback     a bench certificate naming only bench1.fhb: the
#                             link for bench2.fhb is not offered EXTERNAL and
#                             authenticates by dialback (fedhub calls the
#                             bench's listener back, over TLS)
#   tls_untrusted_target_fails  the bench trusting another CA refuses the
#                             target's certificate: exit 2, no traffic
#   tls_plain_target_fails    --tls against a fedhub without certificates
#                             (no STARTTLS offered): exit 2, never plaintext
#   transit_runs_as_echo      `transit` is the echo run under its own name
# Each case checks the exit status and the JSON the bench wrote.
. "$(dirname "$0")/lib/bench.sh" fhb-btls
need_built fedhub-bench fedhub

# start_target [tls]: fedhub from target.sh; sets pid and certs
start_target() {
	target_start fedhub 4 "$@" || { echo "# target.sh: $target_out"; return 1; }
	pid=$target_pid
	certs=$(sed -n 's/^tls_dir=//p' <<<"$target_out")
}

# verdict NAME COND...: ok when the test expression holds
verdict() {
	local name=$1
	shift
	if "$@"; then
		echo "ok $name"
	else
		fails=$((fails + 1))
		echo "not ok $name"
		sed 's/^/#   /' "$tmp/$name.out" 2>/dev/null | tail -n 15
	fi
}

L=(--links 2 --domains 4 --seconds 1 --warmup 0.5 --drain 5 --window 16)

# --- fedhub with TLS ---------------------------------------------------------
if start_target tls && [ -n "$certs" ]; then
	run tls_s2s_component -- s2s-component "${L[@]}" --tls --tls-dir "$certs" --target-pid "$pid"
	j=$tmp/tls_s2s_component.json
	verdict tls_s2s_component test "$rc" = 0 -a "$(field "$j" tls_links_out)" = 2 \
		-a "$(field "$j" external_out)" = 2 -a "$(field "$j" lost)" = 0 \
		-a "$(field "$j" out_of_order)" = 0 -a "$(field "$j" delivered)" != 0

	run tls_echo_both_directions -- echo "${L[@]}" --tls --tls-dir "$certs" --target-pid "$pid"
	j=$tmp/tls_echo_both_directions.json
	in=$(field "$j" tls_links_in)
	ext=$(field "$j" external_in)
	# fedhub dials once per bench domain it sends to: at least one link
	verdict tls_echo_both_directions test "$rc" = 0 -a "$(field "$j" tls_links_out)" = 2 \
		-a "${in//[^0-9]/}0" -ge 10 -a "${ext//[^0-9]/}0" -ge 10 \
		-a "$(field "$j" lost)" = 0 -a "$(field "$j" delivered)" != 0

	# the target's CA, a bench certificate for bench1.fhb alone
	fb=$tmp/fallback
	mkdir -p "$fb"
	cp "$certs/ca.pem" "$fb/"
	printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:bench1.fhb" >"$fb/ext"
	{ openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$fb/bench.key" &&
		openssl req -new -key "$fb/bench.key" -subj /CN=bench1.fhb -out "$fb/csr" &&
		openssl x509 -req -in "$fb/csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" -CAcreateserial \
			-CAserial "$fb/srl" -days 2 -extfile "$fb/ext" -out "$fb/bench.pem"; } >/dev/null 2>&1
	run tls_dialback_fallback -- s2s-component --links 2 --domains 2 --seconds 1 --warmup 0.5 --drain 5 \
		--window 16 --tls --tls-dir "$fb" --target-pid "$pid"
	j=$tmp/tls_dialback_fallback.json
	verdict tls_dialback_fallback test "$rc" = 0 -a "$(field "$j" tls_links_out)" = 2 \
		-a "$(field "$j" external_out)" = 1 -a "$(field "$j" lost)" = 0 -a "$(field "$j" delivered)" != 0
	# with s2s_tls required, fedhub's dialback verification streams must
	# run STARTTLS too: the key never travels in the clear
	pv=$(field "$j" plain_verify_in)
	verdict tls_dialback_verify_over_tls test "$pv" = 0

	bench/peers/mkcerts.sh "$tmp/other" 4 >/dev/null 2>&1
	run tls_untrusted_target_fails -- s2s-component "${L[@]}" --tls --tls-dir "$tmp/other" --setup-timeout 10
	verdict tls_untrusted_target_fails test "$rc" = 2 -a "$(field "$tmp/tls_untrusted_target_fails.json" sent)" = 0 \
		-a "$(grep -c 'does not prove comp.fhb' "$tmp/tls_untrusted_target_fails.out")" -ge 1
else
	echo "not ok tls_target_start"
	fails=$((fails + 1))
fi
target_stop

# --- fedhub without certificates ----------------------------------------------
if start_target; then
	bench/peers/mkcerts.sh "$tmp/plain" 4 >/dev/null 2>&1
	run tls_plain_target_fails -- s2s-component "${L[@]}" --tls --tls-dir "$tmp/plain" --setup-timeout 10
	verdict tls_plain_target_fails test "$rc" = 2 -a "$(field "$tmp/tls_plain_target_fails.json" sent)" = 0 \
		-a "$(grep -c 'offers no STARTTLS' "$tmp/tls_plain_target_fails.out")" -ge 1

	run transit_runs_as_echo -- transit "${L[@]}" --target-pid "$pid"
	j=$tmp/transit_runs_as_echo.json
	verdict transit_runs_as_echo test "$rc" = 0 -a "$(field "$j" scenario)" = transit \
		-a "$(field "$j" lost)" = 0 -a "$(field "$j" delivered)" != 0
else
	echo "not ok plain_target_start"
	fails=$((fails + 1))
fi
target_stop
[ "$fails" -eq 0 ]
