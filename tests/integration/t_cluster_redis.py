#!/usr/bin/env python3
"""The cluster registry against a real Redis: two fedhub nodes share one
redis-server (started here, its own directory, no persistence). Only one node
owns a remote domain (the lease in Redis) and opens the link; the other's link
forwards; kill -9 of the owner: the other claims the lease within about
lease_time and delivers; Redis killed and restarted: routing goes on and the
leases are reconciled (node key back, lease re-acquired with a newer token);
an owner cut off from Redis stops sending after lease_time - margin and sends
again once Redis is back."""
import os, re, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from fakepeer import Component, RemoteServer, attr  # noqa: E402
from cluster import Redis  # noqa: E402
from hubproc import Hub, Results, metrics  # noqa: E402

REDIS = 27079
N1 = dict(s2s=27001, comp=27002, http=27003, node=27010)
N2 = dict(s2s=27011, comp=27012, http=27013, node=27020)
REMOTE = 27050
LEASE_MS = 2000
MARGIN_MS = 500  # max(lease/5, 500 ms)

T = Results()
check = T.check


def conf(n, name, secret):
    return """
[hub]
workers 2
domain %s.hub.fake
listen s2s 127.0.0.1:%d
listen component 127.0.0.1:%d
http 127.0.0.1:%d
log_level debug
connect_timeout 10
retry_min 1
[component echo.fake]
secret s3cret
[route remote.fake]
connect 127.0.0.1:%d
[cluster]
redis 127.0.0.1:%d
node_id %s
node_listen 127.0.0.1:%d
cluster_secret_file %s
lease_time %dms
redis_timeout 300ms
""" % (name, n["s2s"], n["comp"], n["http"], REMOTE, REDIS, name, n["node"], secret, LEASE_MS)


