#!/usr/bin/env python3
"""The inbound s2s edge against attackers (framework: lib/hostile.py).

Each case sends one attack on connections of its own while the legitimate
link carries traffic, and asserts the exact stream error (RFC 6120 §4.9.3) or
dialback answer (XEP-0220), that the attacked link (and only it) is closed,
and that the legitimate link lost nothing:

  STARTTLS plaintext injection (CVE-2011-0411 class): <starttls/> split at
    several offsets with a forged stream, <db:result/> and <message/> behind
    it in the clear; the same behind <proceed/> on an outbound link;
  pre-1.0 stream headers where TLS is required and after STARTTLS;
  dialback abuse: one <db:result/> repeated, a refused pair retried, keys
    that are markup, too long, too short or not hex, pending verifications
    over the per-stream and the global bound, too many pairs, a db:verify
    flood;
  slowloris under the pre-auth deadline (whitespace, a pair that failed);
  PROXY protocol from an untrusted source, missing (also on direct TLS), and
    the proxied address used for the per-source limits;
  connection limits per source address and their rate;
  the authentication of a `tls optional` stream forgotten after STARTTLS;
  XEP-0478 limits in the features.

Every connection a case opens comes from an address of its own in
127.1.0.0/16 (bound before connecting), so the per-source limits of one case
never touch another; the cases about those limits pick their address."""
import itertools
import os
import re
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import hostile as H  # noqa: E402
from hostile import NS_STREAM, Reader, attr, s2s_header  # noqa: E402
from fakepeer import serve  # noqa: E402

KEY = "0123456789abcdef" * 4  # the XEP-0185 form: 64 hex digits
NSTLS = "urn:ietf:params:xml:ns:xmpp-tls"
STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
PREAUTH = 3
SLOW = 16  # domains whose authoritative server answers late

CONF = """
[hub]
workers 2
domain hub.fake
listen s2s 127.0.0.1:{s2s} tls optional
listen s2s 127.0.0.1:{extra0} tls required
listen s2s 127.0.0.1:{extra1} tls optional proxy_protocol
listen s2s-tls 127.0.0.1:{s2s_tls}
listen s2s-tls 127.0.0.1:{extra2} proxy_protocol
listen component 127.0.0.1:{comp}
http 127.0.0.1:{http}
log_level info
connect_timeout 3
retry_min 1
dns_server 127.0.0.1:{dns}
ca_file {pki}/ca.pem
proxy_from 127.0.0.1
max_connections_per_ip 4
connection_rate_per_ip 5
preauth_timeout %d
max_preauth_bytes 32k
max_pairs_per_stream 50
max_verify_per_stream 8
max_verify_total 12
[domain echo.fake]
cert {pki}/hub.crt
key {pki}/leaf.key
[component echo.fake]
secret s3cret
[component spare.fake]
secret s3cret
[route remote.fake]
connect 127.0.0.1:{remote}
tls optional
[route auth.fake]
connect 127.0.0.1:{extra3}
tls optional
[route bad.fake]
connect 127.0.0.1:{extra4}
tls optional
[route tlsr.fake]
connect 127.0.0.1:{extra6}
tls required
""" % PREAUTH + "".join("[route slow%d.fake]\nconnect 127.0.0.1:{extra5}\ntls optional\n" % i for i in range(SLOW))

S = H.Suite("hostile_inbound", CONF, base=25400, limit=55)

# ---- every case connection from an address of its own -------------------
_src = itertools.count(1)


def fresh_source():
    n = next(_src)
    return "127.1.%d.%d" % (n // 250, n % 250 + 1)


# every raw connection a case opens comes from a source of its own
# (fakepeer, which the legitimate link uses, is untouched)
H.source_address = fresh_source


def conn_from(s, src, port, attacked=True, tls=None):
    """A raw connection from source address src, registered with the case."""
    c = H.Conn.__new__(H.Conn)
    c.port, c.attacked, c.eof, c.closed_locally, c.x = port, attacked, False, False, None
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname="echo.fake")
    c.sock, c.r = sock, Reader(sock)
    return s._register(c)


