#!/usr/bin/env python3
"""Hostile peers on the hub's outbound links and dialback verification streams,
and the remote-domain policy (remote_allow / remote_deny, [remote]) in and out.

Every case has a remote domain of its own with a [route] to a scripted server
of its own on loopback (or DNS from a tiny scripted DNS server on the suite's
dns port), so each attack runs on its own link while lib/hostile.py keeps the
legitimate traffic flowing on the remote.fake link and counts it. Stanzas come
from the component spare.fake (connected once for the whole run); bounces come
back to it. Each case asserts the exact error, what the peer saw (the hub's
dialback key never in cleartext where TLS is required, no stanza for a peer
that failed its check), that the attacked link was closed, and that the
legitimate link lost nothing."""
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import hostile as H  # noqa: E402
from fakepeer import Component, Reader, attr, serve, NS_STREAM  # noqa: E402

BASE = 25500
P = H.Ports(BASE)
EX = [P.extra(i) for i in range(10)]

SECTIONS = """
[route v0.fake]
connect 127.0.0.1:{extra0}
tls required
[route vv.fake]
connect 127.0.0.1:{extra1}
tls required
[remote wc.fake]
auth certificate
[route wc.fake]
connect 127.0.0.1:{extra2}
[route dbf.fake]
connect 127.0.0.1:{extra3}
[route rdb.fake]
connect 127.0.0.1:{extra3}
[route trick.fake]
connect 127.0.0.1:{extra4}
tls optional
[route trick2.fake]
connect 127.0.0.1:{extra4}
tls off
[route ub.fake]
connect 127.0.0.1:{extra5}
tls off
[route cb.fake]
connect 127.0.0.1:{extra5}
tls required
[route lim.fake]
connect 127.0.0.1:{extra6}
[route x.denied.fake]
connect 127.0.0.1:{extra7}
[route flap.fake]
connect 127.0.0.1:{extra8}
[remote tlsin.fake]
tls required
"""
HUB_EXTRA = """ca_file {pki}/ca.pem
remote_allow *.fake
remote_deny *.denied.fake
remote_allow ok.denied.fake"""

S = H.Suite("t_hostile_outbound", H.conf(hub_extra=HUB_EXTRA, sections=SECTIONS), base=BASE, limit=55)
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"


# ---- a scripted remote server ---------------------------------------------

class Peer:
    """One accepted connection from the hub, seen from the remote server."""

    def __init__(self, sock):
        self.s, self.r = sock, Reader(sock)
        self.clear = b""   # every byte received before TLS
        self.log = []      # every element received
        self.tls = False

    def _fill_hook(self):
        pass

    def header(self, t=5):
        h = self.r.stream_header(t)
        if not self.tls:
            self.clear += h.encode()
        return h

    def element(self, t=5):
        el = self.r.element(t)
        if not self.tls:
            self.clear += el.encode()
        self.log.append(el)
        return el

    def send(self, x):
        self.s.sendall(x.encode() if isinstance(x, str) else x)

    def open(self, domain, version="1.0", sid="peer-sid-1"):
        v = " version='%s'" % version if version else ""
        self.send("<stream:stream xmlns='jabber:server' xmlns:stream='%s' xmlns:db='jabber:server:dialback'"
                  " id='%s' from='%s'%s>" % (NS_STREAM, sid, domain, v))

    def starttls(self, ctx):
        self.send("<proceed xmlns='%s'/>" % NS_TLS)
        self.s = ctx.wrap_socket(self.s, server_side=True)
        self.r = Reader(self.s)
        self.tls = True

    def drain(self, t=3):
        """Elements until the hub closes (or t passes); the stream error
        condition seen, if any."""
        cond, deadline = None, time.time() + t
        try:
            while time.time() < deadline:
                el = self.element(max(0.05, deadline - time.time()))
                m = re.search(r"<([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'", el)
                if el.startswith("<stream:error") and m:
                    cond = m.group(1)
        except (EOFError, OSError):
            pass
        return cond

    def got(self, what):
        return any(what in el for el in self.log)


