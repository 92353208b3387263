#!/usr/bin/env python3
"""fedhub under attack: malformed, oversized, abusive and unauthenticated input
on the s2s and component listeners, while one legitimate component and one
authenticated s2s stream keep exchanging messages through the hub.

After every attack the test asserts that (a) the hub process is still alive,
(b) the legitimate traffic still flows both ways, and (c) the attacked
connection got the RFC 6120 stream error (or XEP-0220 dialback answer) that
applies. Run it with FEDHUB=build/asan/fedhub or build/tsan/fedhub to have the
sanitizers watch the same attacks; a sanitizer report in the hub's log fails
the run. DNS goes to a closed port on loopback (dns_server), so lookups fail
fast and nothing leaves the machine."""
import hashlib, os, random, re, signal, socket, struct, subprocess, sys, tempfile, time, urllib.request
import xml.etree.ElementTree as ET
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakepeer import Component, RemoteServer, Reader, attr, NS_STREAM

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FEDHUB = os.path.abspath(os.environ.get("FEDHUB", os.path.join(ROOT, "fedhub")))
S2S, COMP, HTTP, REMOTE, DNS = 25269, 25347, 25280, 25270, 25053
MAX_STANZA = 64 * 1024
CONF = """
[hub]
workers 2
domain hub.fake
listen s2s 127.0.0.1:%d
listen component 127.0.0.1:%d
http 127.0.0.1:%d
log_level info
connect_timeout 3
retry_min 1
dns_server 127.0.0.1:%d
max_stanza_size %d
max_stanza_size_preauth 16384
max_depth 32
max_attrs 64
[component echo.fake]
secret s3cret
[component slow.fake]
secret s3cret
[component bücher.fake]
secret s3cret
[route remote.fake]
connect 127.0.0.1:%d
""" % (S2S, COMP, HTTP, DNS, MAX_STANZA, REMOTE)
# Time bounds of the whole run (under 60 s): no attack starts after
# DEADLINE, an attack still running at ALARM is interrupted, and stopping the
# hub takes at most 10 s more.
DEADLINE = time.time() + 40
ALARM = 48
# liburcu is not built with ThreadSanitizer, so TSan cannot see the ordering
# its grace periods (call_rcu -> free) and its publication (cds_lfht_add
# after the entry is filled) provide, and reports the routing table's readers
# as racing with them. Only those two writer paths are silenced.
TSAN_SUPP = """race:entry_free_rcu
race:entry_new
"""
SANITIZER = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|WARNING: ThreadSanitizer")

results = []
hub = None


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok " if cond else "not ok ") + name + ("" if cond else "  # " + str(detail)[:300]), flush=True)


def metrics():
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % HTTP, timeout=3).read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(fedhub_\w+) ([0-9.e+]+)$", body, re.M)}


def stream_error_of(r, timeout=5):
    """The condition of the first stream error on reader r; 'closed' when the
    stream ends without one."""
    try:
        while True:
            el = r.element(timeout)
            if el.startswith("<stream:error"):
                m = re.search(r"<([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'", el)
                return m.group(1) if m else el
    except EOFError:
        return "closed"
    except OSError as e:
        return "oserror " + str(e)


def bytes_until_close(s, timeout=5):
    """Everything the hub sends on socket s until it closes it (or timeout)."""
    tail = b""
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            tail += d
    except OSError:
        pass
    return tail


def s2s_header(frm="remote.fake", to="echo.fake"):
    return ("<stream:stream xmlns='jabber:server' xmlns:stream='%s' xmlns:db='jabber:server:dialback'"
            " from='%s' to='%s' version='1.0'>" % (NS_STREAM, frm, to)).encode()


def comp_header(to="echo.fake"):
    return ("<stream:stream xmlns='jabber:component:accept' xmlns:stream='%s' to='%s'>"
            % (NS_STREAM, to)).encode()


