#!/usr/bin/env python3
"""Flow control: a slow destination slows its sources instead of losing their
stanzas (README "Back-pressure and flow control").

Three scenarios against one hub (two workers, a small send_queue_max and a
short stall_timeout so that queues fill and stalls end within seconds):

1. slow component: reads slowly; one s2s link floods it. Everything is
   delivered, in order, nothing bounced, and the link was paused meanwhile.
2. stalled component: stops reading for longer than stall_timeout while the
   same s2s link also carries stanzas for a second component. The second one
   keeps receiving during the stall; stanzas for the stalled one are bounced
   (resource-constraint) only after stall_timeout; delivered + bounced == sent.
3. stalled outbound peer: a remote server that authenticates the hub's link
   and then stops reading. The component sending to it is paused, then its
   stanzas are bounced (remote-server-timeout) after the stall, none before;
   delivered + bounced == sent.
4. slow outbound peer: a remote server that reads slowly, taking longer than
   stall_timeout to read everything. The component sending to it is paused
   (back-pressure reaches it) but nothing is bounced: the link makes
   progress. Everything is delivered, in order.

Each scenario asserts delivered + bounced == sent. Bounded by an alarm; the
hub and every socket are closed by the test."""
import os, signal, socket, sys, tempfile, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from fakepeer import RemoteServer, Reader, attr, NS_STREAM, Counter, counted_component, sender, in_order
from hubproc import Hub, Results, hub_section, metrics

S2S, COMP, HTTP, REMOTE, SINK, SLOWPEER = 25969, 25947, 25980, 25970, 25971, 25972
STALL = 2  # stall_timeout, seconds
CONF = hub_section(S2S, COMP, HTTP, dns=25953) + """log_level info
connect_timeout 5
send_queue_max 64k
source_allowance 32k
stall_timeout %ds
[component slow.fake]
secret s3cret
[component stall.fake]
secret s3cret
[component other.fake]
secret s3cret
[component src.fake]
secret s3cret
[route remote.fake]
connect 127.0.0.1:%d
[route sink.fake]
connect 127.0.0.1:%d
[route slowpeer.fake]
connect 127.0.0.1:%d
""" % (STALL, REMOTE, SINK, SLOWPEER)
PAD = "x" * 200
# Loopback autotunes the hub's socket send buffer up to tcp_wmem's maximum
# (4 MiB here): a destination only stays full once that much is unread too,
# so the stall scenarios send 6 MiB to it.
BIG = "y" * 2000

T = Results()
check = T.check


def component(domain, rcvbuf=None, **kw):
    """A component whose received stanzas a Counter records."""
    return counted_component(COMP, domain, rcvbuf=rcvbuf, **kw)


def bounces(rs, prefix):
    """Bounces the remote server got back (once each) for ids with prefix."""
    out = {}
    for m in rs.messages():
        if "type='error'" in m:
            mid = attr(m, "id") or ""
            if mid.startswith(prefix):
                out.setdefault(mid, m)
    return out


def slow_component(rs):
    n = 4000
    s, cnt = component("slow.fake", rcvbuf=8192, chunk=8192, pace=0.004)
    o = rs.connect_out(S2S, "slow.fake")
    check("slow: the s2s link is authenticated", o.auth("slow.fake") == "valid")
    m0 = metrics(HTTP)
    t0 = time.time()
    done = sender(o.s, ["<message from='u@remote.fake' to='c@slow.fake' id='s%d'><body>%s</body></message>"
                        % (i, PAD) for i in range(n)])
    paused = 0
    while not done.is_set() and time.time() - t0 < 20:
        paused = max(paused, metrics(HTTP).get("fedhub_flow_paused_sources", 0))
        time.sleep(0.1)
    cnt.wait(lambda it: len(it) >= n, 20)
    time.sleep(0.3)
    got = [i for _, i, err, _ in cnt.items() if not err]
    b = bounces(rs, "s")
    check("slow: every stanza delivered (%d of %d in %.1fs)" % (len(got), n, time.time() - t0),
          len(got) == n and len(set(got)) == n, len(got))
    check("slow: in order", in_order(got, "s"))
    check("slow: nothing bounced", not b, list(b.values())[:2])
    check("slow: delivered + bounced == sent", len(got) + len(b) == n, (len(got), len(b)))
    m1 = metrics(HTTP)
    check("slow: the flooding link was paused (seen in /metrics)",
          m1.get("fedhub_flow_pauses_total", 0) > m0.get("fedhub_flow_pauses_total", 0),
          (paused, m1.get("fedhub_flow_pauses_total")))
    check("slow: no queue refused a stanza",
          m1.get("fedhub_send_queue_full_total", 0) == m0.get("fedhub_send_queue_full_total", 0))
    o.close()
    cnt.closed = True
    s.close()