class Server:
    """Listens on port; each connection runs script(peer) in a thread."""

    def __init__(self, port, script):
        self.script, self.peers, self.errors = script, [], []
        self.done = threading.Event()
        self.ls = serve(port, self._run, backlog=16)

    def _run(self, c):
        p = Peer(c)
        self.peers.append(p)
        try:
            self.script(p)
        except (EOFError, OSError) as e:
            self.errors.append(repr(e))
        except Exception as e:  # a broken script must show
            self.errors.append("script: %r" % e)
        finally:
            self.done.set()

    def wait(self, t=5):
        return self.done.wait(t)

    def first(self, t=5):
        """Waits up to t for a script to end; the first connection's peer, or None."""
        self.wait(t)
        return self.peers[0] if self.peers else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.ls.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
        except OSError:
            pass
        try:
            self.ls.close()
        except OSError:
            pass


def register(s, peer):
    """The peer's side of the hub's outbound link, as an attacked connection."""
    return s._register(H.Conn.of(peer))


def dialback_ok(p, until_message=True, t=5):
    """Answer db:results with valid; return the elements that follow."""
    deadline = time.time() + t
    while time.time() < deadline:
        el = p.element(max(0.05, deadline - time.time()))
        if el.startswith("<db:result"):
            p.send("<db:result from='%s' to='%s' type='valid'/>" % (attr(el, "to"), attr(el, "from")))
        elif el.startswith("<message") and until_message:
            return el
    return None


# ---- a scripted DNS server on the suite's dns port ---------------------------

def dns_name(b, off):
    labels = []
    while b[off]:
        n = b[off]
        labels.append(b[off + 1:off + 1 + n].decode())
        off += 1 + n
    return ".".join(labels).lower(), off + 1


def dns_encode(name):
    return b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"


class DNS:
    """Answers SRV and A queries from a table; NXDOMAIN for anything else."""

    def __init__(self, port, srv, a):
        self.srv, self.a, self.queries = srv, a, []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                q, addr = self.sock.recvfrom(2048)
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(q), addr)
            except Exception:
                pass

    def _answer(self, q):
        qid, = struct.unpack(">H", q[:2])
        name, off = dns_name(q, 12)
        qtype, = struct.unpack(">H", q[off:off + 2])
        question = q[12:off + 4]
        self.queries.append((name, qtype))
        ans = []
        if qtype == 33 and name in self.srv:
            for prio, port, target in self.srv[name]:
                rd = struct.pack(">HHH", prio, 0, port) + dns_encode(target)
                ans.append(struct.pack(">HHHIH", 0xC00C, 33, 1, 1, len(rd)) + rd)
        elif qtype == 1 and name in self.a:
            rd = socket.inet_aton(self.a[name])
            ans.append(struct.pack(">HHHIH", 0xC00C, 1, 1, 1, 4) + rd)
        rcode = 0 if (name in self.a or name in self.srv) else 3  # NOERROR (maybe no data) or NXDOMAIN
        hdr = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, len(ans), 0, 0)
        return hdr + question + b"".join(ans)

    def close(self):
        self.sock.close()


# ---- helpers on the spare.fake component --------------------------------------

SP = None
stash = []


def from_spare(to, mid, body="x", size=0):
    pad = "p" * size
    SP.send("<message from='bot@spare.fake' to='%s' id='%s'><body>%s%s</body></message>" % (to, mid, body, pad))


def spare_gets(mid, t=6):
    """The element with id mid that reaches spare.fake (a bounce), or None."""
    for el in list(stash):
        if attr(el, "id") == mid:
            stash.remove(el)
            return el
    deadline = time.time() + t
    while time.time() < deadline:
        try:
            el = SP.recv(max(0.05, deadline - time.time()))
        except (socket.timeout, OSError):
            return None
        if attr(el, "id") == mid:
            return el
        stash.append(el)
    return None


def cond_of(el):
    if not el:
        return None
    m = re.search(r"<([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'", el)
    return m.group(1) if m else el[:120]


def bounce_of(to, mid, t=6):
    """Send a stanza from spare.fake to `to`: the condition of its bounce, or None."""
    from_spare(to, mid)
    return cond_of(spare_gets(mid, t))


def refused_unreached(s, port, to, mid, cond, what, t=5):
    """A stanza to `to` bounces with `cond`, and the listener on `port` (where
    a wrong decision would connect) sees no connection."""
    with Server(port, lambda p: p.drain(1)) as srv:
        s.expect(bounce_of(to, mid, t), cond, "bounce")
        time.sleep(0.3)
        s.expect(len(srv.peers), 0, what)


# ---- the cases ------------------------------------------------------------------

