#!/usr/bin/env python3
"""Three clustered fedhub nodes behind a real HAProxy (examples/haproxy.cfg)
with a real Redis (lib/cluster.py), against scripted peers (lib/fakepeer.py):

1. an inbound link that lands (through the balancer) on one node delivers,
   in order, to a component attached only to another node;
2. outbound traffic for one remote domain from components on all three
   nodes leaves on a single link (the fake remote counts the streams opened
   to it), each (from, to) pair in order, nothing bounced;
3. kill -9 of that link's owner mid-stream: another node holds the lease
   within about lease_time, and every stanza the surviving nodes accepted is
   delivered or bounced back to its sender: delivered + bounced == sent,
   counted by id.

Ports 27300-27399 (lib/cluster.py's plan; the fake remote.fake at 27360)."""
import os, socket, sys, tempfile, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from cluster import CLIENT_ADDR, Cluster, Collector, cluster_supported, redis_cmd  # noqa: E402
from fakepeer import Component, RemoteServer, attr  # noqa: E402
from hubproc import Results  # noqa: E402

BASE = 27300
REMOTE = BASE + 60
LEASE_MS = 2000
T = Results()
check = T.check


def inbox_ids(rs, prefix):
    return [attr(el, "id") for el in rs.messages() if (attr(el, "id") or "").startswith(prefix)]


def in_order(ids):
    """Per sender (the id's part before the last '-'): strictly increasing."""
    last = {}
    for i in ids:
        who, n = i.rsplit("-", 1)
        if int(n) <= last.get(who, -1):
            return False, "%s after %s-%d" % (i, who, last[who])
        last[who] = int(n)
    return True, ""


def wait(cond, within, step=0.05):
    deadline = time.time() + within
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def lease_owner():
    try:
        v = redis_cmd(BASE, "GET", "fh:lease:remote.fake")
    except OSError:
        return None
    return v.split()[0] if v else None


def main():
    timer = threading.Timer(170, lambda: os._exit(3))
    timer.daemon = True
    timer.start()
    if not cluster_supported(BASE):
        check("this fedhub accepts lib/cluster.py's [cluster] section (fedhub -t)", False)
        T.exit()
    tmp = tempfile.mkdtemp(prefix="fedhub-clu-")
    comps = "".join("[component c%d.fake]\nsecret s3cret\n" % i for i in (1, 2, 3))
    cl = Cluster(tmp, BASE, nodes=3, lease_ms=LEASE_MS, extra_hub="stall_timeout 10s\n",
                 extra_conf="[route remote.fake]\nconnect 127.0.0.1:%d\n" % REMOTE + comps)
    rs = None
    try:
        if check("redis, 3 clustered nodes and HAProxy (examples/haproxy.cfg) start", cl.start(), cl.why):
            rs = RemoteServer("remote.fake", REMOTE)
            inbound_to_component(cl, rs)
            single_link(cl, rs)
            owner_killed(cl, rs)
    except Exception as e:  # a case that broke the script is a failure
        import traceback
        traceback.print_exc()
        check("the cases ran to the end", False, repr(e))
    finally:
        if rs:
            rs.close()
        cl.finish(T)
    T.exit()


def inbound_to_component(cl, rs):
    o = rs.connect_out(cl.haproxy_s2s, "echo.fake", source=CLIENT_ADDR)
    res = o.auth("echo.fake", timeout=10)
    if not check("an inbound link through HAProxy authenticates (dialback)", res == "valid", res):
        return
    landed = None
    for n in cl.nodes:
        if any(l.get("direction") == "in" and l.get("peer", "").startswith(CLIENT_ADDR + ":") for l in n.links()):
            landed = n.i
    if not check("the link landed on one node", landed is not None):
        return
    target = (landed + 1) % 3 + 1  # node 1 -> node 3, 2 -> 1, 3 -> 2
    comp = Component(cl.node(target).ports.comp, "echo.fake", "s3cret")
    col = Collector(comp)
    placed = wait(lambda: ("node%d" % target) in (redis_cmd(BASE, "SMEMBERS", "fh:comp:echo.fake") or []), 5)
    check("the component's placement on node %d is in Redis (fh:comp:echo.fake)" % target, placed)
    time.sleep(0.3)  # the event reaches the other nodes' caches
    n = 300
    for i in range(n):
        o.send("<message from='u@remote.fake' to='bot@echo.fake' id='a-%d'><body>%d</body></message>" % (i, i))
    ok = wait(lambda: len(col.snapshot()[0]) >= n, 15)
    got, errs = col.snapshot()
    check("an inbound link on node %d delivers to the component on node %d: %d of %d" % (landed, target, len(got), n),
          ok and not errs, (len(got), errs[:5]))
    check("... in order", got == ["a-%d" % i for i in range(n)], got[:10])
    o.close()
    comp.close()


