#!/usr/bin/env python3
"""Hostile XML and addresses against fedhub, on lib/hostile.py.

While the legitimate s2s stream and component keep exchanging messages, each
case attacks on links of its own and the framework checks the exact RFC 6120
error, that only the attacked link was closed (or that it, and every
component connection involved, stayed open where the hub must not close it)
and that no legitimate stanza was lost.

- Namespace leaks: fedhub forwards a stanza's own bytes, so a stanza that
  uses a prefix bound only on the sender's stream header (db:, stream:, or one
  the sender made up) would reach a component stream unparseable and kill it.
  Each such stanza goes to a component pool of two connections; whichever gets
  it must receive bytes that parse on their own (xml.etree, which refuses an
  unbound prefix), and neither connection may be closed.
- Restricted XML (RFC 6120 §11): entity expansion, DTDs, comments, PIs,
  undeclared prefixes; rebound prefixes inside a stanza are legal and routed.
- Bad UTF-8 of each kind, NUL and other code points XML forbids, and limits
  (attribute size, nesting, attribute count, duplicates).
- Component `from`: a component sends from its own domain and from subdomains
  nothing else is configured for; a sibling [component], a [domain] under it
  or a foreign domain is invalid-from.
"""
import os
import socket
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import hostile as H  # noqa: E402
from hostile import NS_STREAM, Reader, attr, stream_error_of, stream_id  # noqa: E402
from fakepeer import S2SOut  # noqa: E402

CONF = H.conf(sections="""[component pool.fake]
secret s3cret
[component owner.fake]
secret s3cret
[component sub.owner.fake]
secret s3cret
[domain hosted.owner.fake]
""")
# No case starts after 45 s; the run is killed at 75 s.
S = H.Suite("hostile_xml", CONF, base=25600, limit=45)
FROM = "u@remote.fake/r"