def pre10_outbound(s):
    """[route] tls required; the peer answers with a pre-1.0 header."""
    def script(p):
        p.header()
        p.open("v0.fake", version=None)
        p.drain(4)
    with Server(EX[0], script) as srv:
        from_spare("u@v0.fake", "v0-1")
        bounce = spare_gets("v0-1")
        peer = srv.first(5)
        s.expect(peer is not None, True, "the hub connected")
        if peer:
            register(s, peer)
            s.expect(any("unsupported-version" in e for e in peer.log), True, "unsupported-version to the peer")
            s.expect(b"db:result" in peer.clear or b"<message" in peer.clear, False, "key or stanza in cleartext")
        s.expect(cond_of(bounce), "remote-server-not-found", "bounce")


def pre10_verify(s):
    """An inbound stream claims vv.fake; vv.fake's authoritative server (TLS
    required by its [route]) answers the verification stream pre-1.0."""
    def script(p):
        p.header()
        p.open("vv.fake", version=None)
        p.drain(4)
    with Server(EX[1], script) as srv:
        c = s.s2s(frm="vv.fake", attacked=False)
        c.send("<db:result from='vv.fake' to='echo.fake'>%s</db:result>" % ("ab" * 32))
        el = c.element(6)
        peer = srv.first(5)
        s.expect(peer is not None, True, "the hub opened a verification stream")
        if peer:
            register(s, peer)
            s.expect(any("unsupported-version" in e for e in peer.log), True, "unsupported-version to the peer")
            s.expect(b"db:verify" in peer.clear or b"ab" * 32 in peer.clear, False, "the key in cleartext")
        s.expect(attr(el, "type"), "error", "dialback answer on the inbound stream")
        c.close()


