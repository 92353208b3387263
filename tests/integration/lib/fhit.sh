# shellcheck shell=bash
# fhit.sh: shell helpers for the integration tests that need no XMPP peer.
# Sourced by tests/integration/t_*.sh. Every process started through fh_spawn is
# recorded and killed by PID in fh_cleanup (installed as the EXIT trap), and the
# whole script is bounded by a watchdog that SIGTERMs the script itself.
#
# Contract for the script: set FH_NAME, call fh_init SECONDS, then report each
# case with fh_ok NAME / fh_fail NAME WHY, and end with fh_done.

FH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
FH_BIN=${FEDHUB:-$FH_REPO/fedhub}
FH_PASS=0
FH_FAIL=0
FH_PIDS=()
FH_DIR=

fh_log() { echo "# $*" >&2; }

fh_ok() { FH_PASS=$((FH_PASS + 1)); echo "ok $1"; }
fh_fail() {
	FH_FAIL=$((FH_FAIL + 1))
	echo "not ok $1${2:+ # $2}"
}

fh_cleanup() {
	local pid
	for pid in "${FH_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${FH_PIDS[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$pid" 2>/dev/null
	done
	[ -n "$FH_WATCHDOG" ] && kill "$FH_WATCHDOG" 2>/dev/null
	if [ -n "$FH_DIR" ] && [ "${FHIT_KEEP:-0}" != 1 ]; then
		rm -rf "$FH_DIR"
	elif [ -n "$FH_DIR" ]; then
		fh_log "kept $FH_DIR"
	fi
}

# fh_init SECONDS: temp dir, cleanup trap, and a watchdog bounding the script.
fh_init() {
	FH_DIR=$(mktemp -d "/tmp/fhit-${FH_NAME:-sh}-XXXXXX")
	trap fh_cleanup EXIT
	trap 'fh_fail "${FH_NAME}-harness" "interrupted or deadline reached"; exit 1' TERM INT
	local self=$$
	# The watchdog must not hold our stdout open (a reader of the script's
	# output would wait for it), and its sleep must die with it.
	(
		trap 'kill "$sp" 2>/dev/null; exit 0' TERM
		sleep "$1" &
		sp=$!
		# bash runs the TERM trap only once its foreground command ends, so
		# that command (a child of the script) is signalled too.
		wait "$sp" && { kill -TERM "$self"; pkill -TERM -P "$self"; }
	) >/dev/null 2>&1 </dev/null &
	FH_WATCHDOG=$!
}

fh_done() {
	fh_log "${FH_NAME}: $FH_PASS passed, $FH_FAIL failed"
	[ "$FH_FAIL" -eq 0 ] && [ "$FH_PASS" -gt 0 ]
	exit $?
}

fh_have_fedhub() { [ -x "$FH_BIN" ]; }

# fh_fail_all WHY: what the script needs is missing: every case in $CASES
# fails with WHY, and the script ends.
fh_fail_all() {
	local c
	for c in $CASES; do fh_fail "$c" "$1"; done
	fh_done
}

# fh_port_open PORT: true when something accepts TCP on 127.0.0.1:PORT.
fh_port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# fh_wait_ports SECONDS PID PORT...: wait until every port accepts, while PID lives.
fh_wait_ports() {
	local limit=$(($1 * 10)) pid=$2 p i
	shift 2
	for p in "$@"; do
		for ((i = 0; ; i++)); do
			fh_port_open "$p" && break
			kill -0 "$pid" 2>/dev/null || return 1
			[ "$i" -ge "$limit" ] && return 1
			sleep 0.1
		done
	done
}

# fh_spawn LOG CMD...: start CMD in the background, output to LOG; sets FH_LAST.
fh_spawn() {
	local logf=$1
	shift
	"$@" >"$logf" 2>&1 </dev/null &
	FH_LAST=$!
	FH_PIDS+=("$FH_LAST")
	fh_log "started pid $FH_LAST: $*"
}

# fh_wait_exit PID SECONDS: wait for PID (our child) to exit within SECONDS;
# sets FH_RC to its status, or returns 1 if it is still running.
fh_wait_exit() {
	local pid=$1 limit i
	limit=$(awk "BEGIN{print int($2 * 20)}")
	for ((i = 0; i < limit; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			FH_RC=$?
			return 0
		fi
		sleep 0.05
	done
	kill -0 "$pid" 2>/dev/null && return 1
	wait "$pid"
	FH_RC=$?
}

# fh_xmpp_exchange PORT SECONDS INPUT_FILE: connect, send the file, and print
# what the server sends within SECONDS (the connection stays open meanwhile).
fh_xmpp_exchange() {
	local port=$1 secs=$2 input=$3
	timeout "$secs" bash -c '
		exec 3<>/dev/tcp/127.0.0.1/'"$port"' || exit 1
		cat "$1" >&3
		cat <&3' _ "$input" 2>/dev/null
	return 0
}
