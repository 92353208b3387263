#!/usr/bin/env python3
"""fedhub under attack: malformed, oversized, abusive and unauthenticated input
on the s2s and component listeners, while one legitimate component and one
authenticated s2s stream keep exchanging messages through the hub (the
framework is lib/hostile.py).

Every attack is a case on connections of its own; after it the framework
asserts that the attacked connection got the RFC 6120 stream error (or
XEP-0220 dialback answer) that applies and, where the hub must close it, was
closed; that the hub process is still alive; and that every legitimate stanza
sent meanwhile arrived both ways. Run it with FEDHUB=build/asan/fedhub or
build/tsan/fedhub to have the sanitizers watch the same attacks; a sanitizer
report in the hub's log fails the run. DNS goes to a closed port on loopback
(dns_server), so lookups fail fast and nothing leaves the machine."""
import os
import random
import socket
import struct
import sys
import select
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import hostile as H  # noqa: E402
from hostile import NS_STREAM, Reader, attr, comp_header, handshake, s2s_header, stream_error_of  # noqa: E402

MAX_STANZA = 64 * 1024
CONF = H.conf(hub_extra="""max_stanza_size %d
max_stanza_size_preauth 16384
max_depth 32
max_attrs 64
stall_timeout 3s""" % MAX_STANZA, sections="""[component slow.fake]
secret s3cret
[component bücher.fake]
secret s3cret""")
# No case starts after 40 s; the run is killed at 70 s.
S = H.Suite("robust", CONF, base=25200, limit=40)
XML_ERRORS = {"not-well-formed", "invalid-xml", "bad-namespace-prefix", "restricted-xml"}


def hub_error(kind, payload, opened=True):
    """A case body: open a stream on the s2s or component listener (or only
    connect, opened=False), send payload, return the stream error."""
    def fn(s):
        if kind == "s2s":
            c = s.s2s() if opened else s.connect(s.ports.s2s)
        else:
            c = s.comp() if opened else s.connect(s.ports.comp)
        c.send(payload)
        if not opened:
            c.header()  # RFC 6120 §4.9.1.2: the hub opens a stream of its own before the error
        return c.stream_error()
    return fn


def attack(name, kind, payload, want, opened=True):
    S.case(name, lambda s: (hub_error(kind, payload, opened)(s), want))


def main(s):
    rnd = random.Random(6120)
    for group in (attack_garbage, attack_restricted_xml, attack_stream_headers, attack_limits,
                  attack_abrupt_closes, attack_dialback, attack_component_handshake, attack_addresses,
                  attack_stream_close, attack_slow_reader):
        group(s, rnd)


def attack_garbage(s, rnd):
    """Random bytes, text where elements belong, and bad UTF-8 (RFC 6120 §11.6)."""
    junk = b"x" + bytes(rnd.randrange(256) for _ in range(4096))
    attack("s2s: random bytes instead of a stream header", "s2s", junk, "not-well-formed", opened=False)
    attack("component: random bytes instead of a stream header", "comp", junk, "not-well-formed", opened=False)

    junk = b"<" + bytes(rnd.randrange(256) for _ in range(4096))
    attack("s2s: random bytes after a valid stream header", "s2s", junk, XML_ERRORS)
    attack("component: random bytes after a valid stream header", "comp", junk, XML_ERRORS)
    attack("s2s: text at the top level of the stream", "s2s", b"hello world", {"not-well-formed", "bad-format"})

    # UTF-8: overlong, surrogate, truncated, beyond U+10FFFF, forbidden character
    for what, bad in (("overlong '/'", b"\xc0\xaf"), ("surrogate U+D800", b"\xed\xa0\x80"),
                      ("truncated sequence", b"\xe2\x82"), ("beyond U+10FFFF", b"\xf4\x90\x80\x80"),
                      ("control character", b"\x01")):
        st = b"<message from='u@remote.fake' to='bot@echo.fake'><body>a" + bad + b"b</body></message>"
        attack("s2s: %s in character data" % what, "s2s", st, {"invalid-xml", "not-well-formed"})
    attack("s2s: overlong sequence in an attribute", "s2s", b"<message from='u@remote.fake' to='bot@ech\xc0\xaeo.fake'/>",
           {"invalid-xml", "not-well-formed"})
    attack("s2s: XML declaration with a non-UTF-8 encoding", "s2s", b"<?xml version='1.0' encoding='ISO-8859-1'?>",
           "unsupported-encoding", opened=False)


