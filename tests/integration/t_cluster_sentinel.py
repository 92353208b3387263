#!/usr/bin/env python3
"""Redis Sentinel failover under a clustered fedhub: two redis-servers (a
master and its replica), three sentinels (`redis-server --sentinel`) and two
fedhub nodes whose [cluster] section names only the sentinels
(`sentinel HOST:PORT MASTER-NAME`, lib/cluster.py's nodes otherwise).

Components on both nodes send to one remote domain at a steady rate while
the master is killed (SIGKILL, by PID) and the sentinel the nodes talk to
hangs (SIGSTOP). The sentinels promote the replica;
the nodes must follow it: /health and /metrics say redis up again with a
master change counted, the log names the new master, the node keys and the
lease on remote.fake are renewed on the new master (their TTL is shorter
than the time waited, so they are there only if written there), and routing
goes on throughout: every stanza sent is delivered or bounced
(delivered + bounced == sent, by id), and what is sent after the failover
is delivered.

Ports 28100-28199 (lib/cluster.py's plan): base+0 unused (no plain redis),
nodes at base+10/+20, master base+60, replica base+61, sentinels
base+62..+64 and one that monitors nothing (named first) base+65, the fake
remote.fake base+70."""
import os, signal, subprocess, sys, tempfile, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from cluster import REDIS, Cluster, Collector, cluster_supported, redis_cmd  # noqa: E402
from fakepeer import Component, RemoteServer, attr  # noqa: E402
from hubproc import Results, health, metrics  # noqa: E402

BASE = 28100
MASTER, REPLICA = BASE + 60, BASE + 61
SENTINELS = (BASE + 62, BASE + 63, BASE + 64)
STRANGER = BASE + 65  # a sentinel that monitors nothing: named first in the config
REMOTE = BASE + 70
NAME = "fhmaster"
LEASE_MS = 2000
T = Results()
SENDER_START = [0.0]
check = T.check

SENTINEL_CONF = """port %(port)d
bind 127.0.0.1
daemonize no
dir %(dir)s
sentinel resolve-hostnames no
sentinel monitor %(name)s 127.0.0.1 %(master)d 2
sentinel down-after-milliseconds %(name)s 500
sentinel failover-timeout %(name)s 2000
sentinel parallel-syncs %(name)s 1
"""

# every node: the three sentinels, nothing else to find Redis with
CLUSTER_CONF = "[cluster]\n" + "".join("sentinel 127.0.0.1:%d %s\n" % (p, NAME) for p in (STRANGER,) + SENTINELS) + """\
node_id node%(node)d
node_listen 127.0.0.1:%(port)d
cluster_secret_file %(secret)s
lease_time %(lease)dms
redis_timeout 300ms
"""


class Proc:
    """A redis-server (or sentinel) of this script, stopped by PID."""

    def __init__(self, tmp, name, args, port):
        self.name, self.port = name, port
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.logf = open(os.path.join(self.dir, name + ".log"), "w")
        self.proc = subprocess.Popen([REDIS] + args(self.dir), stdout=self.logf, stderr=self.logf,
                                     stdin=subprocess.DEVNULL)

    def ready(self, within=10):
        deadline = time.time() + within
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if redis_cmd(self.port, "PING") == "PONG":
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.logf.close()

    def text(self):
        with open(os.path.join(self.dir, self.name + ".log"), errors="replace") as f:
            return f.read()


def redis_args(port, master=None):
    def f(d):
        a = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", d,
             "--daemonize", "no", "--databases", "1"]
        return a + (["--replicaof", "127.0.0.1", str(master)] if master else [])
    return f


def sentinel_args(port, monitor=True):
    def f(d):
        p = os.path.join(d, "sentinel.conf")  # the sentinel rewrites it: its own file
        text = SENTINEL_CONF % {"port": port, "dir": d, "name": NAME, "master": MASTER}
        with open(p, "w") as fh:
            fh.write(text if monitor else "\n".join(text.splitlines()[:5]) + "\n")
        return [p, "--sentinel"]
    return f


def q(port, *args):
    try:
        return redis_cmd(port, *args)
    except OSError as e:
        return "(%s)" % e


def info(port, section):
    v = q(port, "INFO", section)
    return dict(l.split(":", 1) for l in (v or "").split("\r\n") if ":" in l and not l.startswith("#"))


def master_of(sport):
    v = q(sport, "SENTINEL", "get-master-addr-by-name", NAME)
    return int(v[1]) if isinstance(v, list) and len(v) == 2 else None