def opened(c, frm="remote.fake", to="echo.fake"):
    """Send a 1.0 header on c and read the hub's header and features."""
    c.send(s2s_header(frm, to))
    c.header()
    c.feats = c.features()
    return c


def db_result(frm, to="echo.fake", key=KEY):
    return ("<db:result from='%s' to='%s'>%s</db:result>" % (frm, to, key)).encode()


def answers(c, n=None, within=1.5):
    """The <db:result/> answers (type, condition or None) read on c within
    `within` s (or until n of them came)."""
    got, deadline = [], time.time() + within
    while (n is None or len(got) < n) and time.time() < deadline:
        try:
            el = c.element(max(0.05, deadline - time.time()))
        except (socket.timeout, ssl.SSLError):
            break
        except (EOFError, OSError):
            break
        if el.startswith("<db:result"):
            m = re.search(r"<([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'", el)
            got.append((attr(el, "type"), m.group(1) if m else None, attr(el, "from"), attr(el, "to")))
        elif el.startswith("<stream:error"):
            got.append(("stream-error", el, None, None))
            break
    return got


def same(v):
    """A want that compares lists and tuples for equality (hostile.expect
    takes a plain list or tuple as a set of choices)."""
    f = lambda got: got == v  # noqa: E731
    f.__name__ = repr(v)
    return f


def metric(s, name):
    return s.metrics().get("fedhub_%s_total" % name, 0)


# ---- fake authoritative servers for the dialback cases -------------------
class Authoritative:
    """Listens on port for the hub's verification streams and answers each
    <db:verify/> with `answer` ('valid', 'invalid') after `delay` s, or never
    (answer None). Counts the streams and the requests."""

    def __init__(self, port, domain, answer, delay=0.0):
        self.domain, self.answer, self.delay = domain, answer, delay
        self.conns = self.verifies = 0
        self.keys = []
        self.lock = threading.Lock()
        self.ls = serve(port, self._conn, backlog=128)

    def counts(self):
        with self.lock:
            return self.conns, self.verifies

    def _conn(self, c):
        with self.lock:
            self.conns += 1
        self._serve(c)

    def _serve(self, c):
        r = Reader(c)
        try:
            r.stream_header(10)
            c.sendall(("<stream:stream xmlns='jabber:server' xmlns:stream='%s' xmlns:db='jabber:server:dialback'"
                       " id='auth%d' from='%s' version='1.0'><stream:features/>"
                       % (NS_STREAM, id(c), self.domain)).encode())
            while True:
                el = r.element(30)
                if not el.startswith("<db:verify"):
                    continue
                with self.lock:
                    self.verifies += 1
                    self.keys.append(el)
                if self.answer is None:
                    continue
                time.sleep(self.delay)
                c.sendall(("<db:verify from='%s' to='%s' id='%s' type='%s'/>"
                           % (attr(el, "to"), attr(el, "from"), attr(el, "id"), self.answer)).encode())
        except (EOFError, OSError):
            pass
        finally:
            c.close()


# ---- 1. STARTTLS plaintext injection ----------------------------------------
def forged_stream(tag, pad):
    """What a man in the middle slips in behind <starttls/>: whitespace (pad
    bytes, so the tail is longer than the hub's pending chunk), then a whole
    forged stream restart that would authenticate remote.fake by its
    certificate (XEP-0344) and carry a message."""
    return (b" " * pad + s2s_header() + db_result("remote.fake") +
            ("<message from='u@remote.fake' to='bot@echo.fake' id='%s'><body>forged</body></message>" % tag).encode())