def raw(port, first=b"", read_header=False):
    """A plain connection to a listener, with `first` sent; returns (sock, Reader)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    r = Reader(s)
    if first:
        s.sendall(first)
    if read_header:
        r.stream_header()
    return s, r


def s2s_opened(first=b""):
    """An unauthenticated s2s stream, past the hub's header and features."""
    s, r = raw(S2S, s2s_header(), read_header=True)
    r.element()  # <stream:features/>
    if first:
        s.sendall(first)
    return s, r


def comp_opened(to="echo.fake"):
    s, r = raw(COMP, comp_header(to), read_header=True)
    return s, r


def hub_error_after(port, payload, opened=True):
    """Open a stream on `port` (s2s or component), send payload, return the
    stream error condition the hub answered with."""
    try:
        if port == S2S:
            s, r = s2s_opened() if opened else raw(S2S)
        else:
            s, r = comp_opened() if opened else raw(COMP)
        s.sendall(payload)
        if not opened:
            # RFC 6120 §4.9.1.2: the hub opens a stream of its own before the error
            r.stream_header()
        err = stream_error_of(r)
        s.close()
        return err
    except (OSError, EOFError) as e:
        return "failed " + str(e)


class Legit:
    """The traffic that must survive every attack: an authenticated inbound
    s2s stream from remote.fake to the component echo.fake, and the
    component's replies going out on the hub's outbound link to remote.fake."""

    def __init__(self, rs):
        self.rs = rs
        self.c = Component(COMP, "echo.fake", "s3cret")
        self.o = rs.connect_out(S2S, "echo.fake")
        self.authed = self.o.auth("echo.fake") == "valid"
        self.n = 0

    def roundtrip(self):
        """One message in over s2s to the component, one reply out to the
        remote server. Returns None when both arrived, else what went wrong."""
        self.n += 1
        mid = "legit-%d" % self.n
        try:
            self.o.send("<message from='u@remote.fake/r' to='bot@echo.fake' id='%s'><body>x</body></message>" % mid)
            deadline = time.time() + 5
            while True:
                el = self.c.recv(max(0.1, deadline - time.time()))
                if attr(el, "id") == mid:
                    break
            self.c.send("<message from='bot@echo.fake' to='u@remote.fake/r' id='%s-r'><body>y</body></message>" % mid)
        except (OSError, EOFError) as e:
            return "inbound: " + str(e)
        deadline = time.time() + 8
        while time.time() < deadline:
            if any("id='%s-r'" % mid in m for m in self.rs.messages()):
                return None
            time.sleep(0.02)
        return "reply %s-r never reached the remote server" % mid

    def close(self):
        for x in (self.c, self.o):
            try:
                x.s.close()
            except OSError:
                pass


def after(name, legit, got=None, want=None):
    """The three checks after an attack; a dead hub is restarted (and the
    legitimate streams set up again) so that later attacks still run."""
    if want is not None:
        ok = got in want if isinstance(want, (set, tuple, list)) else got == want
        check(name + ": stream error " + (want if isinstance(want, str) else "/".join(sorted(want))), ok, got)
    alive = hub.poll() is None
    check(name + ": hub alive", alive, hub.returncode)
    err = legit.roundtrip() if alive else "hub is dead"
    check(name + ": legitimate traffic still flows", err is None, err)
    if not alive or err is not None:
        recover(legit)


def recover(legit):
    if hub.poll() is not None:
        hub.stop()
        print("# restarting the hub after it died", flush=True)
        hub.start()
    legit.close()
    n = legit.n
    legit.__init__(legit.rs)
    legit.n = n


def sanitizer_scale():
    """Sanitizer builds carry shadow memory (ThreadSanitizer several times the
    heap): memory bounds are scaled for them."""
    try:
        data = open(FEDHUB, "rb").read()
    except OSError:
        return 1
    return 4 if b"__tsan_init" in data else 2 if b"__asan_init" in data else 1