def authed_s2s(s, to="pool.fake", extra=""):
    """An inbound s2s stream from remote.fake, dialback-authenticated for
    `to`, whose header carries `extra` declarations."""
    sock = socket.create_connection(("127.0.0.1", s.ports.s2s), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    r = Reader(sock)
    hdr = ("<stream:stream xmlns='jabber:server' xmlns:stream='%s' xmlns:db='jabber:server:dialback'%s "
           "from='remote.fake' to='%s' version='1.0'>" % (NS_STREAM, extra, to)).encode()
    sock.sendall(hdr)
    sid = stream_id(r.stream_header())
    r.element()  # features
    o = S2SOut(s.rs, sock, r, sid, "remote.fake")
    s._register(H.Conn.of(o))
    s.expect(o.auth(to), "valid", "dialback for " + to)
    return o


def pool(s, n=2):
    """n authenticated connections for pool.fake (all checked: none may close)."""
    return [s.component("pool.fake") for _ in range(n)]


def recv_any(comps, timeout=5):
    """The first element any of comps receives."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in comps:
            try:
                return c.r.element(0.1)
            except socket.timeout:
                continue
    raise socket.timeout("no component of the pool received anything in %s s" % timeout)


def standalone(el):
    """True when the element parses on its own, namespaces included."""
    try:
        ET.fromstring(el)
        return True
    except ET.ParseError:
        return False


def leak(stanza_fmt, extra="", check=None):
    """A case: stanza_fmt (with {id}) from an authenticated s2s stream whose
    header has `extra` declarations to the pool; what arrives must parse on
    its own and keep its id; nothing is closed."""
    def fn(s):
        comps = pool(s)
        o = authed_s2s(s, "pool.fake", extra)
        mid = "leak-%d" % (time.time() * 1e6)
        o.send(stanza_fmt.format(id=mid, frm=FROM))
        el = recv_any(comps)
        s.expect(attr(el, "id"), mid, "the stanza is routed")
        s.expect(standalone(el), True, "it is namespace-well-formed on its own: %s" % el[:300])
        if check:
            s.expect(check(el), True, "its content: %s" % el[:300])
        # the stream and the pool are fine: a second stanza still goes through
        o.send("<message from='%s' to='b@pool.fake' id='%s-2'/>" % (FROM, mid))
        el = recv_any(comps)
        s.expect(attr(el, "id"), mid + "-2", "the link still routes")
    return fn


def stream_err(kind, payload, want, opened=True):
    def fn(s):
        c = (s.s2s() if opened else s.connect(s.ports.s2s)) if kind == "s2s" else s.comp()
        c.send(payload)
        if not opened:
            c.header()
        return c.stream_error(), want
    return fn


def authed_err(payload, want, extra=""):
    """payload on an authenticated s2s stream (to the pool) -> stream error."""
    def fn(s):
        o = authed_s2s(s, "pool.fake", extra)
        o.s.sendall(payload)
        return stream_error_of(o), want
    return fn


def st(body, to="bot@echo.fake"):
    return b"<message from='u@remote.fake' to='" + to.encode() + b"'>" + body + b"</message>"


def main(s):
    # ---- namespace leaks into a component pool (none may die)
    s.case("leak: <db:junk/> inside a message (db bound only on the s2s header)",
           leak("<message from='{frm}' to='a@pool.fake' id='{id}'><body>x</body><db:junk/></message>",
                check=lambda el: "jabber:server:dialback" in el), closed=False)
    s.case("leak: a db: attribute on the stanza element",
           leak("<message from='{frm}' to='a@pool.fake' id='{id}' db:x='1'/>"), closed=False)
    s.case("leak: <stream:error/> inside a message",
           leak("<message from='{frm}' to='a@pool.fake' id='{id}'><stream:error/></message>"), closed=False)
    s.case("leak: a prefix made up on the sender's header, on a child",
           leak("<message from='{frm}' to='a@pool.fake' id='{id}'><e:payload/></message>",
                extra=" xmlns:e='urn:evil'", check=lambda el: "urn:evil" in el), closed=False)
    s.case("leak: <x:message> with x bound to jabber:server on the header only",
           leak("<x:message from='{frm}' to='a@pool.fake' id='{id}'><x:body>hi</x:body></x:message>",
                extra=" xmlns:x='jabber:server'",
                check=lambda el: el.startswith("<message") and el.endswith("</message>")), closed=False)
    s.case("leak: <x:iq/> bound inside the stanza itself is unprefixed on the way",
           leak("<x:iq xmlns:x='jabber:server' from='{frm}' to='a@pool.fake' id='{id}' type='get'/>",
                check=lambda el: el.startswith("<iq")), closed=False)
    s.case("rebound xmlns:stream inside a stanza is legal and routed",
           leak("<message xmlns:stream='urn:other' from='{frm}' to='a@pool.fake' id='{id}'>"
                "<stream:features/></message>", check=lambda el: "urn:other" in el), closed=False)
    s.case("rebound xmlns:db inside a stanza is legal and routed",
           leak("<message from='{frm}' to='a@pool.fake' id='{id}'><x xmlns:db='urn:y'><db:result/></x></message>",
                check=lambda el: "urn:y" in el), closed=False)

    def comp_leak(s):
        c = s.component("spare.fake")
        mid = "cleak-%d" % (time.time() * 1e6)
        c.send("<message from='bot@spare.fake' to='bot@echo.fake' id='%s'><stream:x/></message>" % mid)
        el = s.legit.recv_component(5)
        s.expect(attr(el, "id"), mid, "routed from one component to another")
        return standalone(el), True
    s.case("leak: a component's stanza using its header's stream: prefix", comp_leak, closed=False)

    s.case("top-level element in a foreign namespace by prefix",
           authed_err(b"<e:message xmlns:e='urn:evil' from='u@remote.fake' to='a@pool.fake'/>",
                      "unsupported-stanza-type"))
    s.case("top-level element in the dialback namespace that is no dialback",
           authed_err(b"<db:message from='u@remote.fake' to='a@pool.fake'/>", "unsupported-stanza-type"))

    def prefixed_with_default(s):
        comps = pool(s)
        o = authed_s2s(s)
        mid = "pd-%d" % (time.time() * 1e6)
        o.send("<x:message xmlns:x='jabber:server' xmlns='urn:other' from='%s' to='a@pool.fake' id='%s'>"
               "<b/></x:message>" % (FROM, mid))
        deadline, bounce = time.time() + 5, None
        while time.time() < deadline and bounce is None:
            bounce = next((m for m in s.rs.messages() if attr(m, "id") == mid), None)
            time.sleep(0.05)
        s.expect(bounce is not None and attr(bounce, "type") == "error" and "bad-request" in (bounce or ""), True,
                 "bounced with bad-request: %s" % (bounce or "")[:300])
        for c in comps:
            try:
                el = c.r.element(0.2)
                s.expect(False, True, "the pool received it: %s" % el[:200])
            except socket.timeout:
                pass
    s.case("a prefixed stanza element with its own default namespace is refused (bad-request)",
           prefixed_with_default, closed=False)

    # ---- restricted XML (RFC 6120 §11.1)
    lol = (b"<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
           b"<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>")
    s.case("billion laughs before the stream header", stream_err("s2s", lol + b"<stream:stream>", "restricted-xml",
                                                                 opened=False))
    s.case("billion laughs after the stream header", stream_err("s2s", lol + st(b"&lol3;"), "restricted-xml"))
    s.case("entity reference to an undeclared entity", stream_err("s2s", st(b"&lol3;"), "restricted-xml"))
    s.case("DTD inside a stanza", stream_err("s2s", st(b"<!DOCTYPE x>"), "restricted-xml"))
    s.case("comment at the top level", stream_err("s2s", b"<!-- hi -->", "restricted-xml"))
    s.case("comment inside a stanza", stream_err("s2s", st(b"<body><!-- hi --></body>"), "restricted-xml"))
    s.case("processing instruction inside a stanza", stream_err("comp", b"<handshake><?pi x?></handshake>",
                                                                "restricted-xml"))
    s.case("undeclared element prefix", stream_err("s2s", st(b"<foo:bar/>"), "bad-namespace-prefix"))
    s.case("undeclared attribute prefix", stream_err("s2s", st(b"<x foo:a='1'/>"), "bad-namespace-prefix"))
    s.case("db: on a component stream (never bound there)",
           stream_err("comp", b"<handshake><db:x/></handshake>", "bad-namespace-prefix"))

    # ---- bad UTF-8 and forbidden characters (RFC 6120 §11.6, XML 1.0 Char)
    for what, bad in (("overlong 2-byte '/'", b"\xc0\xaf"), ("overlong 3-byte", b"\xe0\x80\xaf"),
                      ("surrogate U+D800", b"\xed\xa0\x80"), ("beyond U+10FFFF", b"\xf4\x90\x80\x80"),
                      ("truncated sequence", b"\xe2\x82"), ("lone continuation byte", b"\x80"),
                      ("NUL", b"\x00"), ("control character U+0001", b"\x01"), ("U+FFFE", b"\xef\xbf\xbe")):
        s.case("%s in character data" % what, stream_err("s2s", st(b"<body>a" + bad + b"b</body>"), "invalid-xml"))
    s.case("surrogate in an attribute value",
           stream_err("s2s", b"<message from='u@remote.fake' to='b\xed\xb0\x80@echo.fake'/>", "invalid-xml"))
    s.case("character reference to U+0000", stream_err("s2s", st(b"&#0;"), "invalid-xml"))
    s.case("character reference to a surrogate", stream_err("s2s", st(b"&#xD800;"), "invalid-xml"))

    # ---- limits and attribute rules
    s.case("attribute value over the pre-auth stanza limit",
           stream_err("s2s", b"<message a='" + b"v" * 70000 + b"'/>", "policy-violation"))
    s.case("attribute name over max_name", stream_err("s2s", b"<message " + b"a" * 300 + b"='1'/>", "policy-violation"))
    s.case("nesting 100 deep", stream_err("s2s", st(b"<a>" * 100 + b"</a>" * 100), "policy-violation"))
    s.case("attribute flood (200 attributes)",
           stream_err("s2s", b"<message " + b" ".join(b"a%d='v'" % i for i in range(200)) + b"/>",
                      "policy-violation"))
    s.case("duplicate attribute", stream_err("s2s", b"<message to='a' to='b'/>", "not-well-formed"))
    s.case("duplicate attribute by expanded name",
           stream_err("s2s", st(b"<x xmlns:a='u' xmlns:b='u' a:k='1' b:k='2'/>"), "not-well-formed"))

    # ---- component `from` (XEP-0114 subdomains: only those nobody else owns)
    def comp_from(frm, want):
        def fn(s):
            c = s.component("owner.fake")
            c.send("<message from='%s' to='bot@echo.fake' id='cf'/>" % frm)
            return stream_error_of(c), want
        return fn
    s.case("component sends from a sibling [component] under its domain",
           comp_from("x@sub.owner.fake", "invalid-from"))
    s.case("component sends from below a sibling [component]", comp_from("x@deep.sub.owner.fake", "invalid-from"))
    s.case("component sends from a [domain] under its domain", comp_from("x@hosted.owner.fake", "invalid-from"))
    s.case("component sends from a foreign domain", comp_from("x@remote.fake", "invalid-from"))
    s.case("component sends from the hub's domain", comp_from("x@hub.fake", "invalid-from"))

    def comp_free_sub(s):
        c = s.component("owner.fake")
        mid = "free-%d" % (time.time() * 1e6)
        c.send("<message from='x@free.owner.fake' to='bot@echo.fake' id='%s'/>" % mid)
        el = s.legit.recv_component(5)
        return attr(el, "id"), mid
    s.case("component sends from an unconfigured subdomain of its own: routed", comp_free_sub, closed=False)


if __name__ == "__main__":
    S.run(main)