def starttls_injection(split, pad):
    def fn(s):
        tag = "inj-%s-%d" % (split, pad)
        d0 = s.metrics().get("fedhub_starttls_discarded_bytes_total", 0)
        c = opened(s.connect(s.ports.s2s))
        if split is None:  # one segment
            c.send(STARTTLS + forged_stream(tag, pad))
        else:
            c.send(STARTTLS[:split])
            time.sleep(0.05)
            c.send(STARTTLS[split:] + forged_stream(tag, pad))
        el = c.element()
        s.expect(el.startswith("<proceed"), True, "<proceed/>: " + el[:100])
        c.sock = s.tls_client("remote").wrap_socket(c.sock, server_hostname="echo.fake")
        c.r = Reader(c.sock)
        dropped = s.metrics().get("fedhub_starttls_discarded_bytes_total", 0) - d0
        s.expect(dropped, len(forged_stream(tag, pad)), "fedhub_starttls_discarded_bytes_total grew by")
        c.send(s2s_header())
        c.header()
        feats = c.features()
        s.expect("EXTERNAL" in feats, True, "the restarted stream is a clean one over TLS: " + feats[:200])
        s.expect(answers(c, within=0.7), same([]), "no answer to a db:result sent in the clear")
        # the forged db:result made no pair: a stanza from remote.fake is refused
        c.send(b"<message from='u@remote.fake' to='bot@echo.fake' id='%s-2'/>" % tag.encode())
        s.expect(c.stream_error(), "not-authorized", "stanza on the unauthenticated TLS stream")
        try:
            el = s.legit.recv_component(0.3)
        except socket.timeout:
            el = None
        s.expect(el is None or tag not in el, True, "forged message delivered: %s" % el)
    return fn


def outbound_proceed_injection(s):
    """A server answers our <starttls/> with <proceed/> and a forged stream
    restart (features, <db:result type='valid'/>) in the clear: the hub must
    drop it and wait for the real dialback answer inside TLS."""
    pki = s.pki()
    if not os.path.exists(os.path.join(pki.dir, "tlsr.crt")):
        pki.leaf("tlsr", ["tlsr.fake"])
    ctx = s.tls_server("tlsr")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", s.ports.extra(6)))
    ls.listen(4)
    ls.settimeout(8)
    comp = s.component("spare.fake", attacked=False)
    comp.send("<message from='bot@spare.fake' to='u@tlsr.fake' id='out-1'><body>x</body></message>")
    c, _ = ls.accept()
    ls.close()
    c.settimeout(8)
    r = Reader(c)
    hdr = ("<stream:stream xmlns='jabber:server' xmlns:stream='%s' xmlns:db='jabber:server:dialback' id='%%s'"
           " from='tlsr.fake' version='1.0'>" % NS_STREAM)
    try:
        r.stream_header()
        c.sendall((hdr % "plain" + "<stream:features><starttls xmlns='%s'><required/></starttls>"
                   "</stream:features>" % NSTLS).encode())
        el = r.element()
        s.expect(el.startswith("<starttls"), True, "the hub asks for STARTTLS: " + el)
        proceed = ("<proceed xmlns='%s'/>" % NSTLS).encode()
        forged = (b" " * 3000 + (hdr % "forged").encode() +
                  b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
                  b"</stream:features><db:result from='tlsr.fake' to='spare.fake' type='valid'/>")
        c.sendall(proceed[:7])
        time.sleep(0.05)
        c.sendall(proceed[7:] + forged)
        t = ctx.wrap_socket(c, server_side=True)
        t.settimeout(5)
        r = Reader(t)
        r.stream_header()
        t.sendall((hdr % "tls" + "<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/>"
                   "</dialback></stream:features>").encode())
        el = r.element()
        s.expect(el.startswith("<db:result") and attr(el, "from") == "spare.fake", True,
                 "the hub starts dialback inside TLS: " + el[:200])
        try:
            early = r.element(1.0)
        except socket.timeout:
            early = None
        s.expect(early, None, "nothing may follow before our answer (the forged valid was dropped)")
        t.sendall(b"<db:result from='tlsr.fake' to='spare.fake' type='valid'/>")
        el = r.element(5)
        s.expect(attr(el, "id"), "out-1", "the queued message after the real answer")
        t.sendall(b"</stream:stream>")
        t.close()
    finally:
        try:
            c.close()
        except OSError:
            pass
        comp.close()