def attack_restricted_xml(s, rnd):
    """What RFC 6120 §11.1 forbids: DTDs, entities, processing instructions;
    and an undeclared prefix (XML namespaces)."""
    attack("s2s: DTD in the stream", "s2s", b"<!DOCTYPE x [<!ENTITY a 'b'>]><message/>", "restricted-xml")
    attack("s2s: undeclared entity reference", "s2s", b"<message from='u@remote.fake' to='bot@echo.fake'>&a;</message>",
           {"restricted-xml", "not-well-formed"})
    attack("component: processing instruction", "comp", b"<?pi x?>", "restricted-xml")
    attack("s2s: undeclared namespace prefix", "s2s", b"<foo:message xmlns:bar='x'/>", "bad-namespace-prefix")


def attack_stream_headers(s, rnd):
    """Stream headers in the wrong namespace or to a domain not served here."""
    attack("s2s: client namespace on the server port", "s2s",
           ("<stream:stream xmlns='jabber:client' xmlns:stream='%s' to='echo.fake' version='1.0'>" % NS_STREAM).encode(),
           "invalid-namespace", opened=False)
    attack("s2s: wrong stream namespace", "s2s",
           b"<stream:stream xmlns='jabber:server' xmlns:stream='urn:wrong' version='1.0'>", "invalid-namespace",
           opened=False)
    attack("component: stream to a domain that is not a component", "comp", comp_header("nobody.fake"),
           "host-unknown", opened=False)


def attack_limits(s, rnd):
    """Size limits before and after authentication, nesting, attributes, names."""
    big = b"<message from='u@remote.fake' to='bot@echo.fake'><body>" + b"A" * 17000 + b"</body></message>"
    attack("s2s: stanza over max_stanza_size_preauth before authentication", "s2s", big, "policy-violation")
    attack("component: handshake over max_stanza_size_preauth", "comp", b"<handshake>" + b"0" * 17000 + b"</handshake>",
           "policy-violation")
    # under the pre-auth limit before authentication: not refused for its
    # size (RFC 6120 §4.9.3.12 wants not-authorized for any stanza before
    # authentication; t_hostile asserts that exactly, this case the size)
    attack("s2s: stanza under the limit before authentication is not refused for its size", "s2s",
           b"<message from='u@remote.fake' to='bot@echo.fake'><body>" + b"A" * 8000 + b"</body></message>",
           {"not-authorized", "invalid-from"})

    def big_after_auth(s):
        o2 = s.remote_s2s()
        s.expect(o2.auth("echo.fake"), "valid", "second authenticated s2s stream")
        o2.send("<message from='u@remote.fake' to='bot@echo.fake' id='big-ok'><body>" + "B" * 40000 + "</body></message>")
        el = s.legit.recv_component(5)
        s.expect(attr(el, "id") == "big-ok" and len(el) > 40000, True,
                 "a 40k stanza (over the pre-auth limit, under max_stanza_size) is routed: %s" % el[:100])
        o2.send("<message from='u@remote.fake' to='bot@echo.fake'><body>" + "C" * (MAX_STANZA + 100) + "</body></message>")
        return stream_error_of(o2), "policy-violation"
    S.case("s2s: stanza over max_stanza_size after authentication (a 40k one is routed)", big_after_auth)

    def comp_big(s):
        # spare.fake, not echo.fake: a second echo.fake connection would join
        # the legitimate component's pool and take its share of the traffic
        c2 = s.component("spare.fake")
        c2.send("<message from='bot@spare.fake' to='u@remote.fake'><body>" + "C" * (MAX_STANZA + 100) + "</body></message>")
        return stream_error_of(c2), "policy-violation"
    S.case("component: stanza over max_stanza_size after the handshake", comp_big)

    deep = b"<message from='u@remote.fake' to='bot@echo.fake'>" + b"<a>" * 40 + b"</a>" * 40 + b"</message>"
    attack("s2s: nesting deeper than max_depth", "s2s", deep, "policy-violation")
    attack("component: 5000 unclosed elements before the handshake", "comp", b"<a>" * 5000, "policy-violation")
    many = b"<message " + b" ".join(b"a%d='v'" % i for i in range(100)) + b"/>"
    attack("s2s: more attributes than max_attrs", "s2s", many, "policy-violation")
    attack("s2s: duplicate attribute", "s2s", b"<message from='u@remote.fake' from='x@remote.fake' to='bot@echo.fake'/>",
           "not-well-formed")
    attack("s2s: element name over max_name", "s2s", b"<" + b"n" * 5000 + b"/>", {"policy-violation", "not-well-formed"})