def stalled_component(rs):
    n = 3000
    hold = threading.Event()
    hold.set()
    s1, stall = component("stall.fake", rcvbuf=4096, hold=hold)
    s2, other = component("other.fake")
    o = rs.connect_out(S2S, "stall.fake")
    check("stall: the s2s link is authenticated for both components",
          o.auth("stall.fake") == "valid" and o.auth("other.fake") == "valid")
    st = []
    for i in range(n):
        st.append("<message from='u@remote.fake' to='c@stall.fake' id='x%d'><body>%s</body></message>" % (i, BIG))
        st.append("<message from='u@remote.fake' to='c@other.fake' id='o%d'><body>%s</body></message>" % (i, BIG))
    t0 = time.time()
    done = sender(o.s, st)
    # the stalled one reads nothing for STALL + 3 s
    depth = 0
    while time.time() - t0 < STALL + 3:
        m = metrics(HTTP)
        depth = max(depth, m.get('fedhub_flow_dest_queue_stanzas{dest="stall.fake",worker="0"}', 0),
                    m.get('fedhub_flow_dest_queue_stanzas{dest="stall.fake",worker="1"}', 0))
        time.sleep(0.1)
    other_during = len([1 for _, _, err, _ in other.items() if not err])
    b = bounces(rs, "x")
    check("stall: the second component kept receiving during the stall (%d of %d)" % (other_during, n),
          other_during == n, other_during)
    check("stall: its queue depth is in /metrics (%d stanzas)" % depth, depth > 0)
    check("stall: stanzas for the stalled component were bounced (%d)" % len(b), len(b) > 0)
    check("stall: bounced with resource-constraint",
          b and all("resource-constraint" in m for m in b.values()), list(b.values())[:1])
    hold.clear()  # it reads again: what it was sent and not bounced arrives
    stall.wait(lambda it: len(it) + len(bounces(rs, "x")) >= n, 10)
    time.sleep(0.5)
    got = [i for _, i, err, _ in stall.items() if not err]
    b = bounces(rs, "x")
    check("stall: delivered + bounced == sent (%d + %d of %d)" % (len(got), len(b), n),
          len(got) + len(b) == n and not (set(got) & set(b)), (len(got), len(b)))
    check("stall: what it got is in order", in_order(got, "x"))
    check("stall: the link was read to the end", done.wait(5))
    check("stall: no bounce before stall_timeout", bounce_times_ok(rs, "x", t0 + STALL - 0.3),
          "a bounce came earlier")
    o.close()
    stall.closed = other.closed = True
    s1.close()
    s2.close()


BOUNCE_SEEN = {}


def watch_bounces(rs):
    """Records when each bounce reached the remote server."""
    def run():
        while not rs.stop:
            for m in rs.messages():
                if "type='error'" in m:
                    BOUNCE_SEEN.setdefault(attr(m, "id") or "", time.time())
            time.sleep(0.05)
    threading.Thread(target=run, daemon=True).start()


def bounce_times_ok(rs, prefix, not_before):
    ts = [t for i, t in BOUNCE_SEEN.items() if i.startswith(prefix)]
    return bool(ts) and min(ts) >= not_before


class Sink:
    """A remote server (sink.fake) that authenticates the hub's outbound link
    (answers its db:result) and then reads nothing while `hold` is set, or
    `chunk` bytes every `pace` seconds."""

    def __init__(self, domain="sink.fake", port=SINK, held=True, chunk=65536, pace=0.0):
        self.domain, self.chunk, self.pace = domain, chunk, pace
        self.hold = threading.Event()
        if held:
            self.hold.set()
        self.l = socket.socket()
        self.l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.l.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.l.bind(("127.0.0.1", port))
        self.l.listen(4)
        self.cnt = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            c, _ = self.l.accept()
        except OSError:
            return
        self.c = c
        r = Reader(c)
        r.stream_header(10)
        c.sendall(("<stream:stream xmlns='jabber:server' xmlns:stream='%s' xmlns:db='jabber:server:dialback'"
                   " id='sink1' from='%s' version='1.0'><stream:features/>" % (NS_STREAM, self.domain)).encode())
        while True:
            el = r.element(10)
            if el.startswith("<db:result"):
                c.sendall(("<db:result from='%s' to='%s' type='valid'/>" % (self.domain, attr(el, "from"))).encode())
                break
        self.cnt = Counter(c, r.buf, hold=self.hold, chunk=self.chunk, pace=self.pace)

    def close(self):
        if self.cnt:
            self.cnt.closed = True
        for x in (getattr(self, "c", None), self.l):
            try:
                x and x.close()
            except OSError:
                pass


