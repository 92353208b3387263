# shellcheck shell=bash
# bench.sh: the start of every fedhub-bench test (t_bench_*.sh), sourced with
# a name: strict variables, the repository as the working directory, $BENCH
# (the bench binary: BENCH=path, ./fedhub-bench or the release build) and
# $tmp, a fresh directory /tmp/NAME-XXXXXX the script removes in its cleanup.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../../.." || exit 1
BENCH=${BENCH:-./fedhub-bench}
[ -x "$BENCH" ] || BENCH=build/release/fedhub-bench
tmp=$(mktemp -d "/tmp/${1:?bench.sh needs a name}-XXXXXX")