# ---- 2. pre-1.0 streams where TLS is required -------------------------------
def pre10_plain_required(s):
    m0 = metric(s, "s2s_in_refused_version")
    c = s.connect(S.ports.extra(0))
    c.send(s2s_header(version=None))
    s.expect(c.stream_error(), "unsupported-version", "the stream error")
    s.expect(metric(s, "s2s_in_refused_version") - m0, 1, "counted in /metrics")


def pre10_after_starttls(s):
    c = opened(s.connect(s.ports.s2s))
    c.starttls(s.tls_client(), "echo.fake")
    c.send(s2s_header(version=None))
    return c.stream_error(), "unsupported-version"


def pre10_optional_served(s):
    c = s.connect(s.ports.s2s)
    c.send(s2s_header(version=None))
    h = c.header()
    s.expect("version=" not in h, True, "a pre-1.0 answer: " + h)
    c.send(db_result("nxd.fake"))
    a = answers(c, 1, within=5)
    return [x[:2] for x in a], same([("error", "remote-server-not-found")])


def pre10_direct_tls(s):
    c = s.connect(s.ports.s2s_tls, tls=s.tls_client())
    c.send(s2s_header(version=None))
    return c.stream_error(), "unsupported-version"


# ---- 6. pre-authentication resource exhaustion ------------------------------
def repeated_result(s):
    before = AUTH.counts()
    c = opened(s.connect(s.ports.s2s), frm="auth.fake")
    c.send(db_result("auth.fake") * 40)
    got = answers(c, within=2.5)
    conns, verifies = AUTH.counts()
    s.expect((conns - before[0], verifies - before[1]), same((1, 1)), "verification streams and requests for 40 copies")
    s.expect([x[0] for x in got], same(["valid"]), "one answer")
    c.send(db_result("auth.fake"))
    s.expect([x[0] for x in answers(c, 1)], same(["valid"]), "a valid pair asked again: valid, without a verification")
    s.expect(AUTH.counts()[1] - before[1], 1, "requests after the pair was valid")


def refused_retry(s):
    before = BAD.counts()[1]
    c = opened(s.connect(s.ports.s2s), frm="bad.fake")
    got = []
    for _ in range(4):
        c.send(db_result("bad.fake"))
        got += [x[:2] for x in answers(c, 1, within=4)]
    s.expect(got, same([("invalid", None), ("invalid", None), ("error", "forbidden"), ("error", "forbidden")]),
             "answers to a refused pair asked four times")
    s.expect(BAD.counts()[1] - before, 2, "verifications made (one retry allowed)")


def pending_per_stream(s):
    m0 = metric(s, "s2s_in_refused_verify_stream")
    c = opened(s.connect(s.ports.s2s), frm="slow0.fake")
    c.send(b"".join(db_result("slow%d.fake" % i) for i in range(12)))
    got = answers(c, within=1.0)
    s.expect([x[:2] for x in got], same([("error", "resource-constraint")] * 4), "answers beyond 8 pending")
    s.expect(metric(s, "s2s_in_refused_verify_stream") - m0, 4, "counted in /metrics")
    c.close()
    time.sleep(1.3)  # let the 8 verifications end before the next case


def pending_total(s):
    m0 = metric(s, "s2s_in_refused_verify_total")
    a = opened(s.connect(s.ports.s2s), frm="slow0.fake")
    a.send(b"".join(db_result("slow%d.fake" % i) for i in range(8)))
    time.sleep(0.3)
    b = opened(s.connect(s.ports.s2s), frm="slow8.fake")
    b.send(b"".join(db_result("slow%d.fake" % i) for i in range(8, 16)))
    got = answers(b, within=1.0)
    s.expect([x[:2] for x in got], same([("error", "resource-constraint")] * 4), "answers beyond 12 in flight")
    s.expect(metric(s, "s2s_in_refused_verify_total") - m0, 4, "counted in /metrics")
    a.close()
    b.close()
    time.sleep(1.3)