def rss_kb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Hub:
    """The fedhub under test. When an attack kills it, the death is recorded
    (the attack's checks fail), its log is kept, and a fresh hub is started so
    the remaining attacks still run."""

    def __init__(self, tmp):
        self.tmp, self.gen, self.proc, self.logs = tmp, 0, None, []
        self.conf = os.path.join(tmp, "hub.conf")
        open(self.conf, "w").write(CONF)

    def start(self):
        self.gen += 1
        path = os.path.join(self.tmp, "hub.%d.log" % self.gen)
        self.logs.append(path)
        self.log = open(path, "w")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1:quarantine_size_mb=16")
        supp = os.path.join(self.tmp, "tsan.supp")
        open(supp, "w").write(TSAN_SUPP)
        env.setdefault("TSAN_OPTIONS", "halt_on_error=0:suppressions=" + supp)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen([FEDHUB, "-c", self.conf], stderr=self.log, stdout=self.log, env=env)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", COMP), timeout=1).close()
                return True
            except OSError:
                if self.proc.poll() is not None:
                    return False
                time.sleep(0.05)
        return False

    def poll(self):
        return self.proc.poll() if self.proc else -1

    @property
    def pid(self):
        return self.proc.pid

    @property
    def returncode(self):
        return self.proc.returncode

    def stop(self):
        """SIGTERM; returns the exit code (or 'timeout', or 'dead' when it had died before)."""
        if self.proc is None:
            return "never started"
        if self.proc.poll() is not None:
            self.log.close()
            return "dead (%s)" % self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "timeout"
        self.log.close()
        return rc


class RunTimeout(Exception):
    pass


def on_alarm(signum, frame):
    raise RunTimeout("the run took more than %d s" % ALARM)


def main():
    global hub
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(ALARM)
    tmp = tempfile.mkdtemp(prefix="fedhub-robust-")
    hub = Hub(tmp)
    rs = None
    try:
        check("hub starts", hub.start())
        rs = RemoteServer("remote.fake", REMOTE)
        legit = Legit(rs)
        check("legitimate s2s stream authenticated by dialback", legit.authed)
        err = legit.roundtrip()
        check("legitimate traffic flows before any attack", err is None, err)
        if err is None:
            run(legit, rs)
    except Exception as e:  # an attack that broke the test itself is a failure, not a crash
        check("attacks ran to the end", False, repr(e))
    finally:
        signal.alarm(0)
        if rs:
            rs.close()
        rc = hub.stop()
        check("hub exits 0 on SIGTERM", rc == 0, rc)
        reports = []
        for path in hub.logs:
            text = open(path, errors="replace").read()
            m = SANITIZER.search(text)
            if m:
                reports.append("%s: %s" % (os.path.basename(path), text[m.start():m.start() + 600]))
        check("no sanitizer report in the hub's logs", not reports, "\n".join(reports))
        if not all(results):
            for path in hub.logs:
                text = open(path, errors="replace").read()
                print("---- %s (last 4000 bytes)" % os.path.basename(path))
                print(text[-4000:])
        if os.environ.get("FEDHUB_KEEP_LOGS"):
            print("logs kept in", tmp)
        else:
            subprocess.call(["rm", "-rf", tmp])
    print("%d passed, %d failed" % (results.count(True), results.count(False)))
    sys.exit(0 if all(results) else 1)


def run(legit, rs):
    rnd = random.Random(6120)
    for attack in (attack_garbage, attack_restricted_xml, attack_stream_headers, attack_limits,
                   attack_abrupt_closes, attack_dialback, attack_component_handshake, attack_addresses,
                   attack_stream_close, attack_slow_reader):
        if time.time() > DEADLINE:
            check("time left for %s" % attack.__name__, False, "run out of time")
            continue
        try:
            attack(legit, rs, rnd)
        except RunTimeout as e:
            check("%s ran to the end" % attack.__name__, False, str(e))
            return
        except Exception as e:
            check("%s ran to the end" % attack.__name__, False, repr(e))
            try:
                recover(legit)
            except Exception as e2:
                check("legitimate streams set up again after %s" % attack.__name__, False, repr(e2))
                return