def sentinel_view(sport):
    """SENTINEL master NAME as a dict ({} if not answered)."""
    v = q(sport, "SENTINEL", "master", NAME)
    return dict(zip(v[::2], v[1::2])) if isinstance(v, list) else {}


def replica_flags(sport):
    """The flags of each replica the sentinel lists ("slave" alone: up)."""
    v = q(sport, "SENTINEL", "replicas", NAME)
    if not isinstance(v, list):
        return None
    return [dict(zip(r[::2], r[1::2])).get("flags") for r in v]


def wait(cond, within, step=0.05):
    deadline = time.time() + within
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


class Sender:
    """Components on both nodes send to u@remote.fake at about rate/s each,
    in a thread, until stop(); sent ids are recorded with their send time."""

    def __init__(self, comps, rate=100):
        self.comps, self.rate, self.sent, self.lock = comps, rate, [], threading.Lock()
        self.run = True
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        j = 0
        while self.run:
            for i, c in self.comps.items():
                mid = "s%d-%d" % (i, j)
                try:
                    c.send("<message from='bot@c%d.fake' to='u@remote.fake' id='%s'><body>x</body></message>"
                           % (i, mid))
                    with self.lock:
                        self.sent.append((mid, time.time()))
                except OSError:
                    pass
            j += 1
            time.sleep(1.0 / self.rate)

    def stop(self):
        self.run = False
        self.th.join(5)
        with self.lock:
            return list(self.sent)


LIMIT_S = 150
STARTED = {"procs": [], "cl": None}  # what the watchdog must stop


def watchdog():
    """The script's time bound: stop everything it started, by PID, and fail."""
    print("not ok the script ran within %d s" % LIMIT_S, flush=True)
    for p in STARTED["procs"]:
        if p.proc.poll() is None:
            p.proc.kill()
    cl = STARTED["cl"]
    if cl:
        for n in cl.nodes:
            n.hub.kill()
        if cl.haproxy.proc is not None and cl.haproxy.proc.poll() is None:
            cl.haproxy.proc.kill()
        subprocess.call(["rm", "-rf", cl.tmp])
    os._exit(1)


def main():
    timer = threading.Timer(LIMIT_S, watchdog)
    timer.daemon = True
    timer.start()
    if not cluster_supported(BASE):
        check("this fedhub accepts lib/cluster.py's [cluster] section (fedhub -t)", False)
        T.exit()
    tmp = tempfile.mkdtemp(prefix="fedhub-clsen-")
    comps = "".join("[component c%d.fake]\nsecret s3cret\n" % i for i in (1, 2))
    cl = Cluster(tmp, BASE, nodes=2, lease_ms=LEASE_MS, cluster_conf=CLUSTER_CONF,
                 extra_conf="[route remote.fake]\nconnect 127.0.0.1:%d\n" % REMOTE + comps)
    cl.redis = None  # no plain Redis: the servers and sentinels are this script's
    procs, rs = [], None
    STARTED["procs"], STARTED["cl"] = procs, cl
    try:
        if setup(tmp, procs) and check("2 nodes configured with 3 sentinels start", cl.start(), cl.why):
            rs = RemoteServer("remote.fake", REMOTE)
            failover(cl, rs, procs)
    except Exception as e:  # a case that broke the script is a failure
        import traceback
        traceback.print_exc()
        check("the cases ran to the end", False, repr(e))
    finally:
        if rs:
            rs.close()
        failed = not T.all_ok()
        for p in procs:
            p.kill(signal.SIGTERM)
            if failed:
                print("---- %s (last 1500 bytes)\n%s" % (p.name, p.text()[-1500:]))
        cl.finish(T)
    T.exit()


def setup(tmp, procs):
    m = Proc(tmp, "master", redis_args(MASTER), MASTER)
    procs.append(m)
    r = Proc(tmp, "replica", redis_args(REPLICA, MASTER), REPLICA)
    procs.append(r)
    if not check("a Redis master and its replica start", m.ready() and r.ready()):
        return False
    check("the replica is in sync", wait(lambda: info(REPLICA, "replication").get("master_link_status") == "up", 10),
          info(REPLICA, "replication"))
    sents = []
    for k, port in enumerate(SENTINELS):
        s = Proc(tmp, "sentinel%d" % (k + 1), sentinel_args(port), port)
        procs.append(s)
        sents.append(s)
    stranger = Proc(tmp, "sentinel0", sentinel_args(STRANGER, monitor=False), STRANGER)
    procs.append(stranger)
    if not check("three sentinels start (redis-server --sentinel), and one that monitors nothing",
                 all(s.ready() for s in sents) and stranger.ready()):
        return False
    # a failover needs every sentinel to know the replica and the other two
    def known():
        return all(sentinel_view(p).get("num-slaves") == "1" and sentinel_view(p).get("num-other-sentinels") == "2"
                   for p in SENTINELS)
    return check("each sentinel knows the replica and the two other sentinels", wait(known, 15, step=0.2),
                 [sentinel_view(p) for p in SENTINELS])


