"""hostile: a framework for hostile-input suites against a running fedhub.

A suite starts one fedhub from a router.conf text of its own, keeps legitimate
traffic flowing through it (an authenticated inbound s2s stream from the fake
remote server remote.fake to the component echo.fake, the component's replies
going out on the hub's outbound link back to remote.fake), and runs attack
cases, each on connections of its own. After every case it asserts, on one TAP
line: (1) the exact error the case expects, (2) the attacked connections were
closed by the hub (or stayed open, as the case says), (3) the hub is alive
(a death is a failure; the hub is restarted so later cases still run), (4) every
legitimate stanza sent while the case ran arrived, both ways (ids counted).
At the end the hub gets SIGTERM and must exit 0, and a sanitizer report in any
of its logs fails the run (FEDHUB=build/asan/fedhub or build/tsan/fedhub).

    import os, sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
    import hostile as H

    S = H.Suite("t_hostile_example", H.conf(hub_extra="max_stanza_size_preauth 16k"), base=25900)

    def big_preauth(s):
        c = s.s2s()                     # header sent, hub's header and features read
        c.send(b"<message>" + b"A" * 17000 + b"</message>", segments=4)
        return c.stream_error(), "policy-violation"

    def body(s):
        s.case("pre-auth stanza over the limit", big_preauth)
        s.case("wrong secret", lambda s: s.expect(s.comp_auth("echo.fake", "bad"), "not-authorized"))
        s.check("a metric counts it", s.metrics().get("fedhub_conn_accepted_total", 0) > 0)

    S.run(body)                         # exits 0 when every line is "ok"

Ports: each test file takes its own block of 100 ports, Suite(base=B): s2s
B+69, s2s_tls B+68, component B+47, http B+80, the fake remote server B+70,
dns B+53 (nothing listens there: lookups fail fast), and B+90..B+99 free for the
file (ports.extra(i)). Blocks in use: t_robust 25200, t_hostile 25300,
t_hostile_inbound 25400, t_hostile_outbound 25500, t_hostile_xml 25600.
The conf text may name {s2s} {s2s_tls} {comp} {http} {remote} {dns} {extra0}..
{extra9}, {tmp} (the run's directory) and {pki} (a test CA with leaves, made on
first use: {pki}/ca.pem; hub.crt for echo.fake + hub.fake, remote.crt for
remote.fake, wrong.crt for other.fake; every leaf's key is {pki}/leaf.key).
conf() gives the base every suite needs (echo.fake and spare.fake components with
secret s3cret, the route to remote.fake); spare.fake is for cases that need an
authenticated component of their own (a second connection for echo.fake would
join its pool and take legitimate stanzas).

Case API: s.case(name, fn, closed=True, timeout=10). fn(s) (or fn()) opens its
connections with s.connect/s.s2s/s.comp/s.comp_auth (each registered with the
case; attacked=False leaves one out of the closed check) and either returns
(got, want) or calls s.expect(got, want[, what]) any number of times. want is a
string (equality), a set/tuple/list (membership: to compare a tuple, expect
got == (...) to be True) or a callable (predicate).
closed=True: every attacked connection must be closed by the hub (an EOF seen
while reading counts); closed=False: each must still be open; closed=None: not
checked. An exception in fn, or running over timeout, fails the case.

s.s2s() leaves the hub's header in .hdr, its stream id in .sid (for dialback
keys: db_key(s.rs.secret, receiving, originating, sid)), its features in .feats;
s.comp() the stream id in .sid (handshake(sid, secret)). connect(rcvbuf=N) makes
a peer that reads slowly or never. A case that takes over 3 s says so in a
comment line.
Connections (Conn): send(bytes, segments=N or [sizes], pause=s) with TCP_NODELAY,
header(), features(), element(), starttls(ctx), stream_error() -> the condition
of the first <stream:error/>, or 'closed' / 'timeout', closed_within(t),
until_close(t). TLS: s.tls_client(cert=None), s.tls_server(cert), s.pki();
s.connect(port, tls=ctx) is direct TLS, s.s2s(tls=ctx) does STARTTLS.
s.metrics() scrapes /metrics into {name or 'name{a="b"}': float}.
s.legit: .auth(domain) authenticates another pair on the legitimate link,
.send_raw(bytes) writes on it (serialised with the background sender),
.recv_component(t) returns the next non-legitimate element the component got.
"""
import inspect
import os
import queue
import re
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import traceback


HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from fakepeer import (Component, RemoteServer, Reader, attr, stream_id, NS_STREAM, NS_STREAMS,  # noqa: E402,F401
                      s2s_header, comp_header, handshake, error_condition, stream_error_of, db_key)
import hubproc  # noqa: E402
from hubproc import (FEDHUB, ROOT, Hub, Results, parse_metrics, rss_kb, sanitizer_scale,  # noqa: E402,F401
                     SANITIZER, TSAN_SUPP)
SECRET = "s3cret"
LEGIT_DOMAIN = "echo.fake"
REMOTE_DOMAIN = "remote.fake"

BASE_CONF = """
[hub]
workers 2
domain hub.fake
listen s2s 127.0.0.1:{s2s}
listen component 127.0.0.1:{comp}
http 127.0.0.1:{http}
log_level info
connect_timeout 3
retry_min 1
dns_server 127.0.0.1:{dns}
%s
[component echo.fake]
secret s3cret
[component spare.fake]
secret s3cret
[route remote.fake]
connect 127.0.0.1:{remote}
%s
"""

def conf(hub_extra="", sections=""):
    """The base router.conf (see the module docstring) with lines added to
    [hub] and sections appended."""
    return BASE_CONF % (hub_extra, sections)


class Ports:
    """A block of 100 loopback ports starting at base."""

    def __init__(self, base):
        self.base = base
        self.s2s, self.s2s_tls, self.comp, self.http = base + 69, base + 68, base + 47, base + 80
        self.remote, self.dns = base + 70, base + 53

    def extra(self, i):
        assert 0 <= i < 10
        return self.base + 90 + i

    def names(self):
        d = {k: v for k, v in vars(self).items() if k != "base"}
        d.update(("extra%d" % i, self.extra(i)) for i in range(10))
        return d


def fill(text, values):
    """Replaces {name} for the names in values; leaves every other brace alone."""
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), text)


def _mark_eof(x, r):
    if isinstance(x, Conn) and getattr(r, "eof", False):
        x.eof = True


def closed_within(x, timeout=3):
    """True when the hub closes x (a Conn or a fakepeer stream) within timeout."""
    return Conn.of(x).closed_within(timeout)


def until_close(x, timeout=5):
    """What the hub sends on x (a Conn or a fakepeer stream) until it closes it."""
    return Conn.of(x).until_close(timeout)


# A function giving the local address each new Conn binds to before it
# connects (None: the kernel's choice). A suite whose cases must come from
# sources of their own (per-source limits) sets it.
source_address = None