def attack_garbage(legit, rs, rnd):
    """Random bytes, text where elements belong, and bad UTF-8 (RFC 6120 §11.6)."""
    junk = b"x" + bytes(rnd.randrange(256) for _ in range(4096))
    got = hub_error_after(S2S, junk, opened=False)
    after("s2s: random bytes instead of a stream header", legit, got, "not-well-formed")
    got = hub_error_after(COMP, junk, opened=False)
    after("component: random bytes instead of a stream header", legit, got, "not-well-formed")

    junk = b"<" + bytes(rnd.randrange(256) for _ in range(4096))
    got = hub_error_after(S2S, junk)
    after("s2s: random bytes after a valid stream header", legit, got,
          {"not-well-formed", "invalid-xml", "bad-namespace-prefix", "restricted-xml"})
    got = hub_error_after(COMP, junk)
    after("component: random bytes after a valid stream header", legit, got,
          {"not-well-formed", "invalid-xml", "bad-namespace-prefix", "restricted-xml"})
    got = hub_error_after(S2S, b"hello world")
    after("s2s: text at the top level of the stream", legit, got, {"not-well-formed", "bad-format"})

    # UTF-8: overlong, surrogate, truncated, beyond U+10FFFF, forbidden character
    for what, bad in (("overlong '/'", b"\xc0\xaf"), ("surrogate U+D800", b"\xed\xa0\x80"),
                      ("truncated sequence", b"\xe2\x82"), ("beyond U+10FFFF", b"\xf4\x90\x80\x80"),
                      ("control character", b"\x01")):
        st = b"<message from='u@remote.fake' to='bot@echo.fake'><body>a" + bad + b"b</body></message>"
        got = hub_error_after(S2S, st)
        after("s2s: %s in character data" % what, legit, got, {"invalid-xml", "not-well-formed"})
    st = b"<message from='u@remote.fake' to='bot@ech\xc0\xaeo.fake'/>"
    got = hub_error_after(S2S, st)
    after("s2s: overlong sequence in an attribute", legit, got, {"invalid-xml", "not-well-formed"})
    got = hub_error_after(S2S, b"<?xml version='1.0' encoding='ISO-8859-1'?>", opened=False)
    after("s2s: XML declaration with a non-UTF-8 encoding", legit, got, "unsupported-encoding")


def attack_restricted_xml(legit, rs, rnd):
    """What RFC 6120 §11.1 forbids: DTDs, entities, processing instructions;
    and an undeclared prefix (XML namespaces)."""
    got = hub_error_after(S2S, b"<!DOCTYPE x [<!ENTITY a 'b'>]><message/>")
    after("s2s: DTD in the stream", legit, got, "restricted-xml")
    got = hub_error_after(S2S, b"<message from='u@remote.fake' to='bot@echo.fake'>&a;</message>")
    after("s2s: undeclared entity reference", legit, got, {"restricted-xml", "not-well-formed"})
    got = hub_error_after(COMP, b"<?pi x?>")
    after("component: processing instruction", legit, got, "restricted-xml")
    got = hub_error_after(S2S, b"<foo:message xmlns:bar='x'/>")
    after("s2s: undeclared namespace prefix", legit, got, "bad-namespace-prefix")


def attack_stream_headers(legit, rs, rnd):
    """Stream headers in the wrong namespace or to a domain not served here."""
    got = hub_error_after(S2S, ("<stream:stream xmlns='jabber:client' xmlns:stream='%s' to='echo.fake' "
                                "version='1.0'>" % NS_STREAM).encode(), opened=False)
    after("s2s: client namespace on the server port", legit, got, "invalid-namespace")
    got = hub_error_after(S2S, b"<stream:stream xmlns='jabber:server' xmlns:stream='urn:wrong' version='1.0'>",
                          opened=False)
    after("s2s: wrong stream namespace", legit, got, "invalid-namespace")
    got = hub_error_after(COMP, comp_header("nobody.fake"), opened=False)
    after("component: stream to a domain that is not a component", legit, got, "host-unknown")


