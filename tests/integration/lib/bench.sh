# shellcheck shell=bash
# bench.sh: the start of every fedhub-bench test (t_bench_*.sh), sourced with
# a name: strict variables, the repository as the working directory, $BENCH
# (the bench binary: BENCH=path, ./fedhub-bench or the release build) and
# $tmp, a fresh directory /tmp/NAME-XXXXXX removed at exit.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../../.." || exit 1
BENCH=${BENCH:-./fedhub-bench}
[ -x "$BENCH" ] || BENCH=build/release/fedhub-bench
tmp=$(mktemp -d "/tmp/${1:?bench.sh needs a name}-XXXXXX")

# What follows is shared by the scripts: $fails counts failed cases; the EXIT
# trap calls the script's own cleanup() if it defines one, stops the target
# started by target_start and removes $tmp.
fails=0
target_kind=""
target_dir=""
bench_exit() {
	declare -F cleanup >/dev/null && cleanup
	target_stop
	rm -rf "$tmp"
}
trap bench_exit EXIT
# The targets' ports are shared with `make bench`: one at a time.
exec 9>/tmp/fhb-bench.lock
flock -w 600 9 || { echo "not ok bench_lock (another bench run holds /tmp/fhb-bench.lock)"; exit 1; }

need_built() { # need_built fedhub-bench [fedhub]: those are built, else a failed case and exit
	local b
	for b in "$@"; do
		case $b in
		fedhub-bench) [ -x "$BENCH" ] && continue ;;
		*) { [ -x "$b" ] || [ -x "build/release/$b" ]; } && continue ;;
		esac
		echo "not ok built ($b is missing: run make)"
		exit 1
	done
}

target_start() { # target_start KIND ARGS...: bench/peers/target.sh start KIND DIR CPUS ARGS;
	# sets target_out (what it printed) and target_pid (empty when it failed)
	target_kind=$1
	shift
	target_dir=$(mktemp -d "$tmp/target-$target_kind-XXXXXX")
	target_out=$(bench/peers/target.sh start "$target_kind" "$target_dir" "0-$(($(nproc) - 1))" "$@")
	target_pid=$(sed -n 's/^pid=//p' <<<"$target_out")
	[ -n "$target_pid" ]
}
target_stop() {
	[ -n "$target_dir" ] && bench/peers/target.sh stop "$target_kind" "$target_dir" >/dev/null 2>&1
	target_dir=""
}

run() { # run NAME -- BENCH ARGS...: one bench run; $tmp/NAME.json, $tmp/NAME.out; sets rc
	local name=$1
	shift 2
	timeout 60 "$BENCH" "$@" --quiet --json "$tmp/$name.json" >"$tmp/$name.out" 2>&1
	# shellcheck disable=SC2034 # read by the scripts
	rc=$?
}

field() { # field FILE NAME: a value from the bench's JSON: NAME (a.b for nested) in the
	# first target, else at the top level (scenario); "missing" when absent
	python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
def get(v):
    for k in sys.argv[2].split("."):
        v = v.get(k, "missing") if isinstance(v, dict) else "missing"
    return v
v = get(list(d.get("targets", {}).values())[0]) if d.get("targets") else "missing"
print(get(d) if v == "missing" else v)' "$1" "$2" 2>/dev/null || echo missing
}

report() { # report NAME OK DETAIL: ok NAME when OK is 1, else not ok, DETAIL and the run's output
	if [ "$2" = 1 ]; then
		echo "ok $1"
	else
		fails=$((fails + 1))
		echo "not ok $1 (${*:3})"
		sed 's/^/#   /' "$tmp/$1.out" 2>/dev/null | tail -n 15
	fi
}