class Conn:
    """A raw connection to one of the hub's listeners."""

    def __init__(self, port, tls=None, server_hostname=LEGIT_DOMAIN, timeout=5, attacked=True, host="127.0.0.1",
                 rcvbuf=None):
        self.port, self.attacked, self.eof, self.closed_locally, self.x = port, attacked, False, False, None
        s = socket.socket()
        if source_address:
            s.bind((source_address(), 0))
        if rcvbuf:  # before connect(), so that the window is small from the start
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            s = tls.wrap_socket(s, server_hostname=server_hostname)
        self.sock = s
        self.r = Reader(s)

    @classmethod
    def of(cls, x):
        """The Conn view of a fakepeer stream (Component, S2SOut), made once:
        closed_within(), until_close(), stream_error() on its socket."""
        if isinstance(x, Conn):
            return x
        v = getattr(x, "_hostile_conn", None)
        if v is None:
            v = cls.__new__(cls)
            v.port, v.attacked, v.eof, v.closed_locally, v.x = None, True, False, False, x
            x._hostile_conn = v
        v.sock, v.r = x.s, x.r
        v.eof = v.eof or getattr(x.r, "eof", False)
        return v

    @property
    def s(self):
        return self.sock

    def send(self, data, segments=None, pause=0.01):
        """Sends data; segments=N splits it into N parts, segments=[a, b, ..]
        into parts of those sizes (the rest goes last), with a pause between
        them so that each arrives in a segment of its own."""
        if isinstance(data, str):
            data = data.encode()
        parts = [data]
        if isinstance(segments, int) and segments > 1:
            n = max(1, -(-len(data) // segments))
            parts = [data[i:i + n] for i in range(0, len(data), n)]
        elif isinstance(segments, (list, tuple)):
            parts, i = [], 0
            for n in segments:
                parts.append(data[i:i + n])
                i += n
            if i < len(data):
                parts.append(data[i:])
        for k, p in enumerate(parts):
            if k:
                time.sleep(pause)
            if p:
                self.sock.sendall(p)

    def header(self, timeout=5):
        """The hub's stream header (the opening tag, without its '>')."""
        try:
            return self.r.stream_header(timeout)
        finally:
            _mark_eof(self, self.r)

    def features(self, timeout=5):
        el = self.element(timeout)
        if not el.startswith("<stream:features"):
            raise RuntimeError("expected stream features, got " + el[:200])
        return el

    def element(self, timeout=5):
        try:
            return self.r.element(timeout)
        finally:
            _mark_eof(self, self.r)

    def starttls(self, ctx, server_hostname=LEGIT_DOMAIN, header=None):
        """STARTTLS (RFC 6120 §5), then, when header is given, the stream
        restart: the header is sent again and the hub's header and features
        read (returned)."""
        self.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        el = self.element()
        if not el.startswith("<proceed"):
            raise RuntimeError("no <proceed/>: " + el[:200])
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.r = Reader(self.sock)
        if header is None:
            return None
        self.send(header)
        self.hdr = self.header()
        self.sid = stream_id(self.hdr) or ""
        return self.features()

    def stream_error(self, timeout=5):
        got = stream_error_of(self, timeout)
        _mark_eof(self, self.r)
        return got

    def closed_within(self, timeout=3):
        """True when the hub closes the TCP connection within timeout (what it
        sends before that is read and dropped)."""
        if self.x is not None:
            self.sock, self.r = self.x.s, self.x.r
        if self.eof or getattr(self.r, "eof", False):
            self.eof = True
            return True
        if self.closed_locally:
            return False
        self.until_close(timeout)
        return self.eof

    def until_close(self, timeout=5):
        """Everything the hub sends until it closes the connection (or timeout)."""
        tail, deadline = self.r.buf, time.time() + timeout
        self.r.buf = b""
        try:
            while not self.eof:
                left = deadline - time.time()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                d = self.sock.recv(65536)
                if not d:
                    self.eof = True
                    break
                tail += d
        except (ConnectionResetError, BrokenPipeError):
            self.eof = True
        except (socket.timeout, ssl.SSLError, OSError):
            pass
        return tail

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self, rst=False):
        if self.closed_locally:
            return
        self.closed_locally = True
        try:
            if rst:
                import struct
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass


_LEGIT_ID = re.compile(r"""\sid=(['"])(legit-\d+)-r\1""")


class Legit:
    """The traffic that must survive every case: a background thread sends a
    message every `interval` s over the authenticated inbound s2s stream
    (remote.fake -> bot@echo.fake); the component's reader thread answers each
    one (-> u@remote.fake), which the hub sends out on its outbound link to
    the fake remote server. begin()/end() count the ids of one case."""

    def __init__(self, suite, interval=0.05):
        self.suite, self.interval = suite, interval
        self.n, self.sent, self.got_in, self.got_out = 0, {}, set(), set()
        self.errors, self.lock, self.send_lock = [], threading.Lock(), threading.Lock()
        self.c = self.o = None
        self.inbox = queue.Queue()
        self.running = False
        self.threads = []
        self.rs_seen = 0
        self.authed = False

    # set-up and tear-down (also after the hub died)
    def setup(self):
        s = self.suite
        self.c = Component(s.ports.comp, LEGIT_DOMAIN, SECRET)
        self.o = s.rs.connect_out(s.ports.s2s, LEGIT_DOMAIN)
        self.authed = self.o.auth(LEGIT_DOMAIN) == "valid"
        self.o.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.o.s.settimeout(5)
        self.errors = []
        self.running = True
        self.inbox = queue.Queue()
        self.threads = [threading.Thread(target=self._reader, args=(self.c,), daemon=True),
                        threading.Thread(target=self._sender, daemon=True)]
        for t in self.threads:
            t.start()
        return self.authed

    def teardown(self):
        self.running = False
        for x in (self.c, self.o):
            if x is not None:
                try:
                    x.s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    x.s.close()
                except OSError:
                    pass
        for t in self.threads:
            t.join(3)
        self.threads = []

    def _error(self, what):
        with self.lock:
            self.errors.append(what)

    def _reader(self, c):
        while self.running:
            try:
                el = c.r.element(0.5)
            except socket.timeout:
                continue
            except (OSError, EOFError) as e:
                if self.running:
                    self._error("component stream: %s" % (e,))
                return
            mid = attr(el, "id") or ""
            if re.match(r"legit-\d+$", mid):
                with self.lock:
                    self.got_in.add(mid)
                try:
                    with self.send_lock:
                        c.s.sendall(("<message from='bot@echo.fake' to='u@remote.fake/r' id='%s-r'><body>y</body>"
                                     "</message>" % mid).encode())
                except OSError as e:
                    self._error("component reply: %s" % (e,))
                    return
            else:
                self.inbox.put(el)

    def _send_one(self):
        with self.lock:
            self.n += 1
            mid = "legit-%d" % self.n
            self.sent[mid] = time.time()
        try:
            self.send_raw(("<message from='u@remote.fake/r' to='bot@echo.fake' id='%s'><body>x</body></message>"
                           % mid).encode())
        except OSError as e:
            self._error("inbound s2s send %s: %s" % (mid, e))
            return None
        return mid

    def _sender(self):
        while self.running:
            if self._send_one() is None:
                return
            time.sleep(self.interval)

    # what test files use
    def send_raw(self, data, timeout=None):
        """Bytes on the legitimate inbound s2s stream, serialised with the
        background sender. timeout: the socket timeout for this write (e.g.
        to detect that the hub stopped reading)."""
        with self.send_lock:
            if timeout is not None:
                self.o.s.settimeout(timeout)
            try:
                self.o.s.sendall(data)
            finally:
                if timeout is not None:
                    self.o.s.settimeout(5)

    def auth(self, domain, timeout=10):
        """Dialback for another (remote.fake, domain) pair on the legitimate link."""
        with self.send_lock:
            return self.o.auth(domain, timeout)

    def recv_component(self, timeout=5):
        """The next element the legitimate component received that is not
        legitimate background traffic; raises socket.timeout."""
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            raise socket.timeout("nothing for the component within %s s" % timeout)

    def _scan_out(self):
        msgs = self.suite.rs.messages()
        new, self.rs_seen = msgs[self.rs_seen:], len(msgs)
        found = set()
        for m in new:
            mm = _LEGIT_ID.search(m.split(">", 1)[0])
            if mm:
                found.add(mm.group(2))
        with self.lock:
            self.got_out |= found

    def begin(self):
        with self.lock:
            self.mark = self.n

    def end(self, timeout=10):
        """None when every legitimate stanza sent since begin() (and one more,
        sent now) arrived both ways, else what was lost."""
        last = self._send_one() if self.running else None
        with self.lock:
            ids = ["legit-%d" % i for i in range(self.mark + 1, self.n + 1)]
        deadline = time.time() + timeout
        while True:
            self._scan_out()
            with self.lock:
                lost_in = [i for i in ids if i not in self.got_in]
                lost_out = [i for i in ids if i not in self.got_out]
                errors = list(self.errors)
            if not lost_in and not lost_out and not errors and last:
                return None
            if time.time() > deadline or errors:
                break
            time.sleep(0.02)
        with self.lock:
            self.errors = []
        parts = []
        if errors:
            parts.append("errors: " + "; ".join(errors[:3]))
        if lost_in:
            parts.append("%d of %d never reached the component (%s)" % (len(lost_in), len(ids), lost_in[:5]))
        if lost_out:
            parts.append("%d of %d replies never reached the remote server (%s)" % (len(lost_out), len(ids),
                                                                                     lost_out[:5]))
        if not last and not errors:
            parts.append("background traffic was not running")
        return "; ".join(parts) or "no legitimate stanza sent"


class CaseTimeout(Exception):
    pass


class Suite:
    """One hostile-input test file: a hub, the legitimate traffic, cases."""

    def __init__(self, name, conf_text=None, base=25900, limit=50, binary=None, interval=0.05):
        """name: for the temp dir; conf_text: router.conf with {port}
        placeholders (default conf()); base: the port block; limit: seconds
        after which no case starts (the run is killed at limit + 30)."""
        self.name, self.ports = name, Ports(base)
        self.conf_text = conf_text if conf_text is not None else conf()
        self.limit, self.binary = limit, binary
        self.T = Results()
        self.hub = self.rs = None
        self.legit = Legit(self, interval)
        self._case = None
        self._pki = None
        self.tmp = tempfile.mkdtemp(prefix="fedhub-%s-" % name)
        self.t0 = time.time()

    # output
    def check(self, name, cond, detail=""):
        """A TAP line of its own, outside of any case."""
        return self.T.check(name, cond, detail)

    @property
    def results(self):
        return self.T.results

    def time_left(self):
        return self.limit - (time.time() - self.t0)

    # certificates
    def pki(self):
        """A throw-away CA in {tmp}/pki and leaves hub, remote, wrong (see the
        module docstring); returns the fhit.PKI."""
        if self._pki is None:
            import fhit
            p = fhit.PKI(self.tmp)
            p.leaves([("hub", ["echo.fake", "hub.fake"]), ("remote", ["remote.fake"]), ("wrong", ["other.fake"])])
            self._pki = p
        return self._pki

    def tls_client(self, cert=None):
        """An ssl context trusting the test CA; cert: a leaf name (hub,
        remote, wrong, or one made with pki().leaf()) to present."""
        return self.pki().client_context(cert)

    def tls_server(self, cert):
        return self.pki().server_context(cert)

    # the hub
    def metrics(self):
        """/metrics as {name or 'name{a="b"}': value}."""
        return hubproc.metrics(self.ports.http)

    def recover(self):
        """After a death (or a broken legitimate stream): a fresh hub when
        needed, and the legitimate streams set up again."""
        self.legit.teardown()
        if not self.hub.alive():
            rc = self.hub.stop()
            self.hub.deaths.append(rc)
            print("# restarting the hub after it died (%s)" % rc, flush=True)
            if not self.hub.start():
                raise RuntimeError("the hub does not start again")
        if not self.legit.setup():
            raise RuntimeError("legitimate link not authenticated again")

    # connections, registered with the running case
    def _register(self, c):
        if self._case is not None:
            self._case.append(c)
        return c

    def connect(self, port=None, tls=None, server_hostname=LEGIT_DOMAIN, attacked=True, timeout=5, rcvbuf=None):
        """A raw connection (Conn) to port (default the s2s listener); tls: a
        client context for direct TLS; rcvbuf: a small SO_RCVBUF (a peer
        that reads slowly or never)."""
        return self._register(Conn(port or self.ports.s2s, tls, server_hostname, timeout, attacked, rcvbuf=rcvbuf))

    def s2s(self, frm=REMOTE_DOMAIN, to=LEGIT_DOMAIN, tls=None, port=None, attacked=True, header=None, rcvbuf=None):
        """An unauthenticated s2s stream past the hub's header and features
        (after STARTTLS and the restart when tls is given). The hub's header
        is in .hdr, its stream id in .sid, the features in .feats."""
        c = self.connect(port or self.ports.s2s, attacked=attacked, rcvbuf=rcvbuf)
        hdr = header or s2s_header(frm, to)
        c.send(hdr)
        c.hdr = c.header()
        c.sid = stream_id(c.hdr) or ""
        c.feats = c.features()
        if tls is not None:
            c.feats = c.starttls(tls, to or LEGIT_DOMAIN, hdr)
        return c

    def comp(self, to=LEGIT_DOMAIN, port=None, attacked=True):
        """A component stream past the hub's header (c.sid), before the handshake."""
        c = self.connect(port or self.ports.comp, attacked=attacked)
        c.send(comp_header(to))
        c.sid = stream_id(c.header()) or ""
        return c

    def comp_auth(self, to, secret=SECRET, attacked=True):
        """A component handshake: returns the Conn when the hub accepted it,
        else the stream error condition (e.g. 'not-authorized')."""
        c = self.comp(to, attacked=attacked)
        c.send(handshake(c.sid, secret))
        try:
            el = c.element()
        except (EOFError, OSError):
            return stream_error_of(c, 1) if not c.eof else "closed"
        if el.startswith("<handshake"):
            return c
        if el.startswith("<stream:error"):
            return error_condition(el) or el
        return "unexpected " + el[:200]

    def remote_s2s(self, to=LEGIT_DOMAIN, frm=None, tls=None):
        """A fakepeer S2SOut from the fake remote server (not authenticated;
        .auth(domain) does dialback). Registered as a Conn-like attacked link."""
        o = self.rs.connect_out(self.ports.s2s, to, from_domain=frm, tls=tls)
        self._register(Conn.of(o))
        return o

    def component(self, domain, secret=SECRET, attacked=True):
        """An authenticated fakepeer Component (raises RuntimeError when the
        handshake is refused), registered with the case."""
        c = Component(self.ports.comp, domain, secret)
        self._register(Conn.of(c)).attacked = attacked
        return c

    # cases
    def expect(self, got, want, what=None):
        """Inside a case: got must match want (a string: equal; a set, tuple
        or list: one of; a callable: true for got)."""
        if callable(want):
            ok, shown = bool(want(got)), getattr(want, "__name__", "predicate")
        elif isinstance(want, (set, frozenset, tuple, list)):
            ok, shown = got in want, "/".join(sorted(map(str, want)))
        else:
            ok, shown = got == want, str(want)
        if self._expects is None:
            raise RuntimeError("expect() outside of a case")
        self._expects.append((ok, None if ok else "%s: want %s, got %r" % (what or "result", shown, got)))
        return ok

    def _alarm(self, *_):
        raise CaseTimeout()

    def case(self, name, fn, closed=True, timeout=10):
        """Runs fn as one case and prints its TAP line; returns True when it passed."""
        if self.time_left() <= 0:
            return self.check(name, False, "no time left (the run is bounded to %d s)" % self.limit)
        self._case, self._expects = [], []
        problems, t0 = [], time.time()
        self.legit.begin()
        old = signal.signal(signal.SIGALRM, self._alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            r = fn(self) if len(inspect.signature(fn).parameters) else fn()
            signal.setitimer(signal.ITIMER_REAL, 0)
            if isinstance(r, tuple) and len(r) == 2:
                self.expect(*r)
            elif r is not None:
                problems.append("the case returned %r, not (got, want)" % (r,))
        except CaseTimeout:
            problems.append("timed out after %s s" % timeout)
        except Exception as e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            tb = traceback.extract_tb(e.__traceback__)[-1]
            problems.append("raised %r at line %d" % (e, tb.lineno))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        conns, self._case = self._case, None
        expects, self._expects = self._expects, None
        problems += [d for ok, d in expects if not ok]
        if closed is not None:
            attacked = [c for c in conns if c.attacked]
            if not attacked and closed:
                problems.append("no attacked connection to check")
            for c in attacked:
                shut = c.closed_within(3 if closed else 0.3)
                if closed and not shut:
                    problems.append("the hub did not close the attacked connection"
                                    + (" (the case closed it itself)" if c.closed_locally else ""))
                elif not closed and shut:
                    problems.append("the hub closed a connection that should stay open")
        for c in conns:
            c.close()
        alive = self.hub.alive()
        if not alive:
            problems.append("hub died (exit %s)" % self.hub.poll())
            lost = None
        else:
            lost = self.legit.end()
            if lost:
                problems.append("legitimate traffic: " + lost)
        if not alive or lost:
            try:
                self.recover()
            except Exception as e:
                problems.append("recovery failed: %r" % e)
        ok = self.check(name, not problems, "; ".join(problems))
        if time.time() - t0 > 3:
            print("# that case took %.1f s" % (time.time() - t0), flush=True)
        return ok

    # the whole run
    def _watchdog(self):
        print("not ok %s: the run exceeded %d s and was killed" % (self.name, self.limit + 30), flush=True)
        if self.hub:
            self.hub.kill()
        os._exit(1)

    def run(self, body):
        """Starts everything, runs body(suite), stops everything, exits."""
        placeholders = self.ports.names()
        placeholders["tmp"] = self.tmp
        if "{pki}" in self.conf_text:
            placeholders["pki"] = self.pki().dir
        text = fill(self.conf_text, placeholders)
        dog = threading.Timer(self.limit + 30, self._watchdog)
        dog.daemon = True
        dog.start()
        self.hub = Hub(text, self.tmp, self.ports.comp, self.binary)
        try:
            if self.check("hub starts", self.hub.start(), "see its log"):
                self.rs = RemoteServer(REMOTE_DOMAIN, self.ports.remote)
                ok = self.check("legitimate s2s stream authenticated by dialback", self.legit.setup())
                self.legit.begin()
                err = self.legit.end()
                if self.check("legitimate traffic flows before any attack", ok and err is None, err):
                    body(self)
        except Exception as e:  # a broken test is a failure, not a crash
            self.check("%s ran to the end" % self.name, False, "%r\n%s" % (e, traceback.format_exc()[-1500:]))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.legit.teardown()
            if self.rs:
                self.rs.close()
            self.hub.finish(self.T)
            dog.cancel()
        self.T.exit()