def attack_limits(legit, rs, rnd):
    """Size limits before and after authentication, nesting, attributes, names."""
    big = b"<message from='u@remote.fake' to='bot@echo.fake'><body>" + b"A" * 17000 + b"</body></message>"
    got = hub_error_after(S2S, big)
    after("s2s: stanza over max_stanza_size_preauth before authentication", legit, got, "policy-violation")
    got = hub_error_after(COMP, b"<handshake>" + b"0" * 17000 + b"</handshake>")
    after("component: handshake over max_stanza_size_preauth", legit, got, "policy-violation")
    # under the pre-auth limit before authentication: not refused for its size
    got = hub_error_after(S2S, b"<message from='u@remote.fake' to='bot@echo.fake'><body>" + b"A" * 8000 +
                          b"</body></message>")
    after("s2s: stanza under the limit before authentication is judged by its address", legit, got,
          "invalid-from")

    o2 = rs.connect_out(S2S, "echo.fake")
    check("second authenticated s2s stream", o2.auth("echo.fake") == "valid")
    o2.send("<message from='u@remote.fake' to='bot@echo.fake' id='big-ok'><body>" + "B" * 40000 + "</body></message>")
    el = legit.c.recv(5)
    check("authenticated: a 40k stanza (over the pre-auth limit, under max_stanza_size) is routed",
          attr(el, "id") == "big-ok" and len(el) > 40000, el[:100])
    o2.send("<message from='u@remote.fake' to='bot@echo.fake'><body>" + "C" * (MAX_STANZA + 100) + "</body></message>")
    after("s2s: stanza over max_stanza_size after authentication", legit, stream_error_of(o2.r), "policy-violation")

    c2 = Component(COMP, "echo.fake", "s3cret")
    c2.send("<message from='bot@echo.fake' to='u@remote.fake'><body>" + "C" * (MAX_STANZA + 100) + "</body></message>")
    after("component: stanza over max_stanza_size after the handshake", legit, stream_error_of(c2.r),
          "policy-violation")

    deep = b"<message from='u@remote.fake' to='bot@echo.fake'>" + b"<a>" * 40 + b"</a>" * 40 + b"</message>"
    got = hub_error_after(S2S, deep)
    after("s2s: nesting deeper than max_depth", legit, got, "policy-violation")
    got = hub_error_after(COMP, b"<a>" * 5000)
    after("component: 5000 unclosed elements before the handshake", legit, got, "policy-violation")

    many = b"<message " + b" ".join(b"a%d='v'" % i for i in range(100)) + b"/>"
    got = hub_error_after(S2S, many)
    after("s2s: more attributes than max_attrs", legit, got, "policy-violation")
    got = hub_error_after(S2S, b"<message from='u@remote.fake' from='x@remote.fake' to='bot@echo.fake'/>")
    after("s2s: duplicate attribute", legit, got, "not-well-formed")
    got = hub_error_after(S2S, b"<" + b"n" * 5000 + b"/>")
    after("s2s: element name over max_name", legit, got, {"policy-violation", "not-well-formed"})


def attack_abrupt_closes(legit, rs, rnd):
    """Connections dropped mid-stanza, mid-header, or right after connecting."""
    for i in range(20):
        s, r = s2s_opened(b"<message from='u@remote.fake' to='bot@echo.fake'><body>half")
        if i % 2:  # RST instead of FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        s, r = raw(COMP, comp_header()[:i * 5])
        s.close()
    after("abrupt close mid-stanza and mid-header (40 connections)", legit)

    m0 = metrics()
    socks = []
    for i in range(500):
        port = (S2S, COMP)[i % 2]
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            continue
        if i % 3 == 0:
            s.sendall((s2s_header() if port == S2S else comp_header())[:20 + i % 50])
        if i % 5 == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        socks.append(s)
        if len(socks) >= 50:
            for x in socks:
                x.close()
            socks = []
    for x in socks:
        x.close()
    after("500 connections opened and dropped", legit)
    deadline = time.time() + 5
    while time.time() < deadline:
        m1 = metrics()
        if m1.get("fedhub_conn_accepted_total", 0) - m0.get("fedhub_conn_accepted_total", 0) >= 500 and \
           m1.get("fedhub_conn_closed_total", 0) - m0.get("fedhub_conn_closed_total", 0) >= 500:
            break
        time.sleep(0.1)
    check("500 connections: all counted accepted and closed",
          m1.get("fedhub_conn_accepted_total", 0) - m0.get("fedhub_conn_accepted_total", 0) >= 500 and
          m1.get("fedhub_conn_closed_total", 0) - m0.get("fedhub_conn_closed_total", 0) >= 500,
          {k: m1.get(k, 0) - m0.get(k, 0) for k in ("fedhub_conn_accepted_total", "fedhub_conn_closed_total")})


