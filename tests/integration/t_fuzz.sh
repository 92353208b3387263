#!/bin/bash
# Runs each libFuzzer target (ASan + UBSan) for a bounded time over its seed
# corpus. A finding (crash, leak, sanitizer report) fails the test. Longer runs:
#   make fuzz && build/fuzz/fuzz_xml -max_total_time=1800 tests/fuzz/corpus/xml
cd "$(dirname "$0")/../.."
SECS=${FUZZ_SECONDS:-30}
make -s fuzz >/dev/null 2>&1 || { echo "not ok fuzz_build"; exit 1; }
rc=0
for t in build/fuzz/fuzz_*; do
	name=${t##*/}
	corpus=tests/fuzz/corpus/${name#fuzz_}
	work=$(mktemp -d)
	cp -r "$corpus"/. "$work"/ 2>/dev/null
	if timeout $((SECS + 60)) "$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$work/" "$work" >"$work/log" 2>&1; then
		execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$work/log" | grep -oE '[0-9]+$')
		[ -z "$execs" ] && execs=$(grep -oE '#[0-9]+' "$work/log" | tail -1)
		echo "ok $name (${SECS}s, $execs runs)"
	else
		echo "not ok $name"
		tail -40 "$work/log"
		rc=1
	fi
	rm -rf "$work"
done
exit $rc