def wrong_cert(s):
    """auth certificate; the peer's certificate names other.fake."""
    ctx = S.tls_server("wrong")

    def script(p):
        p.header()
        p.open("wc.fake")
        p.send("<stream:features><starttls xmlns='%s'><required/></starttls></stream:features>" % NS_TLS)
        el = p.element()
        if el.startswith("<starttls"):
            p.starttls(ctx)
            p.header()
            p.open("wc.fake", sid="peer-sid-2")
            p.send("<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
            dialback_ok(p, t=3)
    with Server(EX[2], script) as srv:
        from_spare("u@wc.fake", "wc-1")
        bounce = spare_gets("wc-1", 8)
        peer = srv.first(5)
        s.expect(peer is not None and peer.tls, True, "TLS was negotiated")
        if peer:
            register(s, peer)
            s.expect(any("policy-violation" in e for e in peer.log), True,
                     "policy-violation to the peer (%r %r)" % (peer.log[-3:], srv.errors))
            s.expect(peer.got("<message") or peer.got("db:result"), False, "anything sent to the wrong server")
        s.expect(cond_of(bounce), "remote-server-not-found", "bounce")


def db_wrong_from(s):
    """The peer answers our db:result as another domain."""
    def script(p):
        p.header()
        p.open("dbf.fake")
        p.send("<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
        el = p.element()
        if el.startswith("<db:result"):
            p.send("<db:result from='evil.fake' to='%s' type='valid'/>" % attr(el, "from"))
        p.drain(3)
    with Server(EX[3], script) as srv:
        from_spare("u@dbf.fake", "dbf-1")
        bounce = spare_gets("dbf-1")
        peer = srv.first(5)
        if peer:
            register(s, peer)
            s.expect(any("invalid-from" in e for e in peer.log), True, "invalid-from to the peer")
            s.expect(peer.got("<message"), False, "stanza sent to the spoofing peer")
        s.expect(cond_of(bounce), "remote-server-not-found", "bounce")


def reverse_dialback(s):
    """A typeless db:result (the peer asking to be verified) is not a refusal."""
    def script(p):
        p.header()
        p.open("rdb.fake")
        p.send("<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
        el = p.element()
        if el.startswith("<db:result"):
            p.send("<db:result from='rdb.fake' to='%s'>%s</db:result>" % (attr(el, "from"), "cd" * 32))
            reply = p.element()
            p.reply = reply
            p.send("<db:result from='rdb.fake' to='%s' type='valid'/>" % attr(el, "from"))
            p.element()  # the stanza
        p.drain(1)
    with Server(EX[3], script) as srv:
        from_spare("u@rdb.fake", "rdb-1")
        peer = srv.first(6)
        s.expect(peer is not None, True, "connected")
        if peer:
            reply = getattr(peer, "reply", "")
            s.expect(attr(reply, "type") == "error" and "feature-not-implemented" in reply, True,
                     "dialback error for the reverse request: %r" % reply[:200])
            s.expect(peer.got("id='rdb-1'"), True, "the stanza delivered after the valid answer")
        s.expect(spare_gets("rdb-1", 0.5), None, "no bounce")


def tricky_features(s):
    """Namespaces and EXTERNAL only in attribute values and foreign elements."""
    def script(p):
        p.header()
        p.open("trick.fake")
        p.send("<stream:features><x xmlns='urn:example' a=\"urn:ietf:params:xml:ns:xmpp-tls &lt;required\" "
               "b='urn:xmpp:features:bidi EXTERNAL urn:ietf:params:xml:ns:xmpp-sasl'>"
               "<bidi/><starttls/></x><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
        p.msg = dialback_ok(p)
        p.drain(0.5)
    with Server(EX[4], script) as srv:
        from_spare("u@trick.fake", "tr-1")
        peer = srv.first(6)
        s.expect(peer is not None, True, "connected")
        if peer:
            s.expect(peer.got("<starttls") or peer.got("<bidi") or peer.got("<auth"), False,
                     "the hub answered features that were not offered")
            s.expect(attr(getattr(peer, "msg", None) or "", "id"), "tr-1", "stanza delivered")
        s.expect(spare_gets("tr-1", 0.3), None, "no bounce")


def foreign_required(s):
    """<required/> in another namespace next to STARTTLS does not make it
    mandatory (tls off on this route): the hub goes on with dialback."""
    def script(p):
        p.header()
        p.open("trick2.fake")
        p.send("<stream:features><starttls xmlns='%s'/><required xmlns='urn:example'/>"
               "<dialback xmlns='urn:xmpp:features:dialback'/></stream:features>" % NS_TLS)
        p.msg = dialback_ok(p)
        p.drain(0.5)
    with Server(EX[4], script) as srv:
        from_spare("u@trick2.fake", "tr2-1")
        peer = srv.first(6)
        s.expect(peer is not None and attr(getattr(peer, "msg", None) or "", "id") == "tr2-1", True,
                 "stanza delivered")
        s.expect(spare_gets("tr2-1", 0.3), None, "no bounce")


def bidi_unauthenticated(s):
    """A cleartext peer offers XEP-0288 and sends stanzas as itself anyway."""
    def script(p):
        p.header()
        p.open("ub.fake")
        p.send("<stream:features><bidi xmlns='urn:xmpp:features:bidi'/>"
               "<dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
        dialback_ok(p)
        p.send("<message from='u@ub.fake/r' to='bot@spare.fake' id='ub-back'><body>spoof</body></message>")
        p.cond = p.drain(3)
    with Server(EX[5], script) as srv:
        from_spare("u@ub.fake", "ub-1")
        peer = srv.first(6)
        s.expect(peer is not None, True, "connected")
        if peer:
            register(s, peer)
            s.expect(peer.got("<bidi"), False, "the hub asked an unauthenticated peer for bidi")
            s.expect(getattr(peer, "cond", None), "not-authorized", "stream error")
        s.expect(spare_gets("ub-back", 1), None, "the peer's stanza reached the component")


def bidi_authenticated(s):
    """Over TLS with a certificate naming cb.fake, bidi is asked for and the
    peer's stanzas are routed (the positive control of the case above)."""
    ctx = S.tls_server("peer")

    def script(p):
        p.header()
        p.open("cb.fake")
        p.send("<stream:features><starttls xmlns='%s'><required/></starttls></stream:features>" % NS_TLS)
        if p.element().startswith("<starttls"):
            p.starttls(ctx)
            p.header()
            p.open("cb.fake", sid="peer-sid-2")
            p.send("<stream:features><bidi xmlns='urn:xmpp:features:bidi'/>"
                   "<dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
            dialback_ok(p)
            p.send("<message from='u@cb.fake/r' to='bot@spare.fake' id='cb-back'><body>hi</body></message>")
            p.drain(2)
    with Server(EX[5], script) as srv:
        from_spare("u@cb.fake", "cb-1")
        back = spare_gets("cb-back", 6)
        peer = srv.peers[0] if srv.peers else None
        s.expect(peer is not None and peer.got("<bidi"), True, "the hub asked for bidi")
        s.expect(attr(back or "", "id"), "cb-back", "the peer's stanza reached the component")


def peer_limit(s):
    """XEP-0478: the peer takes stanzas of at most 1000 bytes."""
    def script(p):
        p.header()
        p.open("lim.fake")
        p.send("<stream:features><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>1000</max-bytes>"
               "</limits><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
        p.msg = dialback_ok(p)
        p.drain(1.5)
    with Server(EX[6], script) as srv:
        from_spare("u@lim.fake", "lim-small")
        time.sleep(0.5)
        from_spare("u@lim.fake", "lim-big", size=2000)
        bounce = spare_gets("lim-big")
        peer = srv.first(4)
        s.expect(cond_of(bounce), "policy-violation", "bounce of the big stanza")
        s.expect(peer is not None and attr(getattr(peer, "msg", None) or "", "id") == "lim-small", True,
                 "the small stanza delivered")
        s.expect(peer is not None and peer.got("lim-big"), False, "the big stanza sent")


def deny_out(s):
    """remote_deny *.denied.fake: no connection, policy-violation bounce."""
    refused_unreached(s, EX[7], "u@x.denied.fake", "dn-1", "policy-violation",
                      "connections made to a denied domain", t=3)


def allow_list_out(s):
    """remote_allow *.fake exists: a domain outside it is refused at once."""
    return bounce_of("u@elsewhere.example", "al-1", 3), "policy-violation"


def deny_in_header(s):
    c = s.connect()
    c.send(H.s2s_header(frm="x.denied.fake"))
    return c.stream_error(), "policy-violation"


def deny_in_pair(s):
    c = s.s2s(frm=None)
    c.send("<db:result from='y.denied.fake' to='echo.fake'>%s</db:result>" % ("ef" * 32))
    return c.stream_error(), "policy-violation"


def allow_in_specific(s):
    """remote_allow ok.denied.fake beats remote_deny *.denied.fake."""
    c = s.s2s(frm="ok.denied.fake")
    return ("features" if "<stream:features" in c.feats else c.feats[:100]), "features"


def tls_required_in(s):
    """[remote tlsin.fake] tls required: a cleartext pair is refused."""
    c = s.s2s(frm="tlsin.fake")
    c.send("<db:result from='tlsin.fake' to='echo.fake'>%s</db:result>" % ("aa" * 32))
    return c.stream_error(), "policy-violation"


def private_srv(s):
    """SRV for priv.fake names a target whose A record is 127.0.0.1:
    dropped by default (dns_allow_private no)."""
    refused_unreached(s, EX[9], "u@priv.fake", "pv-1", "remote-server-not-found",
                      "connections made to the private address")


def private_a(s):
    """No SRV; the domain's own A record is 10.9.8.7."""
    return bounce_of("u@priva.fake", "pa-1", 5), "remote-server-not-found"


def down_then_up(s):
    """flap.fake is down, then comes back: reached retry_min after, and a
    stanza sent during the back-off waits instead of being bounced."""
    for i in range(3):
        s.expect(bounce_of("u@flap.fake", "fl-down-%d" % i, 5), "remote-server-not-found",
                 "bounce while down #%d" % i)
        time.sleep(0.3)
    got = {}

    def script(p):
        p.header()
        p.open("flap.fake")
        p.send("<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
        t = time.time() + 5
        while time.time() < t:
            m = dialback_ok(p, t=t - time.time())
            if not m:
                break
            got[attr(m, "id")] = time.time()
    with Server(EX[8], script) as srv:   # the remote recovers
        t0 = time.time()
        from_spare("u@flap.fake", "fl-up-1")  # within retry_min of the last failure: waits
        deadline = time.time() + 4
        while time.time() < deadline and "fl-up-1" not in got:
            time.sleep(0.05)
        s.expect(spare_gets("fl-up-1", 0.2), None, "bounce of the stanza sent during the back-off")
        s.expect("fl-up-1" in got and got["fl-up-1"] - t0 < 3, True,
                 "delivered within retry_min + a second: %s" % got)


def auth_certificate_inbound(s):
    """A hub of its own with a certificate (the suite's hub has none, so it
    cannot offer STARTTLS): [remote strict.fake] auth certificate refuses a
    dialback claim over TLS whose certificate names another domain with a
    dialback error, keeps the stream, and takes one whose certificate proves
    the domain (XEP-0344)."""
    import subprocess
    pki = S.pki()
    conf = os.path.join(S.tmp, "strict.conf")
    with open(conf, "w") as f:
        f.write("[hub]\nworkers 1\ndomain hub.fake\nlisten s2s 127.0.0.1:%d tls required\nlog_level debug\n"
                "dns_server 127.0.0.1:%d\nca_file %s\n[domain echo.fake]\ncert %s/hub.crt\nkey %s\n"
                "[remote strict.fake]\nauth certificate\n" % (EX[7], P.dns, pki.ca, pki.dir, pki.key))
    log = open(os.path.join(S.tmp, "strict.log"), "w")
    hub = subprocess.Popen([H.FEDHUB, "-c", conf], stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", EX[7]), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        hdr = H.s2s_header(frm="strict.fake")
        answers = []
        for cert in ("wrong", "strict"):
            c = s._register(H.Conn(EX[7], attacked=False))
            c.send(hdr)
            c.header()
            c.features()
            c.starttls(S.tls_client(cert), "echo.fake", hdr)
            c.send("<db:result from='strict.fake' to='echo.fake'>%s</db:result>" % ("ab" * 32))
            el = c.element(5)
            answers.append((attr(el, "type"), "not-authorized" in el))
            s.expect(c.closed_within(0.3), False, "stream closed after the %s certificate" % cert)
        s.expect(repr(answers), repr([("error", True), ("valid", False)]),
                 "dialback answers (wrong, proving certificate)")
    finally:
        hub.terminate()
        try:
            hub.wait(5)
        except subprocess.TimeoutExpired:
            hub.kill()
        log.close()


def body(s):
    global SP
    SP = Component(P.comp, "spare.fake", H.SECRET)
    dns = DNS(P.dns, srv={"_xmpp-server._tcp.priv.fake": [(0, EX[9], "target.priv.fake")]},
              a={"target.priv.fake": "127.0.0.1", "priva.fake": "10.9.8.7"})
    try:
        s.case("pre-1.0 answer on an outbound link with TLS required: unsupported-version, nothing in cleartext",
               pre10_outbound, timeout=12)
        s.case("pre-1.0 answer on a verification stream with TLS required: the key is never sent",
               pre10_verify, timeout=12)
        s.case("auth certificate, wrong-name certificate: policy-violation, nothing sent, bounced",
               wrong_cert, timeout=14)
        s.case("db:result answered from another domain: invalid-from, bounced", db_wrong_from, timeout=12)
        s.case("reverse-dialback request is answered with an error, not taken as a refusal",
               reverse_dialback, closed=None, timeout=12)
        s.case("namespaces and EXTERNAL in attribute values offer nothing", tricky_features, closed=None,
               timeout=12)
        s.case("<required/> in a foreign namespace does not make STARTTLS mandatory", foreign_required,
               closed=None, timeout=12)
        s.case("bidi stanzas from an unauthenticated peer: not-authorized, not routed", bidi_unauthenticated,
               timeout=12)
        s.case("bidi with a certificate naming the peer: its stanzas are routed", bidi_authenticated,
               closed=None, timeout=12)
        s.case("peer's XEP-0478 limit: the stanza over it bounced with policy-violation", peer_limit,
               closed=None, timeout=12)
        s.case("remote_deny outbound: bounced with policy-violation, no connection", deny_out, closed=None)
        s.case("remote_allow list outbound: an unlisted domain is bounced", allow_list_out, closed=None)
        s.case("remote_deny inbound at the stream header: policy-violation", deny_in_header)
        s.case("remote_deny inbound when a pair is claimed: policy-violation", deny_in_pair)
        s.case("a more specific remote_allow beats remote_deny inbound", allow_in_specific, closed=False)
        s.case("[remote] tls required inbound: a cleartext pair is refused", tls_required_in)
        s.case("SRV target on a loopback address refused by default", private_srv, closed=None)
        s.case("A record on a private address refused by default", private_a, closed=None)
        s.case("a remote that was down is reached retry_min after it comes back", down_then_up, closed=None,
               timeout=16)
        s.case("auth certificate inbound: dialback refused without a proving certificate, taken with one",
               auth_certificate_inbound, closed=None, timeout=12)
        m = s.metrics()
        s.check("policy refusals are counted", m.get("fedhub_s2s_policy_refused_total", 0) >= 5, m)
        s.check("stanzas over a peer's limit are counted", m.get("fedhub_stanzas_over_peer_limit_total", 0) >= 1, m)
    finally:
        dns.close()
        SP.close()


S.pki().leaves([("peer", ["cb.fake"]), ("strict", ["strict.fake"])])
S.run(body)
