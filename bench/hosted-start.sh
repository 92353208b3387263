#!/bin/bash
# bench/hosted-start.sh — how long fedhub takes to start with N hosted domains
# (`[domain]` sections without certificates: dialback only), and its RSS then.
#
#   bench/hosted-start.sh [N] [RUNS]      (defaults 100000, 3)
#
# Writes a config with N `[domain dNNNNNN.example]` sections and one worker,
# starts ./fedhub on it RUNS times, and prints for each run the time from
# exec to its s2s listener accepting a connection, and the RSS at that
# moment. Ports 29269 (s2s), 29347 (component), 29280 (http) on 127.0.0.1.
set -u
cd "$(dirname "$0")/.."
N=${1:-100000}
RUNS=${2:-3}
dir=$(mktemp -d /tmp/fedhub-hosted.XXXXXX)
trap 'rm -rf "$dir"' EXIT
{
	printf '[hub]\nworkers 1\nlisten s2s 127.0.0.1:29269\nlisten component 127.0.0.1:29347\nhttp 127.0.0.1:29280\n'
	seq -f '[domain d%06g.example]' 0 $((N - 1))
} >"$dir/hub.conf"
exec python3 - "$dir/hub.conf" "$N" "$RUNS" <<'PY'
import signal, socket, subprocess, sys, time
conf, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for r in range(runs):
    t0 = time.time()
    p = subprocess.Popen(["./fedhub", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    up = None
    try:
        while time.time() - t0 < 30 and p.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", 29269), timeout=0.2).close()
                up = time.time() - t0
                break
            except OSError:
                time.sleep(0.002)
        rss = 0
        if up is not None:
            for line in open("/proc/%d/status" % p.pid):
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if up is None:
        print("run %d: fedhub did not listen within 30 s (exit %s)" % (r + 1, p.returncode))
        sys.exit(1)
    print("run %d: %d hosted domains, listening after %.3f s, RSS %.1f MiB (%.2f KiB per domain)"
          % (r + 1, n, up, rss / 1024, rss / n))
PY