def too_many_pairs(s):
    c = opened(s.connect(s.ports.s2s))
    c.send(b"".join(db_result("p%d.fake" % i) for i in range(60)))
    return c.stream_error(8), "policy-violation"


def verify_flood(s):
    c = opened(s.connect(s.ports.s2s))
    req = b"<db:verify from='remote.fake' to='echo.fake' id='i1'>%s</db:verify>" % KEY.encode()
    try:
        c.send(req * 350)  # 40 kB in one write, over max_preauth_bytes
    except OSError:
        pass
    return c.stream_error(), "policy-violation"


def whitespace_flood(s):
    c = opened(s.connect(s.ports.s2s))
    try:
        c.send(b" " * 40000)
    except OSError:
        pass
    return c.stream_error(), "policy-violation"


def slowloris(with_pair):
    def fn(s):
        t0 = time.time()
        c = opened(s.connect(s.ports.s2s), frm="nxd.fake")
        if with_pair:
            c.send(db_result("nxd.fake"))
        err = None
        while time.time() - t0 < PREAUTH + 3:
            try:
                c.send(b" ")
            except OSError:
                break
            try:
                c.sock.settimeout(0.4)
                d = c.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not d:
                c.eof = True
                break
            c.r.buf += d
            if b"</stream:error>" in c.r.buf:
                break
        err = c.stream_error(1)
        s.expect(err, "connection-timeout", "the stream error")
        s.expect(time.time() - t0 < PREAUTH + 2.5, True, "closed at the pre-auth deadline (%.1fs)" % (time.time() - t0))
    return fn


# ---- 7. dialback keys -----------------------------------------------------
def bad_key(key):
    def fn(s):
        before, m0 = AUTH.counts()[1], metric(s, "s2s_in_refused_bad_key")
        c = opened(s.connect(s.ports.s2s), frm="auth.fake")
        c.send(db_result("auth.fake", key=key))
        got = [x[:2] for x in answers(c, 1, within=2)]
        s.expect(got, same([("invalid", None)]), "the answer")
        time.sleep(0.2)
        s.expect(AUTH.counts()[1] - before, 0, "requests sent on to the authoritative server")
        s.expect(metric(s, "s2s_in_refused_bad_key") - m0, 1, "counted in /metrics")
    return fn


def good_key_uppercase(s):
    before = AUTH.counts()[1]
    c = opened(s.connect(s.ports.s2s), frm="auth.fake")
    c.send(db_result("auth.fake", key=KEY.upper()[:40]))
    got = [x[:2] for x in answers(c, 1, within=3)]
    s.expect(got, same([("valid", None)]), "the answer")
    s.expect(AUTH.counts()[1] - before, 1, "requests sent on")
    s.expect(KEY.upper()[:40] in AUTH.keys[-1], True, "the key travels as it came: " + AUTH.keys[-1][:200])


# ---- 8. PROXY protocol and connection limits --------------------------------
def proxy_v1(src):
    return ("PROXY TCP4 %s 127.0.0.1 40000 5269\r\n" % src).encode()


def proxy_untrusted(s):
    m0 = s.metrics().get("fedhub_proxy_untrusted_total", 0)
    c = s.connect(s.ports.extra(1))
    c.send(proxy_v1("192.0.2.1") + s2s_header())
    tail = c.until_close(3)
    s.expect(tail, b"", "what the hub says before closing")
    s.expect(s.metrics().get("fedhub_proxy_untrusted_total", 0) - m0, 1, "counted in /metrics")


def proxy_missing(s):
    c = conn_from(s, "127.0.0.1", s.ports.extra(1))
    c.send(s2s_header())
    s.expect(c.until_close(3), b"", "what the hub says before closing")


def proxy_missing_direct_tls(s):
    c = conn_from(s, "127.0.0.1", s.ports.extra(2))
    try:
        c.sock = s.tls_client().wrap_socket(c.sock, server_hostname="echo.fake")
        got = "handshake completed"
    except (ssl.SSLError, OSError) as e:
        got = "refused"
        c.eof = True
    return got, "refused"