def attack_abrupt_closes(s, rnd):
    """Connections dropped mid-stanza, mid-header, or right after connecting."""
    def mid_stanza(s):
        for i in range(20):
            c = s.s2s(attacked=False)
            c.send(b"<message from='u@remote.fake' to='bot@echo.fake'><body>half")
            c.close(rst=bool(i % 2))  # RST instead of FIN every other time
            c = s.connect(s.ports.comp, attacked=False)
            c.send(comp_header()[:i * 5])
            c.close()
    S.case("abrupt close mid-stanza and mid-header (40 connections)", mid_stanza, closed=None)

    def five_hundred(s):
        m0 = s.metrics()
        socks = []
        for i in range(500):
            port = (s.ports.s2s, s.ports.comp)[i % 2]
            x = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 3 == 0:
                x.sendall((s2s_header() if port == s.ports.s2s else comp_header())[:20 + i % 50])
            if i % 5 == 0:
                x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            socks.append(x)
            if len(socks) >= 50:
                for y in socks:
                    y.close()
                socks = []
        for y in socks:
            y.close()
        keys = ("fedhub_conn_accepted_total", "fedhub_conn_closed_total")
        deadline = time.time() + 5
        while True:
            m1 = s.metrics()
            d = {k: m1.get(k, 0) - m0.get(k, 0) for k in keys}
            if min(d.values()) >= 500 or time.time() > deadline:
                break
            time.sleep(0.1)
        s.expect(min(d.values()) >= 500, True, "all counted accepted and closed %s" % d)
    S.case("500 connections opened and dropped", five_hundred, closed=None, timeout=20)


# a key of the XEP-0185 form (hex): the hub refuses any other without asking
DB_KEY = b"ab" * 32


