#!/bin/bash
# Runs each libFuzzer target (ASan + UBSan) for FUZZ_SECONDS (default 15)
# over a copy of its seed corpus tests/fuzz/corpus/NAME (fuzz_NAME), after
# replaying every seed. A finding (crash, leak, sanitizer report, timeout)
# fails the test and the input is kept in build/fuzz/findings/. With 6
# targets the default costs about 95 s. Longer runs:
#   make fuzz && build/fuzz/fuzz_x509 -max_total_time=1800 tests/fuzz/corpus/x509
cd "$(dirname "$0")/../.."
SECS=${FUZZ_SECONDS:-15}
make -s fuzz >/dev/null 2>&1 || { echo "not ok fuzz_build"; exit 1; }
found=build/fuzz/findings
rc=0
n=0
for t in build/fuzz/fuzz_*; do
	[ -x "$t" ] || continue
	name=${t##*/}
	corpus=tests/fuzz/corpus/${name#fuzz_}
	n=$((n + 1))
	if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
		echo "not ok $name # no seed corpus in $corpus"
		rc=1
		continue
	fi
	work=$(mktemp -d)
	mkdir "$work/corpus"
	cp -r "$corpus"/. "$work/corpus"/
	mkdir -p "$found"
	# -timeout: one input running for 10 s is a loop; -rss_limit_mb: a leak
	# or an unbounded allocation; stdin from /dev/null so nothing can block on it
	if timeout $((SECS + 60)) nice "$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
		-print_final_stats=1 -artifact_prefix="$found/$name-" "$work/corpus" >"$work/log" 2>&1 </dev/null; then
		execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$work/log" | grep -oE '[0-9]+$')
		echo "ok $name (${SECS}s, ${execs:-?} runs, $(ls "$corpus" | wc -l) seeds)"
	else
		echo "not ok $name"
		tail -40 "$work/log"
		rc=1
	fi
	rm -rf "$work"
done
[ "$n" -gt 0 ] || { echo "not ok fuzz_targets # none built"; exit 1; }
exit $rc