def proxied_source_limits(s):
    """Behind a trusted balancer the per-source limit counts the client the
    header names, not the balancer."""
    cs = []
    for _ in range(4):
        c = conn_from(s, "127.0.0.1", s.ports.extra(1), attacked=False)
        c.send(proxy_v1("198.51.100.7") + s2s_header())
        c.header()
        c.features()
        cs.append(c)
    c = conn_from(s, "127.0.0.1", s.ports.extra(1))
    c.send(proxy_v1("198.51.100.7") + s2s_header())
    s.expect(c.stream_error(), "policy-violation", "a fifth connection for the same client")
    o = conn_from(s, "127.0.0.1", s.ports.extra(1), attacked=False)
    o.send(proxy_v1("198.51.100.8") + s2s_header())
    o.header()
    s.expect(o.features().startswith("<stream:features"), True, "another client through the same balancer")


def proxied_direct_tls_limit(s):
    """On a direct TLS listener behind the balancer, a client over its limit
    is refused before the TLS handshake."""
    for _ in range(4):
        c = conn_from(s, "127.0.0.1", s.ports.extra(2), attacked=False)
        c.send(proxy_v1("198.51.100.9"))
        c.sock = s.tls_client().wrap_socket(c.sock, server_hostname="echo.fake")
        c.r = Reader(c.sock)
        opened(c)
    c = conn_from(s, "127.0.0.1", s.ports.extra(2))
    c.send(proxy_v1("198.51.100.9"))
    try:
        c.sock = s.tls_client().wrap_socket(c.sock, server_hostname="echo.fake")
        got = "handshake completed"
    except (ssl.SSLError, OSError):
        got = "refused"
        c.eof = True
    return got, "refused"


def per_ip_limit(s):
    m0 = metric(s, "s2s_in_refused_per_ip")
    src = fresh_source()
    keep = [opened(conn_from(s, src, s.ports.s2s, attacked=False)) for _ in range(4)]
    c = conn_from(s, src, s.ports.s2s)
    s.expect(c.stream_error(), "policy-violation", "a fifth connection from one address")
    keep[0].close()
    time.sleep(0.3)
    d = opened(conn_from(s, src, s.ports.s2s, attacked=False))
    s.expect(d.feats.startswith("<stream:features"), True, "room again once one closed")
    s.expect(metric(s, "s2s_in_refused_per_ip") - m0, 1, "counted in /metrics")


def rate_limit(s):
    m0 = metric(s, "s2s_in_refused_rate")
    src = fresh_source()
    for _ in range(5):  # spaced so that the hub's workers accept them in order
        x = conn_from(s, src, s.ports.s2s, attacked=False)
        x.close()
        time.sleep(0.01)
    c = conn_from(s, src, s.ports.s2s)
    s.expect(c.stream_error(), "policy-violation", "a sixth connection within a second")
    time.sleep(0.5)
    d = opened(conn_from(s, src, s.ports.s2s, attacked=False))
    s.expect(d.feats.startswith("<stream:features"), True, "a new token after 0.2 s")
    s.expect(metric(s, "s2s_in_refused_rate") - m0, 1, "counted in /metrics")


def tls_optional_reset(s):
    """Dialback in the clear, then STARTTLS: the pair does not survive into
    the TLS stream (RFC 6120 §5.4.3.3)."""
    o = s.remote_s2s()
    s.expect(o.auth("echo.fake"), "valid", "dialback in the clear")
    c = H.Conn.of(o)
    feats = c.starttls(s.tls_client("wrong"), "echo.fake", o.hdr)
    o.s, o.r = c.sock, c.r
    s.expect("dialback" in feats, True, "features after TLS: " + feats[:200])
    c.send(b"<message from='u@remote.fake' to='bot@echo.fake' id='reset-1'/>")
    return c.stream_error(), "not-authorized"