def attack_dialback(s, rnd):
    """XEP-0220 dialback from an unauthenticated peer: domains not hosted,
    domains that do not resolve, wrong keys, many domain pairs."""
    def not_hosted(s):
        c = s.s2s()
        c.send(b"<db:result from='remote.fake' to='notours.fake'>k</db:result>")
        el = c.element()
        s.expect(el.startswith("<db:result") and attr(el, "type") == "error" and "item-not-found" in el, True,
                 "item-not-found (XEP-0220 §2.4.1): " + el)
    S.case("db:result for a domain the hub does not host", not_hosted, closed=None)

    def not_resolving(s):
        c = s.s2s(frm="nxd.fake")
        c.send(b"<db:result from='nxd.fake' to='echo.fake'>%s</db:result>" % DB_KEY)
        el = c.element(10)
        s.expect(el.startswith("<db:result") and attr(el, "type") == "error" and "remote-server-not-found" in el,
                 True, "dialback error remote-server-not-found: " + el)
    S.case("db:result from a domain that does not resolve", not_resolving, closed=None, timeout=15)

    def long_key(s):
        # a key longer than the hub's stack buffer: the db:verify carrying it to
        # the authoritative server (the fake remote, which answers 'invalid')
        # must go out whole; cut short, no answer comes and the hub times out
        c = s.s2s()
        c.send(b"<db:result from='remote.fake' to='echo.fake'>%s</db:result>" % (b"a" * 3000))
        el = c.element(10)
        s.expect(el.startswith("<db:result") and attr(el, "type") == "invalid", True,
                 "verified whole, type='invalid': " + el[:200])
    S.case("db:result with a 3000-byte key", long_key, closed=None, timeout=15)

    def wrong_key(s):
        c = s.s2s()
        c.send(b"<db:verify from='remote.fake' to='echo.fake' id='abc'>0123456789abcdef</db:verify>")
        el = c.element()
        s.expect(el.startswith("<db:verify") and attr(el, "type") == "invalid" and attr(el, "id") == "abc", True,
                 "type='invalid': " + el)
        c.send(b"<db:verify from='remote.fake' to='echo.fake' id='x&apos; type=&apos;valid'>00</db:verify>")
        el = c.element()
        try:
            e = ET.fromstring(el.replace("<db:verify", "<db:verify xmlns:db='jabber:server:dialback'", 1))
            typ = e.get("type")
        except ET.ParseError as ex:
            typ = "not well-formed: %s" % ex
        s.expect(typ, "invalid", "the answer escapes the id it echoes (%s)" % el)
    S.case("db:verify with a wrong key", wrong_key, closed=None)

    # piggybacking: many domain pairs on one unauthenticated stream, none of
    # which resolves: each gets its dialback error
    def pairs300(s):
        c = s.s2s()
        c.send(b"".join(b"<db:result from='d%d.fake' to='echo.fake'>%s</db:result>" % (i, DB_KEY)
                        for i in range(300)))
        answers = set()
        while len(answers) < 300:
            el = c.element(10)
            # beyond max_verify_per_stream pending at once: resource-constraint
            if not (el.startswith("<db:result") and attr(el, "type") == "error" and
                    ("remote-server-not-found" in el or "resource-constraint" in el)):
                break
            answers.add(attr(el, "to"))
        s.expect(len(answers), 300, "domain pairs answered with a dialback error")
    S.case("300 dialback requests on one stream", pairs300, closed=None, timeout=20)

    # ... but not without bound: each pair costs a verification and memory
    # (and 32768 of them wrapped a 16-bit count into a heap overflow)
    def pairs5000(s):
        c = s.s2s()
        c.send(b"".join(b"<db:result from='e%d.fake' to='echo.fake'>%s</db:result>" % (i, DB_KEY)
                        for i in range(5000)))
        return c.stream_error(10), {"policy-violation", "resource-constraint"}
    S.case("5000 domain pairs on one unauthenticated stream", pairs5000, timeout=20)


def attack_component_handshake(s, rnd):
    """XEP-0114 handshakes that must be refused with not-authorized."""
    S.case("component: handshake with a bad secret", lambda s: (s.comp_auth("echo.fake", "wrong"), "not-authorized"))
    attack("component: empty handshake", "comp", b"<handshake/>", "not-authorized")
    attack("component: stanza before the handshake", "comp", b"<message from='bot@echo.fake' to='u@remote.fake'/>",
           "not-authorized")