def attack_dialback(legit, rs, rnd):
    """XEP-0220 dialback from an unauthenticated peer: domains not hosted,
    domains that do not resolve, wrong keys, many domain pairs."""
    s, r = s2s_opened(b"<db:result from='remote.fake' to='notours.fake'>k</db:result>")
    el = r.element()
    check("db:result for a domain the hub does not host: item-not-found (XEP-0220 §2.4.1)",
          el.startswith("<db:result") and attr(el, "type") == "error" and "item-not-found" in el, el)
    s.close()
    after("db:result for a domain the hub does not host", legit)

    s, r = raw(S2S, s2s_header("nxd.fake"), read_header=True)
    r.element()
    s.sendall(b"<db:result from='nxd.fake' to='echo.fake'>k</db:result>")
    try:
        el = r.element(10)
    except (OSError, EOFError) as e:
        el = "nothing: " + str(e)
    check("db:result from a domain that does not resolve: dialback error remote-server-not-found",
          el.startswith("<db:result") and attr(el, "type") == "error" and "remote-server-not-found" in el, el)
    s.close()
    after("db:result from a domain that does not resolve", legit)

    # a key longer than the hub's stack buffer: the db:verify carrying it to
    # the authoritative server (the fake remote, which answers 'invalid')
    # must go out whole; cut short, no answer comes and the hub times out
    s, r = s2s_opened(b"<db:result from='remote.fake' to='echo.fake'>%s</db:result>" % (b"a" * 3000))
    try:
        el = r.element(10)
    except (OSError, EOFError) as e:
        el = "nothing: " + str(e)
    check("db:result with a 3000-byte key: verified whole, type='invalid'",
          el.startswith("<db:result") and attr(el, "type") == "invalid", el[:200])
    s.close()
    after("db:result with a 3000-byte key", legit)

    s, r = s2s_opened(b"<db:verify from='remote.fake' to='echo.fake' id='abc'>0123456789abcdef</db:verify>")
    el = r.element()
    check("db:verify with a wrong key: type='invalid'",
          el.startswith("<db:verify") and attr(el, "type") == "invalid" and attr(el, "id") == "abc", el)
    s.sendall(b"<db:verify from='remote.fake' to='echo.fake' id='x&apos; type=&apos;valid'>00</db:verify>")
    el = r.element()
    try:
        e = ET.fromstring(el.replace("<db:verify", "<db:verify xmlns:db='jabber:server:dialback'", 1))
        typ = e.get("type")
    except ET.ParseError as ex:
        typ = "not well-formed: %s" % ex
    check("db:verify answer escapes the id it echoes", typ == "invalid", el)
    s.close()
    after("db:verify with a wrong key", legit)

    # piggybacking: many domain pairs on one unauthenticated stream, none of
    # which resolves: each gets its dialback error
    s, r = s2s_opened()
    s.sendall(b"".join(b"<db:result from='d%d.fake' to='echo.fake'>k</db:result>" % i for i in range(300)))
    answers = set()
    try:
        while len(answers) < 300:
            el = r.element(10)
            if el.startswith("<db:result") and attr(el, "type") == "error" and "remote-server-not-found" in el:
                answers.add(attr(el, "to"))
            else:
                break
    except (OSError, EOFError):
        pass
    check("300 domain pairs on one stream: each gets a dialback error", len(answers) == 300, len(answers))
    s.close()
    after("300 dialback requests on one stream", legit)

    # ... but not without bound: each pair costs a verification and memory
    # (and 32768 of them wrapped a 16-bit count into a heap overflow)
    s, r = s2s_opened()
    s.sendall(b"".join(b"<db:result from='e%d.fake' to='echo.fake'>k</db:result>" % i for i in range(5000)))
    got = stream_error_of(r, 10)
    s.close()
    after("5000 domain pairs on one unauthenticated stream", legit, got, {"policy-violation", "resource-constraint"})


