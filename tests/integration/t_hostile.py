#!/usr/bin/env python3
"""Link-level hostile input on the s2s and component listeners (lib/hostile.py).

Each case runs on a link of its own while the legitimate traffic (an
authenticated inbound s2s stream, a component, the hub's outbound link) keeps
flowing, and asserts the exact RFC 6120 stream error (§4.9.3) or XEP-0220 /
XEP-0114 answer, that only the offending link was closed (or that it stayed
open where the protocol keeps it), that the hub is alive, and that the
legitimate traffic lost nothing. A case that fails here is a finding about
the hub: the expectation is the protocol's."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import hostile as H  # noqa: E402
from hostile import attr, comp_header, db_key, handshake, s2s_header, stream_error_of  # noqa: E402

MAX_STANZA, MAX_PREAUTH, SEND_QUEUE = 64 * 1024, 16 * 1024, 256 * 1024
CONF = H.conf(hub_extra="""max_stanza_size %d
max_stanza_size_preauth %d
send_queue_max %d""" % (MAX_STANZA, MAX_PREAUTH, SEND_QUEUE))
S = H.Suite("hostile", CONF, base=25300, limit=50)
MSG = "<message from='u@remote.fake' to='bot@echo.fake' id='%s'><body>x</body></message>"


def authed(s, to="echo.fake"):
    """An s2s stream from remote.fake authenticated by dialback for `to`."""
    o = s.remote_s2s(to)
    got = o.auth(to)
    if got != "valid":
        raise RuntimeError("dialback for %s answered %r" % (to, got))
    return o


def component_saw(s, mid, wait=0.5):
    """Whether the legitimate component received a stanza with id mid."""
    deadline = time.time() + wait
    while True:
        try:
            el = s.legit.recv_component(max(0.05, deadline - time.time()))
        except socket.timeout:
            return False
        if attr(el, "id") == mid:
            return True


def remote_got(s, mid, wait=8):
    """Whether the fake remote server received a stanza with id mid."""
    deadline = time.time() + wait
    while time.time() < deadline:
        if any(attr(m, "id") == mid for m in s.rs.messages()):
            return True
        time.sleep(0.05)
    return False


def on_authed(payload, want):
    """A case body: payload on a freshly authenticated s2s stream; the
    stream error it gets."""
    def fn(s):
        o = authed(s)
        o.send(payload)
        return stream_error_of(o), want
    return fn


def on_header(header, want, component=False):
    """A case body: header as the first bytes on the s2s (or component)
    listener; the stream error, after the hub's own header (RFC 6120
    §4.9.1.2: the hub opens a stream of its own first)."""
    def fn(s):
        c = s.connect(s.ports.comp if component else s.ports.s2s)
        c.send(header)
        c.header()
        return c.stream_error(), want
    return fn


# ---- s2s: authentication and addresses

def preauth_stanza(s):
    # RFC 6120 §4.9.3.12: stanzas before the stream is authenticated
    c = s.s2s()
    c.send(MSG % "pre1")
    s.expect(c.stream_error(), "not-authorized")
    s.expect(component_saw(s, "pre1"), False, "the stanza was not routed")


def spoofed_from(s):
    # §4.9.3.10 (and XEP-0220 §2.4): from a domain not validated on the stream
    o = authed(s)
    o.send("<message from='u@evil.fake' to='bot@echo.fake' id='spoof1'><body>x</body></message>")
    s.expect(stream_error_of(o), "invalid-from")
    s.expect(component_saw(s, "spoof1"), False, "the stanza was not routed")


# ---- dialback (XEP-0220)

def wrong_key(s):
    # §2.1.3 / §2.4: the pair is refused with type='invalid'; the stream
    # stays, and another pair can still be authenticated on it
    c = s.s2s()
    c.send("<db:result from='remote.fake' to='echo.fake'>%s</db:result>" % ("0" * 64))
    el = c.element(10)
    s.expect((el.split(">", 1)[0] + ">", attr(el, "type"), attr(el, "from"), attr(el, "to")),
             lambda g: g[0].startswith("<db:result") and g[1:] == ("invalid", "echo.fake", "remote.fake"),
             "db:result type='invalid' from echo.fake to remote.fake: %s" % el[:200])
    key = db_key(s.rs.secret, "spare.fake", "remote.fake", c.sid)
    c.send("<db:result from='remote.fake' to='spare.fake'>%s</db:result>" % key)
    got = None
    while True:  # the stanza from the refused pair gets the stream's verdict first, if any
        el = c.element(10)
        if el.startswith("<db:result"):
            got = attr(el, "type")
            break
        if el.startswith("<stream:error"):
            got = "stream error " + (H.error_condition(el) or el)
            break
    s.expect(got, "valid", "another pair on the same stream")


def wrong_key_then_stanza(s):
    # the refused pair stays refused: its stanza is not routed
    c = s.s2s()
    c.send("<db:result from='remote.fake' to='echo.fake'>%s</db:result>" % ("0" * 64))
    el = c.element(10)
    s.expect(attr(el, "type"), "invalid", "db:result answer")
    c.send(MSG % "wk2")
    s.expect(c.stream_error(), {"not-authorized", "invalid-from"})
    s.expect(component_saw(s, "wk2"), False, "the stanza was not routed")


def verify_never_issued(s):
    # XEP-0220 §2.1.2: the authoritative server answers type='invalid' for a
    # key it did not issue, and keeps the stream (verification streams are reused)
    c = s.s2s()
    c.send("<db:verify from='remote.fake' to='echo.fake' id='never-issued'>%s</db:verify>" % ("ab" * 32))
    el = c.element()
    got = (attr(el, "type"), attr(el, "id"), attr(el, "from"), attr(el, "to"))
    s.expect(got == ("invalid", "never-issued", "echo.fake", "remote.fake"), True, "db:verify answer %s" % el[:200])


def result_not_hosted(s):
    # XEP-0220 §2.4.1: item-not-found; the stream stays for other pairs
    c = s.s2s()
    c.send("<db:result from='remote.fake' to='notours.fake'>k</db:result>")
    el = c.element()
    s.expect(el.startswith("<db:result") and attr(el, "type") == "error" and "item-not-found" in el, True,
             "item-not-found: " + el[:200])


# ---- sizes

def oversized(s):
    o = authed(s)
    o.send("<message from='u@remote.fake' to='bot@echo.fake' id='big1'><body>" + "C" * (MAX_STANZA + 10)
           + "</body></message>")
    s.expect(stream_error_of(o), "policy-violation")
    s.expect(component_saw(s, "big1"), False, "the stanza was not routed")


def oversized_preauth(s):
    c = s.s2s()
    c.send("<db:result from='remote.fake' to='echo.fake'>" + "0" * (MAX_PREAUTH + 10) + "</db:result>", segments=8)
    return c.stream_error(), "policy-violation"


# ---- stream headers

def header_no_to(s):
    # RFC 6120 §4.7.2: the initiating server MUST include 'to'; the hub
    # answers for its own domain and keeps the stream
    c = s.connect(s.ports.s2s)
    c.send(s2s_header(to=None))
    hdr = c.header()
    s.expect(attr(hdr + ">", "from"), "hub.fake", "the hub's header is from its own domain")
    s.expect(c.features().startswith("<stream:features"), True, "features follow")


def second_header(s):
    # a stream header inside an open stream (no restart is due: RFC 6120
    # §4.3.3 restarts only after STARTTLS and SASL) is no first-level element
    # the hub supports (§4.9.3.24), known as such from its start tag: it can
    # never be completed by a well-behaved peer
    o = authed(s)
    o.send(s2s_header())
    o.send(MSG % "after2nd")
    s.expect(stream_error_of(o, 3), {"unsupported-stanza-type", "bad-format"})
    s.expect(component_saw(s, "after2nd"), False, "nothing after it was routed")


def close_then_bytes(s):
    # §4.4: the hub answers the close and closes; what follows is not processed
    o = authed(s)
    o.send("</stream:stream>" + MSG % "afterclose")
    tail = H.until_close(o)
    s.expect(tail.strip().endswith(b"</stream:stream>"), True, "the hub answers </stream:stream>: %r" % tail[-120:])
    s.expect(component_saw(s, "afterclose"), False, "the stanza after the close was not routed")


def half_closed(s):
    # the peer stops sending (FIN) in the middle of a stanza: the hub must
    # not wait for the rest forever
    o = authed(s)
    o.send("<message from='u@remote.fake' to='bot@echo.fake' id='half'><body>half")
    o.s.shutdown(socket.SHUT_WR)
    s.expect(component_saw(s, "half"), False, "the partial stanza was not routed")


def never_reads(s):
    # the peer asks for answers (db:verify) and never reads them: the hub's
    # send queue stops at send_queue_max and the link is closed, while the
    # hub's memory does not follow what the peer asked for
    rss0 = H.rss_kb(s.hub.pid)
    c = s.s2s(rcvbuf=4096)
    x = c.sock
    req = "".join("<db:verify from='remote.fake' to='echo.fake' id='v%d'>%s</db:verify>" % (i, "ab" * 32)
                  for i in range(1000)).encode()
    sent, cut = 0, None
    x.settimeout(2)
    while sent < 60 and cut is None:  # up to 60000 answers of ~100 bytes: 6 MB, 23 x send_queue_max
        try:
            x.sendall(req)
            sent += 1
        except socket.timeout:
            cut = "the hub stopped reading"
        except (ConnectionResetError, BrokenPipeError):
            cut = "the hub closed the link"
    rss1 = H.rss_kb(s.hub.pid)
    k = H.sanitizer_scale()
    s.expect(rss1 - rss0 < 16 * 1024 * k, True, "RSS grew %d KiB for %d000 unread answers" % (rss1 - rss0, sent))
    s.expect(cut, "the hub closed the link", "after %d000 requests" % sent)


# ---- component listener

def comp_slowloris(s):
    # XEP-0114 has no deadline of its own; the hub's is connect_timeout (3 s
    # here): the header dribbled a byte at a time, the handshake never sent
    c = s.connect(s.ports.comp)
    hdr = comp_header("spare.fake")
    t0 = time.time()
    gone = None
    for i in range(len(hdr)):
        try:
            c.send(hdr[i:i + 1])
        except OSError as e:
            gone = e
            break
        time.sleep(0.05)
    while gone is None and time.time() - t0 < 8:
        try:
            c.send(b" ")
        except OSError as e:
            gone = e
            break
        time.sleep(0.2)
    s.expect(c.stream_error(2), "connection-timeout")
    s.expect(time.time() - t0 < 8, True, "closed %.1f s after connecting (connect_timeout 3 s)" % (time.time() - t0))


def comp_wrong_secret(s):
    return s.comp_auth("spare.fake", "not-the-secret"), "not-authorized"


def comp_wrong_secret_pipelined(s):
    # the stanza behind a refused handshake must not be routed
    c = s.comp("spare.fake")
    c.send(handshake(c.sid, "not-the-secret") +
           b"<message from='bot@spare.fake' to='u@remote.fake' id='pipe-bad'><body>x</body></message>")
    s.expect(c.stream_error(), "not-authorized")
    s.expect(remote_got(s, "pipe-bad", 1), False, "the pipelined stanza was not routed")


def comp_handshake_twice(s):
    c = s.comp_auth("spare.fake")
    if isinstance(c, str):
        raise RuntimeError("handshake refused: " + c)
    c.send(handshake(c.sid))
    return c.stream_error(), "unsupported-stanza-type"


def comp_bytes_before_answer(s):
    # a stanza sent right behind the handshake, before <handshake/> came
    # back: processed in order, i.e. routed once the handshake succeeded
    c = s.comp("spare.fake")
    c.send(handshake(c.sid) +
           b"<message from='bot@spare.fake' to='u@remote.fake/r' id='pipe-ok'><body>x</body></message>")
    el = c.element()
    s.expect(el.startswith("<handshake"), True, "the handshake is answered: %s" % el[:200])
    s.expect(remote_got(s, "pipe-ok"), True, "the pipelined stanza was routed")


def comp_stanza_first(s):
    c = s.comp("spare.fake")
    c.send(b"<message from='bot@spare.fake' to='u@remote.fake' id='nohs'/>")
    s.expect(c.stream_error(), "not-authorized")
    s.expect(remote_got(s, "nohs", 1), False, "the stanza was not routed")


def split_segments(s):
    # the spoof of spoofed_from, one byte per TCP segment
    o = authed(s)
    H.Conn.of(o).send("<message from='u@evil.fake' to='bot@echo.fake' id='spoof2'/>", segments=48, pause=0.002)
    s.expect(stream_error_of(o), "invalid-from")


def main(s):
    S.case("s2s: stanza before authentication: not-authorized", preauth_stanza)
    S.case("s2s: spoofed from on an authenticated stream: invalid-from", spoofed_from)
    S.case("s2s: spoofed from split over 48 segments: invalid-from", split_segments)
    # §4.9.3.7: to a domain the hub does not serve
    S.case("s2s: to a domain not served: host-unknown",
           on_authed("<message from='u@remote.fake' to='x@elsewhere.fake' id='far1'/>", "host-unknown"))
    # §8.1.2.1: stanzas between servers carry both addresses; §4.9.3.11
    S.case("s2s: stanza without from: improper-addressing",
           on_authed("<message to='bot@echo.fake' id='nofrom'/>", "improper-addressing"))
    S.case("s2s: stanza without to: improper-addressing",
           on_authed("<message from='u@remote.fake' id='noto'/>", "improper-addressing"))
    # §4.9.3.24: a first-level child that is not a stanza
    S.case("s2s: unknown first-level element: unsupported-stanza-type",
           on_authed("<frobnicate xmlns='jabber:server'/>", "unsupported-stanza-type"))
    S.case("dialback: wrong key: type='invalid', the stream stays for other pairs", wrong_key, closed=False,
           timeout=20)
    S.case("dialback: a stanza from the refused pair is not routed", wrong_key_then_stanza, timeout=20)
    S.case("dialback: db:verify for a key the hub never issued: type='invalid'", verify_never_issued, closed=False)
    S.case("dialback: db:result to a domain not hosted: item-not-found, stream stays", result_not_hosted,
           closed=False)
    S.case("s2s: stanza over max_stanza_size: policy-violation", oversized)
    S.case("s2s: pre-auth element over max_stanza_size_preauth: policy-violation", oversized_preauth)
    # §4.9.3.10: the stream namespace, or the content namespace, is unknown
    S.case("s2s: unknown stream namespace: invalid-namespace",
           on_header(s2s_header(stream_ns="urn:example:not-streams"), "invalid-namespace"))
    S.case("s2s: unknown content namespace: invalid-namespace",
           on_header(s2s_header(ns="jabber:example"), "invalid-namespace"))
    # §4.9.3.1: a stanza where the stream header belongs cannot be processed
    S.case("s2s: a stanza instead of a stream header: bad-format", on_header((MSG % "nohdr").encode(), "bad-format"))
    # §4.7.5: a major version the hub does not support
    S.case("s2s: stream header version 2.0: unsupported-version",
           on_header(s2s_header(version="2.0"), "unsupported-version"))
    S.case("s2s: stream header to a domain not served: host-unknown",
           on_header(s2s_header(to="elsewhere.fake"), "host-unknown"))
    S.case("s2s: stream header without to: answered for the hub's domain", header_no_to, closed=False)
    S.case("s2s: a second stream header on an open stream", second_header)
    S.case("s2s: </stream:stream> then bytes: answered, closed, nothing routed", close_then_bytes)
    S.case("s2s: half-closed socket mid-stanza: the hub closes its side", half_closed)
    S.case("s2s: a peer that never reads: send_queue_max, then closed", never_reads, timeout=30)
    S.case("component: slowloris header, no handshake: connection-timeout", comp_slowloris, timeout=15)
    S.case("component: wrong secret: not-authorized", comp_wrong_secret)
    S.case("component: wrong secret, stanza pipelined: not-authorized, not routed", comp_wrong_secret_pipelined)
    S.case("component: handshake twice: unsupported-stanza-type", comp_handshake_twice)
    S.case("component: stanza sent before the handshake is answered: routed", comp_bytes_before_answer,
           closed=False, timeout=15)
    # XEP-0114 §3.1: 'to' names the component
    S.case("component: stream header without to: host-unknown",
           on_header(comp_header(to=None), "host-unknown", component=True))
    S.case("component: stanza before the handshake: not-authorized", comp_stanza_first)


if __name__ == "__main__":
    S.run(main)
