#!/bin/bash
# Run every test: the cmocka unit test binaries, then each integration test
# (tests/integration/t_*). Integration tests print one line per case,
# "ok NAME" or "not ok NAME" (TAP style), and bound their own time.
# Ends with the line "N passed, N failed".
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/release}
pass=0; fail=0; ran=0; failed_names=()
log=$(mktemp); trap 'rm -f "$log"' EXIT

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	echo "== unit: ${t##*/}"
	timeout 300 "$t" >"$log" 2>&1; rc=$?
	cat "$log"
	p=$(grep -oE '^\[  PASSED  \] [0-9]+' "$log" | awk '{s+=$4} END{print s+0}')
	f=$(grep -oE '^\[  FAILED  \] [0-9]+' "$log" | awk '{s+=$4} END{print s+0}')
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	pass=$((pass + p)); fail=$((fail + f))
	[ "$f" -gt 0 ] && failed_names+=("${t##*/}")
done

# selected NAME: no ONLY, or ONLY (words, space or comma separated) names the
# script with or without its extension (ONLY=t_route_fake or t_route_fake.py)
selected() {
	[ -z "${ONLY:-}" ] && return 0
	local w
	for w in ${ONLY//,/ }; do
		[ "$w" = "$1" ] || [ "$w" = "${1%.*}" ] && return 0
	done
	return 1
}

for t in tests/integration/t_*; do
	[ -x "$t" ] || continue
	selected "${t##*/}" || continue
	ran=$((ran + 1))
	echo "== integration: ${t##*/}"
	timeout 600 "$t" >"$log" 2>&1; rc=$?
	cat "$log"
	p=$(grep -cE '^ok ' "$log")
	f=$(grep -cE '^not ok ' "$log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "not ok ${t##*/} exited $rc"; fi
	pass=$((pass + p)); fail=$((fail + f))
	[ "$f" -gt 0 ] && failed_names+=("${t##*/}")
done

if [ -n "${ONLY:-}" ] && [ "$ran" -eq 0 ]; then
	echo "not ok ONLY=$ONLY matches no integration test"; fail=$((fail + 1))
fi
[ "${#failed_names[@]}" -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