def attack_component_handshake(legit, rs, rnd):
    """XEP-0114 handshakes that must be refused with not-authorized."""
    try:
        Component(COMP, "echo.fake", "wrong")
        got = "accepted"
    except RuntimeError as e:
        m = re.search(r"<([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'", str(e))
        got = m.group(1) if m else str(e)
    except (EOFError, OSError) as e:
        got = "closed " + str(e)
    after("component: handshake with a bad secret", legit, got, "not-authorized")
    got = hub_error_after(COMP, b"<handshake/>")
    after("component: empty handshake", legit, got, "not-authorized")
    got = hub_error_after(COMP, b"<message from='bot@echo.fake' to='u@remote.fake'/>")
    after("component: stanza before the handshake", legit, got, "not-authorized")


def attack_addresses(legit, rs, rnd):
    """Addresses written differently that name the same domain (RFC 7622:
    escapes decoded, case folded, IDN mapped to A-labels, trailing dot)."""
    o = legit.o
    idn = Component(COMP, "xn--bcher-kva.fake", "s3cret")
    check("link authenticated for the IDN component's domain", o.auth("xn--bcher-kva.fake") == "valid")
    for what, to, comp in (("escaped '.'", "bot@echo&#46;fake", legit.c),
                           ("hex-escaped '.'", "bot@echo&#x2E;fake", legit.c),
                           ("upper case", "BOT@ECHO.FAKE", legit.c),
                           ("mixed case and an escape", "bot@Echo&#46;FAKE", legit.c),
                           ("trailing dot", "bot@echo.fake.", legit.c),
                           ("IDN U-label", "bot@bücher.fake", idn),
                           ("IDN upper case", "bot@BÜCHER.FAKE", idn),
                           ("IDN decomposed (NFD)", "bot@bu\u0308cher.fake", idn),
                           ("A-label upper case", "bot@XN--BCHER-KVA.fake", idn)):
        mid = "addr-%d" % rnd.randrange(1 << 30)
        o.send("<message from='u@remote.fake' to='%s' id='%s'><body>a</body></message>" % (to, mid))
        try:
            el = comp.recv(5)
        except (OSError, EOFError) as e:
            el = "nothing: " + str(e)
        check("address %s (to='%s') routes to %s" % (what, to, comp.domain), attr(el, "id") == mid, el)
    idn.close()
    after("escaped, upper-case and IDN addresses", legit)
    o3 = rs.connect_out(S2S, "echo.fake")
    o3.auth("echo.fake")
    o3.send("<message from='u@remote.fake' to='bot@n&#x00;.fake' id='z'/>")
    after("s2s: character reference to U+0000 in an address", legit, stream_error_of(o3.r),
          {"not-well-formed", "invalid-xml", "improper-addressing"})


def attack_stream_close(legit, rs, rnd):
    """A peer that closes its stream gets the hub's close (RFC 6120 §4.4)."""
    o4 = rs.connect_out(S2S, "echo.fake")
    o4.auth("echo.fake")
    o4.s.sendall(b"</stream:stream>")
    tail = bytes_until_close(o4.s)
    check("s2s peer closes its stream: the hub answers </stream:stream> and closes",
          tail.strip().endswith(b"</stream:stream>"), tail[-200:])
    after("s2s peer sends </stream:stream>", legit)
    c3 = Component(COMP, "echo.fake", "s3cret")
    c3.s.sendall(b"</stream:stream>")
    tail = bytes_until_close(c3.s)
    check("component closes its stream: the hub answers </stream:stream> and closes",
          tail.strip().endswith(b"</stream:stream>"), tail[-200:])
    after("component sends </stream:stream>", legit)