def redis_state(n):
    st, body = health(n.ports.http)
    return body.get("redis") if isinstance(body, dict) else None


def follow(nodes, act, new_port, changes_before, what):
    """act() makes the sentinels move the master to new_port; both nodes
    must follow: log line, /health, /metrics, node keys and the lease
    renewed there. Returns the time the checks began (after which every
    stanza sent must be delivered)."""
    t0 = time.time()
    print("# %s at %.2fs after the start" % (what, t0 - SENDER_START[0]))
    act()
    promoted = wait(lambda: all(master_of(p) == new_port for p in SENTINELS[1:]), 20, step=0.1)
    check("%s: the sentinels name 127.0.0.1:%d master" % (what, new_port), promoted,
          [master_of(p) for p in SENTINELS[1:]])
    print("# %s: sentinels switched %.2fs after" % (what, time.time() - t0))
    check("... it is a master now", wait(lambda: info(new_port, "replication").get("role") == "master", 5),
          info(new_port, "replication").get("role"))
    line = "cluster: redis master %s is 127.0.0.1:%d (" % (NAME, new_port)
    check("... both nodes follow it (log: %s...)" % line, wait(lambda: all(line in n.log_text() for n in nodes), 10))
    check("... /health says redis up on both nodes",
          wait(lambda: all(redis_state(n) == "up" for n in nodes) and
               all(n.metrics().get("fedhub_redis_up") == 1 for n in nodes), 5), [redis_state(n) for n in nodes])
    print("# %s: both nodes up on the new master %.2fs after" % (what, time.time() - t0))
    m = [n.metrics() for n in nodes]
    check("... /metrics: fedhub_redis_up 1 and a master change counted on both",
          all(x.get("fedhub_redis_up") == 1 and x.get("fedhub_redis_master_changes_total", 0) > c
              for x, c in zip(m, changes_before)),
          ([x.get("fedhub_redis_master_changes_total") for x in m], changes_before))
    # keys with a TTL of lease_time (node keys, leases) still there after
    # twice lease_time on the new master: renewed there
    t_mark = time.time()
    time.sleep(2 * LEASE_MS / 1000)
    for k in ("fh:node:node1", "fh:node:node2"):
        pttl = q(new_port, "PTTL", k)
        check("... %s renewed on the new master (PTTL %s)" % (k, pttl), isinstance(pttl, int) and pttl > 0, pttl)
    lease = q(new_port, "GET", "fh:lease:remote.fake") or ""
    pttl = q(new_port, "PTTL", "fh:lease:remote.fake")
    check("... the lease on remote.fake held on the new master (%s, PTTL %s)" % (lease, pttl),
          lease.startswith("node") and isinstance(pttl, int) and pttl > 0)
    tok = q(new_port, "GET", "fh:token:remote.fake")
    check("... its fencing token is the counter's", lease.split()[1:2] == [tok], (lease, tok))
    held = [n.metrics().get("fedhub_cluster_leases_held", 0) for n in nodes]
    check("... exactly one node counts the lease as held", sum(held) == 1, held)
    return t_mark