def wait_for(fn, timeout, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()


def log_text(hub):
    with open(hub.logs[-1], errors="replace") as f:
        return f.read()


def main():
    tmp = tempfile.mkdtemp(prefix="fedhub-cluster-")
    secret = os.path.join(tmp, "cluster.key")
    with open(secret, "w") as f:
        f.write("test-cluster-secret-0123456789abcdef0123456789\n")
    os.chmod(secret, 0o600)
    redis = Redis(tmp, REDIS)
    rs = None
    hubs = []
    try:
        if not check("redis-server starts", redis.start()):
            return
        rs = RemoteServer("remote.fake", REMOTE)
        h1 = Hub(conf(N1, "n1", secret), tempfile.mkdtemp(prefix="n1-", dir=tmp), ready_ports=(N1["comp"],))
        h2 = Hub(conf(N2, "n2", secret), tempfile.mkdtemp(prefix="n2-", dir=tmp), ready_ports=(N2["comp"],))
        hubs[:] = [h1, h2]
        if check("two nodes start", h1.start() and h2.start()):
            run(redis, rs, h1, h2)
    except Exception as e:  # a case that broke the script is a failure
        check("the cases ran to the end", False, repr(e))
    finally:
        if rs:
            rs.close()
        h2 = hubs[1] if len(hubs) > 1 else None
        if hubs:
            hubs[0].kill()  # killed in the test (or here): not finish()ed
            if hubs[0].log:
                hubs[0].log.close()
        if h2:
            h2.finish(T)
        redis.kill()
    T.exit()


def delivered(rs, mid):
    return any("id='%s'" % mid in m for m in rs.messages())


def run(redis, rs, h1, h2):
    check("both nodes register in Redis",
          wait_for(lambda: redis.get("fh:node:n1") and redis.get("fh:node:n2"), 5),
          (redis.get("fh:node:n1"), redis.get("fh:node:n2")))
    v = redis.get("fh:node:n1") or ""
    check("a node key holds its address and a MAC", re.match(r"^127\.0\.0\.1:27010 [0-9a-f]{32}$", v), v)
    check("one dialback secret value shared in Redis", redis.get("fh:secret:dialback"))
    m1 = metrics(N1["http"])
    check("fedhub_redis_up 1", m1.get("fedhub_redis_up") == 1, m1.get("fedhub_redis_up"))
    check("fedhub_cluster_nodes counts both", wait_for(lambda: metrics(N1["http"]).get("fedhub_cluster_nodes") == 2, 3),
          metrics(N1["http"]).get("fedhub_cluster_nodes"))

    c1 = Component(N1["comp"], "echo.fake", "s3cret")
    c2 = Component(N2["comp"], "echo.fake", "s3cret")
    # node 1 sends first: it takes the lease and opens the one link
    c1.send("<message from='a@echo.fake' to='u@remote.fake' id='m1'><body>1</body></message>")
    check("node 1's stanza delivered", wait_for(lambda: delivered(rs, "m1"), 8), rs.messages())
    lease = redis.get("fh:lease:remote.fake") or ""
    check("node 1 owns remote.fake in Redis", lease.startswith("n1 "), lease)
    tok1 = int(lease.split()[1]) if lease.startswith("n1 ") else 0
    check("the fencing token counter matches", redis.get("fh:token:remote.fake") == str(tok1),
          redis.get("fh:token:remote.fake"))
    conns_before = rs.inbound_conns
    # node 2's stanza for the same remote: its link forwards, it never connects
    c2.send("<message from='b@echo.fake' to='u@remote.fake' id='m2'><body>2</body></message>")
    fwd = wait_for(lambda: re.search(r"s2s out remote\.fake: owned by node \d+ \(token %d\): forwarding" % tok1,
                                     log_text(h2)), 5)
    check("node 2's link turns into a forward link under node 1's token", fwd)
    time.sleep(0.5)
    check("node 2 opened no link to the remote", rs.inbound_conns == conns_before, rs.inbound_conns)
    check("the lease stays node 1's", (redis.get("fh:lease:remote.fake") or "").startswith("n1 "))
    check("node 1 counts the lease it holds", metrics(N1["http"]).get("fedhub_cluster_leases_held") == 1)
    check("node 2 holds none", metrics(N2["http"]).get("fedhub_cluster_leases_held") == 0)

    # kill -9 the owner: node 2 claims the lease within about lease_time
    t0 = time.time()
    h1.kill()
    got = wait_for(lambda: (redis.get("fh:lease:remote.fake") or "").startswith("n2 "), LEASE_MS / 1000 * 3)
    took = time.time() - t0
    lease = redis.get("fh:lease:remote.fake") or ""
    check("after kill -9 of the owner node 2 takes the lease", got, lease)
    print("# takeover %.2fs after kill -9 (lease_time %.1fs)" % (took, LEASE_MS / 1000))
    check("... within lease_time + 1 s", took <= LEASE_MS / 1000 + 1.0, "%.2fs" % took)
    tok2 = int(lease.split()[1]) if lease.startswith("n2 ") else 0
    check("... with a newer fencing token", tok2 > tok1, (tok1, tok2))
    check("the dead node leaves the directory", wait_for(lambda: redis.cmd("SISMEMBER", "fh:nodes", "n1") == 0, 3))
    c2.send("<message from='b@echo.fake' to='u@remote.fake' id='m3'><body>3</body></message>")
    check("node 2 now delivers itself", wait_for(lambda: delivered(rs, "m3"), 8), rs.messages())
    check("log line for the lease gain", "cluster: lease on remote.fake gained (token %d)" % tok2 in log_text(h2))

    # Redis killed and restarted at once: routing goes on, leases reconciled
    redis.kill()
    c2.send("<message from='b@echo.fake' to='u@remote.fake' id='m4'><body>4</body></message>")
    check("Redis down: the owner still sends (inside its lease)", wait_for(lambda: delivered(rs, "m4"), 1.2))
    check("/metrics says redis down", wait_for(lambda: metrics(N2["http"]).get("fedhub_redis_up") == 0, 2))
    check("redis-server restarts", redis.start())
    lease = wait_for(lambda: (redis.get("fh:lease:remote.fake") or "").startswith("n2 ")
                     and redis.get("fh:lease:remote.fake"), 4) or ""
    check("after the restart the owner re-acquires its lease", lease.startswith("n2 "), lease)
    tok3 = int(lease.split()[1]) if lease.startswith("n2 ") else 0
    check("... with a token above every earlier one (Redis lost the counter)", tok3 > tok2, (tok2, tok3))
    check("the node key is back", wait_for(lambda: redis.get("fh:node:n2"), 2))
    check("the dialback secret value is put back", wait_for(lambda: redis.get("fh:secret:dialback"), 2))
    c2.send("<message from='b@echo.fake' to='u@remote.fake' id='m5'><body>5</body></message>")
    check("routing after the restart", wait_for(lambda: delivered(rs, "m5"), 5))

    # cut off from Redis (stopped, not restarted): self-fencing
    time.sleep(0.8)  # a renewal in between
    t0 = time.time()
    redis.kill()
    fence = wait_for(lambda: "cluster: lease on remote.fake self-fenced" in log_text(h2), LEASE_MS / 1000 * 2)
    took = time.time() - t0
    check("the owner cut off from Redis self-fences", fence)
    print("# self-fenced %.2fs after Redis stopped (lease_time - margin = %.1fs)" % (took, (LEASE_MS - MARGIN_MS) / 1000))
    check("... no later than lease_time - margin", took <= (LEASE_MS - MARGIN_MS) / 1000 + 0.2, "%.2fs" % took)
    c2.send("<message from='b@echo.fake' to='u@remote.fake' id='m6'><body>6</body></message>")
    time.sleep(1.0)
    check("a fenced owner sends nothing", not delivered(rs, "m6"), rs.messages())
    check("... and bounces nothing (the stanza waits)", not bounced(c2, "m6"))
    check("redis-server restarts again", redis.start())
    check("the held stanza goes out once the lease is back", wait_for(lambda: delivered(rs, "m6"), 6))


def bounced(c, mid):
    """Reads what the component has; True if a bounce of mid is among it."""
    got = False
    while True:
        try:
            el = c.recv(0.3)
        except (OSError, EOFError):
            return got
        got |= "type='error'" in el and attr(el, "id") == mid


if __name__ == "__main__":
    main()