def attack_addresses(s, rnd):
    """Addresses written differently that name the same domain (RFC 7622:
    escapes decoded, case folded, IDN mapped to A-labels, trailing dot)."""
    idn = H.Component(s.ports.comp, "xn--bcher-kva.fake", H.SECRET)
    try:
        s.check("link authenticated for the IDN component's domain", s.legit.auth("xn--bcher-kva.fake") == "valid")
        for what, to, idn_side in (("escaped '.'", "bot@echo&#46;fake", False),
                                   ("hex-escaped '.'", "bot@echo&#x2E;fake", False),
                                   ("upper case", "BOT@ECHO.FAKE", False),
                                   ("mixed case and an escape", "bot@Echo&#46;FAKE", False),
                                   ("trailing dot", "bot@echo.fake.", False),
                                   ("IDN U-label", "bot@bücher.fake", True),
                                   ("IDN upper case", "bot@BÜCHER.FAKE", True),
                                   ("IDN decomposed (NFD)", "bot@bu\u0308cher.fake", True),
                                   ("A-label upper case", "bot@XN--BCHER-KVA.fake", True)):
            def route(s, to=to, idn_side=idn_side):
                mid = "addr-%d" % rnd.randrange(1 << 30)
                s.legit.send_raw(("<message from='u@remote.fake' to='%s' id='%s'><body>a</body></message>"
                                  % (to, mid)).encode())
                el = idn.recv(5) if idn_side else s.legit.recv_component(5)
                return attr(el, "id"), mid
            S.case("address %s (to='%s') routes to %s" % (what, to, "xn--bcher-kva.fake" if idn_side else "echo.fake"),
                   route, closed=None)
    finally:
        idn.close()

    def nul(s):
        o3 = s.remote_s2s()
        o3.auth("echo.fake")
        o3.send("<message from='u@remote.fake' to='bot@n&#x00;.fake' id='z'/>")
        return stream_error_of(o3), {"not-well-formed", "invalid-xml", "improper-addressing"}
    S.case("s2s: character reference to U+0000 in an address", nul)


def attack_stream_close(s, rnd):
    """A peer that closes its stream gets the hub's close (RFC 6120 §4.4)."""
    def s2s_close(s):
        o4 = s.remote_s2s()
        o4.auth("echo.fake")
        o4.s.sendall(b"</stream:stream>")
        tail = H.until_close(o4)
        s.expect(tail.strip().endswith(b"</stream:stream>"), True, "the hub answers </stream:stream>: %r" % tail[-200:])
    S.case("s2s peer sends </stream:stream>: the hub answers and closes", s2s_close)

    def comp_close(s):
        c3 = s.component("spare.fake")
        c3.s.sendall(b"</stream:stream>")
        tail = H.until_close(c3)
        s.expect(tail.strip().endswith(b"</stream:stream>"), True, "the hub answers </stream:stream>: %r" % tail[-200:])
    S.case("component sends </stream:stream>: the hub answers and closes", comp_close)


def attack_slow_reader(s, rnd):
    """A component that never reads, flooded over an s2s link of its own.
    Flow control (README "Back-pressure and flow control"): once its queue
    and the link's allowance are full the hub stops reading the flooding link
    instead of bouncing; other links keep flowing and memory stays bounded;
    after stall_timeout what waits for it is bounced with resource-constraint
    and the flooding link is read again."""
    x = socket.socket()
    fl = None
    try:
        x.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        x.settimeout(5)
        x.connect(("127.0.0.1", s.ports.comp))
        r = Reader(x)
        x.sendall(comp_header("slow.fake"))
        sid = attr(r.stream_header() + ">", "id") or ""
        x.sendall(handshake(sid))
        if not s.check("slow reader component connected", r.element().startswith("<handshake")):
            return
        # the flood comes on a link of its own (not registered with a case:
        # it lives across the two cases)
        fl = s.rs.connect_out(s.ports.s2s, "slow.fake")
        if not s.check("slow reader: the flooding link is authenticated", fl.auth("slow.fake") == "valid"):
            return
        fl.s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        state = {"flood": Flood(fl.s, 10000, 4000, "b")}
        S.case("slow reader: the flooding link is paused, other links flow, memory bounded",
               lambda s: slow_paused(s, state), closed=None, timeout=15)
        S.case("slow reader: after stall_timeout bounced with resource-constraint, the link read again",
               lambda s: slow_stalled(s, state), closed=None, timeout=25)
    finally:
        x.close()  # a stalled worker gets its buffers back
        if fl is not None:
            fl.s.close()
    S.case("slow reader component gone: traffic flows", lambda s: None, closed=None)