def limits_advertised(s):
    c = opened(s.connect(s.ports.s2s))
    m = re.search(r"<limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>(\d+)</max-bytes>"
                  r"<idle-seconds>(\d+)</idle-seconds></limits>", c.feats)
    return (m.groups() if m else c.feats), same(("262144", "600"))


def main(s):
    global AUTH, BAD, SILENT
    AUTH = Authoritative(s.ports.extra(3), "auth.fake", "valid", delay=0.7)
    BAD = Authoritative(s.ports.extra(4), "bad.fake", "invalid")
    SILENT = Authoritative(s.ports.extra(5), "slow.fake", "invalid", delay=1.2)  # pending for 1.2 s
    only = os.environ.get("HOSTILE_ONLY")  # run only the cases whose name contains it
    if only:
        case = s.case
        s.case = lambda name, *a, **k: case(name, *a, **k) if only in name else None

    for split in (1, 9, len(STARTTLS) - 1):
        for pad in (100, 3000):
            s.case("STARTTLS split at byte %d, %d bytes of forged plaintext behind it: dropped" % (split, pad),
                   starttls_injection(split, pad))
    s.case("STARTTLS whole, forged plaintext in the same segment: dropped", starttls_injection(None, 2000))
    s.case("outbound: forged plaintext behind <proceed/>: dropped", outbound_proceed_injection, closed=None,
           timeout=15)

    s.case("pre-1.0 header on a tls required listener: unsupported-version", pre10_plain_required)
    s.case("pre-1.0 header after STARTTLS: unsupported-version", pre10_after_starttls)
    s.case("pre-1.0 header on direct TLS (required): unsupported-version", pre10_direct_tls)
    s.case("pre-1.0 header on a tls optional listener is served (no features)", pre10_optional_served,
           closed=False)

    s.case("db:result repeated 40 times: one verification, one answer", repeated_result, closed=False)
    s.case("a refused pair retried: verified once more, then forbidden", refused_retry, closed=False,
           timeout=20)
    s.case("12 pending verifications on one stream: 4 refused (resource-constraint)", pending_per_stream,
           closed=None, timeout=10)
    s.case("16 pending verifications in the hub: 4 refused (resource-constraint)", pending_total, closed=None,
           timeout=10)
    s.case("60 pairs on one stream (50 allowed): policy-violation", too_many_pairs)
    s.case("db:verify flood before authentication: policy-violation", verify_flood)
    s.case("whitespace flood before authentication: policy-violation", whitespace_flood)
    s.case("slowloris with whitespace: connection-timeout at preauth_timeout", slowloris(False), timeout=12)
    s.case("slowloris after a failed pair: connection-timeout at preauth_timeout", slowloris(True), timeout=12)

    for name, key in (("markup", "<x xmlns='urn:evil'>" + KEY + "</x>"), ("129 hex digits", "a" * 129),
                      ("15 hex digits", "a" * 15), ("not hex", "g" + KEY[1:]),
                      ("escaped markup", "&lt;x/&gt;" + KEY)):
        s.case("dialback key: %s: invalid, not sent on" % name, bad_key(key), closed=False)
    s.case("dialback key: 40 upper-case hex digits are sent on", good_key_uppercase, closed=False)

    s.case("PROXY header from an untrusted source: closed, counted", proxy_untrusted)
    s.case("PROXY header missing from the balancer: closed", proxy_missing)
    s.case("PROXY header missing on a direct TLS listener: closed", proxy_missing_direct_tls)
    s.case("behind the balancer the per-source limit counts the client", proxied_source_limits)
    s.case("behind the balancer on direct TLS: over the limit, refused before the handshake",
           proxied_direct_tls_limit)
    s.case("five connections from one address: the fifth gets policy-violation", per_ip_limit)
    s.case("six connections from one address within a second: policy-violation", rate_limit)

    s.case("tls optional: a dialback pair does not survive STARTTLS", tls_optional_reset)
    s.case("XEP-0478 limits in the features", limits_advertised, closed=False)


if __name__ == "__main__":
    S.run(main)