def failover(cl, rs, procs):
    master = procs[0]
    nodes = cl.nodes
    for n in nodes:
        check("node %d passes over the sentinel that does not know the master" % n.i,
              wait(lambda: "cluster: sentinel 127.0.0.1:%d does not know master '%s'" % (STRANGER, NAME)
                   in n.log_text(), 5))
    if not check("both nodes learn the master from the sentinels and connect",
                 wait(lambda: all(redis_state(n) == "up" for n in nodes), 10), [redis_state(n) for n in nodes]):
        return
    for n in nodes:
        check("node %d logs the master the sentinels named" % n.i,
              "cluster: redis master %s is 127.0.0.1:%d" % (NAME, MASTER) in n.log_text())
    check("both node keys on the master", wait(lambda: q(MASTER, "GET", "fh:node:node1") and
                                               q(MASTER, "GET", "fh:node:node2"), 5))
    changes0 = [n.metrics().get("fedhub_redis_master_changes_total", 0) for n in nodes]
    check("fedhub_redis_master_changes_total counts the first master", all(c >= 1 for c in changes0), changes0)

    comps = {i: Component(cl.node(i).ports.comp, "c%d.fake" % i, "s3cret") for i in (1, 2)}
    cols = {i: Collector(c) for i, c in comps.items()}
    snd = Sender(comps)
    SENDER_START[0] = time.time()
    check("traffic flows before the failover",
          wait(lambda: sum(1 for el in rs.messages() if (attr(el, "id") or "").startswith("s")) >= 50, 10))
    lease = q(MASTER, "GET", "fh:lease:remote.fake") or ""
    check("one node holds the lease on remote.fake on the master", lease.startswith("node"), lease)

    # the sentinel the nodes talk to hangs (SIGSTOP: its connections stay
    # open, it answers nothing, it takes no part in the failover): the nodes
    # must find the new master through another one
    check("both nodes talk to the first sentinel that knows the master",
          all("cluster: sentinel connected (127.0.0.1:%d)" % SENTINELS[0] in n.log_text() for n in nodes))
    first = procs[2]
    os.kill(first.proc.pid, signal.SIGSTOP)
    t_mark = follow(nodes, master.kill, REPLICA, changes0, "the master is killed (SIGKILL), the first sentinel hung")
    check("... both nodes heard it from another sentinel",
          all(any("cluster: sentinel connected (127.0.0.1:%d)" % p in n.log_text() for p in SENTINELS[1:])
              for n in nodes))
    first.kill()  # SIGKILL works on a stopped process

    # the old master comes back (empty, as a master): the sentinels make it
    # a replica of the new one; a manual failover (SENTINEL FAILOVER) moves
    # the master back to it while the new one keeps running
    old = Proc(os.path.dirname(master.dir), "master2", redis_args(MASTER), MASTER)
    procs.append(old)
    check("the old master restarts", old.ready())
    check("... the sentinels make it a replica of the new master, in sync",
          wait(lambda: info(MASTER, "replication").get("role") == "slave" and
               info(MASTER, "replication").get("master_link_status") == "up", 20, step=0.2),
          info(MASTER, "replication"))
    check("... the sentinels list it as a replica",
          wait(lambda: all(replica_flags(p) == ["slave"] for p in SENTINELS[1:]), 10, step=0.2),
          [replica_flags(p) for p in SENTINELS[1:]])
    changes1 = [n.metrics().get("fedhub_redis_master_changes_total", 0) for n in nodes]

    def manual():
        r = q(SENTINELS[1], "SENTINEL", "FAILOVER", NAME)
        check("SENTINEL FAILOVER accepted", r == "OK", r)
    t_mark = follow(nodes, manual, MASTER, changes1, "a manual failover (the master stays up)")

    time.sleep(1.0)
    sent = snd.stop()

    def settled():
        d = {attr(el, "id") for el in rs.messages() if (attr(el, "id") or "").startswith("s")}
        b = set()
        for c in cols.values():
            b |= {x for x in c.snapshot()[1] if x.startswith("s")}
        return d, b

    ids = [mid for mid, _ in sent]
    ok = wait(lambda: all(mid in settled()[0] or mid in settled()[1] for mid in ids[-20:]) and
              sum(map(len, settled())) >= len(ids), 20, step=0.2)
    d, b = settled()
    lost = [x for x in ids if x not in d and x not in b]
    check("routing throughout the failover: %d delivered + %d bounced == %d sent" % (len(d), len(b), len(ids)),
          ok and not lost and not (d & b), "%d unaccounted, e.g. %s; %d both" % (len(lost), lost[:5], len(d & b)))
    if b:
        at = dict(sent)
        ts = sorted(at[x] for x in b if x in at)
        print("# %d bounced, sent between %.2fs and %.2fs after the start; the first: %s" % (
            len(b), ts[0] - sent[0][1], ts[-1] - sent[0][1],
            next((c.first for c in cols.values() if c.first is not None), "")[:300]))
    late = [mid for mid, at in sent if at >= t_mark]
    check("everything sent after the failover is delivered (%d)" % len(late),
          late and all(x in d for x in late), [x for x in late if x not in d][:5])
    for c in comps.values():
        c.close()


if __name__ == "__main__":
    main()