class Flood:
    """count stanzas of `size` bytes to the slow component, written without
    ever cutting one short (a partial write stays pending for the next run)."""

    def __init__(self, sock, count, size, tag):
        pad = "p" * size
        self.s, self.off, self.count = sock, 0, count
        self.data = "".join("<message from='u@remote.fake' to='s@slow.fake' id='%s%d'><body>%s</body></message>"
                            % (tag, i, pad) for i in range(count)).encode()

    def run(self, quiet):
        """Write until all is sent or the hub takes nothing for `quiet` s;
        returns the stanzas fully written so far."""
        self.s.setblocking(False)
        last = time.time()
        while self.off < len(self.data) and time.time() - last < quiet:
            _, w, _ = select.select([], [self.s], [], 0.1)
            if not w:
                continue
            try:
                k = self.s.send(self.data[self.off:self.off + 65536])
            except BlockingIOError:
                continue
            if k > 0:
                self.off += k
                last = time.time()
        self.s.setblocking(True)
        return self.data.count(b"</message>", 0, self.off)


def bounces(s, tag):
    return sum(1 for m in s.rs.messages() if "resource-constraint" in m and ("id='%s" % tag) in m)


def slow_paused(s, state):
    # 40 MiB of 4 KiB stanzas for a queue of send_queue_max (4 MiB) plus the
    # link's source_allowance (256 KiB): the hub must stop reading long before
    # (what it takes also counts the kernel's buffers, autotuned to a few MiB)
    fl = state["flood"]
    state["m0"] = m0 = s.metrics()
    rss0 = H.rss_kb(s.hub.pid)
    state["t0"] = t0 = time.time()
    sent = state["sent1"] = fl.run(1.0)
    m1 = s.metrics()
    s.expect(sent < fl.count // 2, True, "the flooding link is paused (%d of %d stanzas taken)" % (sent, fl.count))
    s.expect(m1.get("fedhub_flow_paused_sources", 0) >= 1, True,
             "the paused link is in /metrics (%s)" % m1.get("fedhub_flow_paused_sources"))
    k = H.sanitizer_scale()
    rss1 = H.rss_kb(s.hub.pid)
    s.expect(rss1 - rss0 < 48 * 1024 * k, True, "memory bounded (RSS +%d MiB)" % ((rss1 - rss0) // 1024))
    if time.time() - t0 < 2.5:  # still inside stall_timeout (3 s)
        s.expect(bounces(s, "b"), 0, "nothing bounced before stall_timeout")
    s.expect(m1.get("fedhub_send_queue_full_total", 0), m0.get("fedhub_send_queue_full_total", 0),
             "no stanza refused for a full queue")


def slow_stalled(s, state):
    fl = state["flood"]
    deadline = time.time() + 8
    while time.time() < deadline and bounces(s, "b") == 0:
        time.sleep(0.1)
    s.expect(bounces(s, "b") > 0, True, "bounced with resource-constraint after stall_timeout (%.1f s)"
             % (time.time() - state["t0"]))
    sent = fl.run(3.0)
    s.expect(sent, fl.count, "the flooding link is read again after the stall (stanzas taken)")
    want = fl.count - state["sent1"]
    deadline = time.time() + 8
    while time.time() < deadline and bounces(s, "b") < want:
        time.sleep(0.1)
    nb = bounces(s, "b")
    s.expect(nb >= want, True, "what came after the stall bounced at once (%d bounced, %d sent after the pause)"
             % (nb, want))
    m = s.metrics()
    m0 = state["m0"]
    s.expect(m.get("fedhub_flow_stall_bounced_total", 0) - m0.get("fedhub_flow_stall_bounced_total", 0) >= nb, True,
             "stall bounces counted in /metrics (%s)" % m.get("fedhub_flow_stall_bounced_total"))


if __name__ == "__main__":
    S.run(main)