def attack_slow_reader(legit, rs, rnd):
    """A component that never reads. Stanzas to it fill its queue and are then
    bounced with resource-constraint; the hub's memory stays bounded and other
    traffic is unaffected -- including traffic that arrives on the same s2s
    link as the flood (a remote server's link is shared by all its users)."""
    s = socket.socket()
    try:
        slow_reader(legit, rs, s)
    finally:
        s.close()  # a stalled worker gets its buffers back
    after("slow reader component", legit)


def slow_reader(legit, rs, s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect(("127.0.0.1", COMP))
    r = Reader(s)
    s.sendall(comp_header("slow.fake"))
    sid = attr(r.stream_header() + ">", "id") or ""
    s.sendall(("<handshake>%s</handshake>" % hashlib.sha1((sid + "s3cret").encode()).hexdigest()).encode())
    check("slow reader component connected", r.element().startswith("<handshake"))
    # dialback pairs are per (remote, local) domain: the link needs slow.fake too
    check("legitimate link also authenticated for slow.fake", legit.o.auth("slow.fake") == "valid")

    def flood(conn, count, size, tag):
        """Send `count` stanzas to the slow component, one per segment, so
        that many of them sit in receive buffers of their own. Returns how
        many were sent before the hub stopped reading (if it did)."""
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(3)
        pad = "p" * size
        for i in range(count):
            try:
                conn.sendall(("<message from='u@remote.fake' to='s@slow.fake' id='%s%d'><body>%s</body></message>"
                              % (tag, i, pad)).encode())
            except socket.timeout:
                return i
        conn.settimeout(5)
        return count

    def bounces(tag):
        return sum(1 for m in rs.messages() if "resource-constraint" in m and ("id='%s" % tag) in m)

    # small stanzas: each one queued for the slow reader must not pin a
    # whole receive buffer of the worker that read it
    sent = flood(legit.o.s, 30000, 60, "t")
    err = legit.roundtrip()
    check("slow reader: traffic on the flooding link still flows (%d small stanzas sent)" % sent,
          err is None, err)
    check("slow reader: the hub kept reading the flooding link", sent == 30000, sent)
    if err is not None:
        return

    # big stanzas, three rounds of 39 MiB for a queue of send_queue_max
    # (4 MiB): the first fills the queue (and the kernel's buffers), the others
    # must be bounced whole; once the allocator has warmed up (two rounds) the
    # third must not make the hub grow
    rss0 = rss_kb(hub.pid)
    rounds = []
    for k in range(3):
        sent = flood(legit.o.s, 10000, 4000, "b%d" % k)
        deadline = time.time() + 10
        while time.time() < deadline and bounces("b%d" % k) < sent:
            time.sleep(0.1)
        rounds.append((sent, bounces("b%d" % k), rss_kb(hub.pid)))
    (sent1, nb1, rss1), (sent2, nb2, rss2), (sent3, nb3, rss3) = rounds
    k = sanitizer_scale()
    check("slow reader: the hub kept reading the flooding link (big stanzas: %d, %d, %d of 10000 sent)"
          % (sent1, sent2, sent3), sent1 == sent2 == sent3 == 10000, rounds)
    check("slow reader: stanzas to it are bounced with resource-constraint once its queue is full "
          "(%d, then %d, %d of 10000)" % (nb1, nb2, nb3), nb1 > 0 and nb2 == nb3 == 10000, rounds)
    check("slow reader: the hub's memory stays bounded (RSS +%d MiB in the first two rounds, %+d MiB in "
          "the third)" % ((rss2 - rss0) // 1024, (rss3 - rss2) // 1024),
          rss2 - rss0 < 64 * 1024 * k and rss3 - rss2 < 4 * 1024 * k, (rss0, rss1, rss2, rss3))
    nb = nb1 + nb2 + nb3
    m = metrics()
    check("slow reader: full queues counted in /metrics", m.get("fedhub_send_queue_full_total", 0) >= nb,
          m.get("fedhub_send_queue_full_total"))


if __name__ == "__main__":
    main()