def stalled_outbound():
    n = 3000
    sink = Sink()
    s, comp = component("src.fake")
    # one stanza first: the link comes up and authenticates
    s.sendall(b"<message from='a@src.fake' to='b@sink.fake' id='w'><body>hi</body></message>")
    deadline = time.time() + 10
    while time.time() < deadline and sink.cnt is None:
        time.sleep(0.05)
    check("outbound: the hub's link to sink.fake is authenticated", sink.cnt is not None)
    if sink.cnt is None:
        sink.close()
        return
    t0 = time.time()
    done = sender(s, ["<message from='a@src.fake' to='b@sink.fake' id='q%d'><body>%s</body></message>" % (i, BIG)
                      for i in range(n)])
    paused = 0
    while time.time() - t0 < STALL - 0.5:
        paused = max(paused, metrics(HTTP).get("fedhub_flow_paused_sources", 0))
        time.sleep(0.1)
    # (the kernel's socket buffers may take all it writes: the hub's gauge says it is paused)
    check("outbound: the component sending to it is paused", paused >= 1, (paused, done.is_set()))
    early = [1 for _, i, err, _ in comp.items() if err and i.startswith("q")]
    check("outbound: nothing bounced before stall_timeout", not early, len(early))
    comp.wait(lambda it: any(err for _, i, err, _ in it if i.startswith("q")), STALL + 4)
    check("outbound: the component's sending resumed after the stall", done.wait(10))
    sink.hold.clear()  # the peer reads again: the rest arrives
    comp.wait(lambda it: len([1 for _, i, e, _ in it if e and i.startswith("q")]) +
              len([1 for _, i, e, _ in sink.cnt.items() if i.startswith("q")]) >= n, 10)
    time.sleep(0.5)
    b = {i: raw for _, i, err, raw in comp.items() if err and i.startswith("q")}
    got = [i for _, i, err, _ in sink.cnt.items() if i.startswith("q")]
    check("outbound: bounced after the stall (%d), with remote-server-timeout" % len(b),
          b and all(b"remote-server-timeout" in raw for raw in b.values()), list(b.values())[:1])
    first = min([t for t, i, err, _ in comp.items() if err and i.startswith("q")] or [0])
    check("outbound: no bounce earlier than stall_timeout after the sending began (first at %.2fs)"
          % (first - t0), first >= t0 + STALL, first - t0)
    check("outbound: delivered + bounced == sent (%d + %d of %d)" % (len(got), len(b), n),
          len(got) + len(b) == n and not (set(got) & set(b)), (len(got), len(b)))
    check("outbound: what the peer got is in order", in_order(got, "q"))
    comp.closed = True
    s.close()
    sink.close()


def slow_outbound():
    """The peer reads about 1.6 MB/s: 6 MB take longer than stall_timeout,
    but the link keeps moving, so nothing may be bounced."""
    n = 3000
    sink = Sink("slowpeer.fake", SLOWPEER, held=False, chunk=4096, pace=0.0025)
    s, comp = component("src.fake")
    s.sendall(b"<message from='a@src.fake' to='b@slowpeer.fake' id='w'><body>hi</body></message>")
    deadline = time.time() + 10
    while time.time() < deadline and sink.cnt is None:
        time.sleep(0.05)
    check("slow outbound: the hub's link to slowpeer.fake is authenticated", sink.cnt is not None)
    if sink.cnt is None:
        sink.close()
        return
    m0 = metrics(HTTP)
    t0 = time.time()
    done = sender(s, ["<message from='a@src.fake' to='b@slowpeer.fake' id='p%d'><body>%s</body></message>"
                      % (i, BIG) for i in range(n)])
    sink.cnt.wait(lambda it: len([1 for _, i, _, _ in it if i.startswith("p")]) >= n, 30)
    took = time.time() - t0
    time.sleep(0.5)
    got = [i for _, i, _, _ in sink.cnt.items() if i.startswith("p")]
    b = [i for _, i, err, _ in comp.items() if err and i.startswith("p")]
    m1 = metrics(HTTP)
    check("slow outbound: the peer took longer than stall_timeout to read it all (%.1fs)" % took, took > STALL)
    check("slow outbound: every stanza delivered (%d of %d)" % (len(got), n), len(got) == n and len(set(got)) == n)
    check("slow outbound: nothing bounced", not b, len(b))
    check("slow outbound: delivered + bounced == sent", len(got) + len(b) == n, (len(got), len(b)))
    check("slow outbound: in order", in_order(got, "p"))
    check("slow outbound: the component was paused meanwhile (seen in /metrics)",
          m1.get("fedhub_flow_pauses_total", 0) > m0.get("fedhub_flow_pauses_total", 0),
          (m0.get("fedhub_flow_pauses_total"), m1.get("fedhub_flow_pauses_total")))
    check("slow outbound: the component's sending ended", done.wait(5))
    comp.closed = True
    s.close()
    sink.close()


def on_alarm(signum, frame):
    raise TimeoutError("t_flow took more than 120 s")


def main():
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(120)
    hub = Hub(CONF, tempfile.mkdtemp(prefix="fedhub-flow-"), ready_ports=(COMP,))

    def cases(closing):
        rs = RemoteServer("remote.fake", REMOTE)
        closing.append(rs)
        watch_bounces(rs)
        for scenario in (lambda: slow_component(rs), lambda: stalled_component(rs), stalled_outbound,
                         slow_outbound):
            try:
                scenario()
            except Exception as e:
                check("scenario ran to the end", False, repr(e))
        check("hub alive", hub.alive(), hub.poll())
    try:
        T.run_script(lambda: ("hub starts", hub.start(), "see its log"), cases, hub.finish)
    finally:
        signal.alarm(0)


if __name__ == "__main__":
    main()