def single_link(cl, rs):
    comps = {i: Component(cl.node(i).ports.comp, "c%d.fake" % i, "s3cret") for i in (1, 2, 3)}
    cols = {i: Collector(c) for i, c in comps.items()}
    cl.comps, cl.cols = comps, cols
    before = rs.inbound_conns
    n = 300
    for k in range(n):
        for i, c in comps.items():
            c.send("<message from='bot@c%d.fake' to='u@remote.fake' id='b%d-%d'><body>x</body></message>" % (i, i, k))
    ok = wait(lambda: len(inbox_ids(rs, "b")) >= 3 * n, 20)
    ids = inbox_ids(rs, "b")
    bounced = sum(len([m for m in c.snapshot()[1] if m.startswith("b")]) for c in cols.values())
    check("outbound from components on 3 nodes: all %d delivered to remote.fake, none bounced" % (3 * n),
          ok and len(ids) == 3 * n and bounced == 0, (len(ids), bounced))
    streams = {sid for el, sid in rs.messages_with_stream() if (attr(el, "id") or "").startswith("b")}
    check("... on a single link: they all came on one stream", len(streams) == 1,
          "%d streams (%d opened meanwhile)" % (len(streams), rs.inbound_conns - before))
    good, why = in_order(ids)
    check("... each (from, to) pair in order", good, why)
    owner = lease_owner()
    check("one node holds the lease on remote.fake in Redis", owner in ("node1", "node2", "node3"), owner)


def owner_killed(cl, rs):
    owner = lease_owner()
    if owner not in ("node1", "node2", "node3"):
        check("an owner to kill", False, owner)
        return
    k = int(owner[-1])
    senders = [i for i in (1, 2, 3) if i != k]
    before_conns = rs.inbound_conns
    sent = []
    n = 1500
    killed_at = None
    t0 = time.time()
    for j in range(n):
        for i in senders:
            mid = "k%d-%d" % (i, j)
            try:
                cl.comps[i].send("<message from='bot@c%d.fake' to='u@remote.fake' id='%s'><body>x</body></message>"
                                 % (i, mid))
                sent.append(mid)
            except OSError:
                pass
        if j % 50 == 49:
            time.sleep(0.05)
        if killed_at is None and j == n // 3:
            cl.kill9(k)
            killed_at = time.time()
    send_s = time.time() - t0
    # the new owner: another node's id in fh:lease:remote.fake
    took = wait(lambda: lease_owner() not in (None, owner), LEASE_MS / 1000 + 3, step=0.02)
    new_owner = lease_owner()
    after = time.time() - killed_at
    check("node %d (the owner) killed mid-stream: %s holds the lease" % (k, new_owner), took, new_owner)
    # the lease is taken over once the dead owner's lease expired: within
    # lease_time of the kill (the last renewal was at most lease_time/3 before it)
    check("... within about lease_time (%d ms) of the kill" % LEASE_MS,
          took and after <= LEASE_MS / 1000 + 1.0, "%.2fs after the kill (sending took %.1fs)" % (after, send_s))

    def settled():
        d = set(inbox_ids(rs, "k"))
        b = set()
        for i in senders:
            b |= {m for m in cl.cols[i].snapshot()[1] if m.startswith("k")}
        return d, b

    ok = wait(lambda: sum(map(len, settled())) >= len(sent), 25, step=0.2)
    d, b = settled()
    lost = [m for m in sent if m not in d and m not in b]
    check("every stanza the surviving nodes accepted is delivered or bounced: %d delivered + %d bounced == %d sent"
          % (len(d), len(b), len(sent)), ok and not lost and not (d & b),
          "%d unaccounted, e.g. %s; %d both" % (len(lost), lost[:5], len(d & b)))
    late = {sid for el, sid in rs.messages_with_stream() if attr(el, "id") in set(sent[-100:])}
    check("... the new owner delivered the last stanzas sent, on one link", len(late) == 1,
          "%d streams; %d opened since the kill" % (len(late), rs.inbound_conns - before_conns))
    good, why = in_order(inbox_ids(rs, "k"))
    check("... each (from, to) pair still in order", good, why)


if __name__ == "__main__":
    main()
