#!/usr/bin/env python3
"""fedhub in front of unmodified XMPP servers ([backend NAME]) against
scripted peers (lib/fakepeer.py): a Backend plays the server behind the hub
(it verifies the hub's dialback keys by asking the hub, as a server whose
resolver points every domain at the hub would), a RemoteServer plays the
federation. Inbound relay (remote -> hub -> backend, one internal link per
worker and backend carrying the pairs of several remote and local domains), outbound transit (backend ->
hub -> remote), dialback both ways, a backend that is down (stanzas wait,
are delivered once it is back, or bounced after stall_timeout), streams
from a non-backend address refused, invalid-from; every per-backend metric
README documents is published, and fedhubctl backends agrees with /metrics.
Real Prosody and ejabberd
behind the hub are other scripts' business. Ports: 26700-26799."""
import json, os, re, socket, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from fakepeer import Backend, RemoteServer, Reader, attr, db_key, s2s_header, stream_error_of  # noqa: E402
from hubproc import Hub, Results, metrics  # noqa: E402
from fhit import PKI  # noqa: E402

S2S, HTTP, BACKEND, REMOTE, DOWN, SOLO, SEC = 26769, 26780, 26771, 26772, 26773, 26774, 26775
STALL = 4
TMP = tempfile.mkdtemp(prefix="fedhub-backend-")
CTL = os.path.join(TMP, "ctl.sock")
FEDHUBCTL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fedhubctl")
PKI_ = PKI(TMP)
PKI_.leaves([("t1", ["t1.fake"])])
CONF = """
[hub]
workers 2
domain hub.fake
listen s2s 127.0.0.1:%d tls optional
http 127.0.0.1:%d
log_level debug
connect_timeout 3
retry_min 1
stall_timeout %d
max_connections_per_ip 3
control_socket %s
ca_file %s
s2s_tls optional
[route remote.fake]
connect 127.0.0.1:%d
[backend pros]
domain a.fake b.fake
connect 127.0.0.1:%d
allow_from 127.0.0.1
tls off
[backend down]
domain down.fake
connect 127.0.0.1:%d
allow_from 127.0.0.1
[backend solo]
domain s1.fake s2.fake
connect 127.0.0.1:%d
[backend sec]
domain t1.fake
connect 127.0.0.1:%d
tls required
[domain t1.fake]
cert %s
key %s
""" % (S2S, HTTP, STALL, CTL, PKI_.ca, REMOTE, BACKEND, DOWN, SOLO, SEC, PKI_.cert("t1"), PKI_.key)

T = Results()
check = T.check


def wait_for(pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def msg(frm, to, mid, body="hi"):
    return "<message from='%s' to='%s' id='%s' type='chat'><body>%s</body></message>" % (frm, to, mid, body)


def with_id(peer, mid):
    return [m for m in peer.messages() if attr(m, "id") == mid]


def from_addr(host):
    """A connection to the hub from another loopback address."""
    s = socket.socket()
    s.bind((host, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", S2S))
    return s


def main():
    hub = Hub(CONF, TMP, ready_ports=(S2S, HTTP))
    T.run_script(lambda: ("hub starts", hub.start(), "see its log"), run, hub.finish)


def run(holder):
    rs = RemoteServer("remote.fake", REMOTE)
    bk = Backend(["a.fake", "b.fake"], BACKEND, S2S)
    holder += [rs, bk]
    o = inbound_cases(rs, bk)
    solo_case(o, holder)
    tls_case(o, holder)
    unissued_key_case()
    t = transit_cases(rs, bk, o)
    address_cases(bk)
    bk2 = down_cases(rs, o, holder)
    b2b_case(bk, bk2)
    limits_cases()
    rows = ctl_cases()
    metrics_cases(rows)
    o.close()
    t.close()


def inbound_cases(rs, bk):
    """Inbound relay: remote -> hub -> backend; returns the remote's stream to the hub."""
    o = rs.connect_out(S2S, "a.fake")
    check("remote authenticates to a backend domain at the hub", o.auth("a.fake") == "valid")
    check("remote pair for the second domain on the same stream", o.auth("b.fake") == "valid")
    o.send(msg("u@remote.fake/r", "v@a.fake", "in1"))
    o.send(msg("u@remote.fake/r", "w@b.fake", "in2"))
    got = wait_for(lambda: with_id(bk, "in1") and with_id(bk, "in2"))
    check("stanzas for two backend domains relayed to the backend", got, bk.messages())
    v = list(bk.verified)
    check("the backend verified the hub's keys by dialback toward the hub",
          sorted((r, d, t) for r, d, t, _ in v) == [("remote.fake", "a.fake", "valid"),
                                                    ("remote.fake", "b.fake", "valid")], v)
    check("one internal link carries both domains (piggybacking)", len(set(c for _, _, _, c in v)) == 1, v)
    for i in range(20):
        o.send(msg("u@remote.fake/r", "v@a.fake", "ord%d" % i))
    wait_for(lambda: with_id(bk, "ord19"))
    order = [attr(m, "id") for m in bk.messages() if (attr(m, "id") or "").startswith("ord")]
    check("per-pair order kept through the hub", order == ["ord%d" % i for i in range(20)], order)
    return o


def solo_case(o, holder):
    # a backend that takes no piggybacking: each domain gets a link of its own
    solo = Backend(["s1.fake", "s2.fake"], SOLO, S2S, piggyback=False)
    holder.append(solo)
    check("remote pairs for the solo backend's domains", o.auth("s1.fake") == "valid" and o.auth("s2.fake") == "valid")
    o.send(msg("u@remote.fake/r", "v@s1.fake", "so1"))
    o.send(msg("u@remote.fake/r", "v@s2.fake", "so2"))
    o.send(msg("u@remote.fake/r", "v@s2.fake", "so3"))
    got = wait_for(lambda: with_id(solo, "so1") and with_id(solo, "so2") and with_id(solo, "so3"))
    check("a backend refusing piggybacking gets every domain delivered", got, solo.messages())
    ok_links = set(c for _, _, t, c in solo.verified if t == "valid")
    check("... over a link per domain", len(ok_links) == 2, solo.verified)
    order = [attr(m, "id") for m in solo.messages() if attr(m, "to") == "v@s2.fake"]
    check("... in order", order == ["so2", "so3"], order)


def tls_case(o, holder):
    # tls required on the internal links: STARTTLS to the backend
    sec = Backend(["t1.fake"], SEC, S2S, tls_server=PKI_.server_context("t1"))
    holder.append(sec)
    check("remote pair for the TLS backend's domain", o.auth("t1.fake") == "valid")
    o.send(msg("u@remote.fake/r", "v@t1.fake", "tls1"))
    check("tls required: relayed to the backend over STARTTLS", wait_for(lambda: with_id(sec, "tls1")), sec.messages())
    check("... on a TLS stream", sec.tls_streams >= 1, sec.tls_streams)


def unissued_key_case():
    # a key the hub did not issue is refused when the backend asks about it
    s = socket.create_connection(("127.0.0.1", S2S), timeout=5)
    r = Reader(s)
    s.sendall(s2s_header("a.fake", "remote.fake"))
    r.stream_header()
    r.element()
    s.sendall(b"<db:verify from='a.fake' to='remote.fake' id='nosuchid'>" + b"ab" * 32 + b"</db:verify>")
    el = r.element()
    check("db:verify from a backend for a key the hub did not issue: invalid", attr(el, "type") == "invalid", el)
    s.close()


def transit_cases(rs, bk, o):
    """Outbound transit: backend -> hub -> remote; returns the backend's transit stream."""
    t = bk.connect_out(S2S, "remote.fake", from_domain="a.fake")
    check("a backend's stream to a remote domain is accepted (transit)", "dialback" in t.features, t.features)
    check("the hub verifies the backend's key by dialback against the backend", t.auth("remote.fake") == "valid")
    t.send(msg("v@a.fake/x", "u@remote.fake", "out1"))
    got = wait_for(lambda: with_id(rs, "out1"))
    check("the backend's stanza leaves on the hub's own link to the remote", got, rs.messages())
    check("the remote's link is authenticated as the hosted domain",
          ("a.fake", "remote.fake") in rs.db_results, rs.db_results)
    # a reply from the remote comes back through the relay
    o.send(msg("u@remote.fake/r", "v@a.fake/x", "back1"))
    check("the remote's reply is relayed back to the backend", wait_for(lambda: with_id(bk, "back1")))

    bad = bk.connect_out(S2S, "remote.fake", from_domain="a.fake")
    bad.s.sendall(("<db:result from='a.fake' to='remote.fake'>%s</db:result>" % ("cd" * 32)).encode())
    el = bad.r.element(10)
    check("a wrong key from the backend: the backend says invalid, so does the hub",
          attr(el, "type") == "invalid", el)
    bad.close()
    return t


def address_cases(bk):
    # address rules
    x = bk.connect_out(S2S, "remote.fake", from_domain="a.fake")
    x.s.sendall(("<db:result from='zzz.fake' to='remote.fake'>%s</db:result>" % ("ab" * 32)).encode())
    check("transit claim for a domain of no backend: invalid-from", stream_error_of(x) == "invalid-from")
    s = socket.create_connection(("127.0.0.1", S2S), timeout=5)
    s.sendall(s2s_header("zzz.fake", "remote.fake"))
    check("transit stream from a domain of no backend: invalid-from", stream_error_of(Reader(s)) == "invalid-from")
    s.close()
    s = from_addr("127.0.0.9")
    s.sendall(s2s_header("a.fake", "remote.fake"))
    check("stream to a remote domain from a non-backend address: host-unknown",
          stream_error_of(Reader(s)) == "host-unknown")
    s.close()
    s = from_addr("127.0.0.9")
    s.sendall(s2s_header("a.fake", "hub.fake"))
    got = stream_error_of(Reader(s))
    check("a stream from a backend's domain at a non-backend address: invalid-from", got == "invalid-from", got)
    s.close()
    s = from_addr("127.0.0.9")
    r = Reader(s)
    s.sendall(s2s_header("remote.fake", "hub.fake"))
    r.stream_header()
    r.element()
    s.sendall(("<db:result from='a.fake' to='hub.fake'>%s</db:result>" % ("ab" * 32)).encode())
    got = stream_error_of(r)
    check("a backend's domain claimed from a non-backend address: invalid-from", got == "invalid-from", got)
    s.close()
    s = from_addr("127.0.0.9")
    r = Reader(s)
    s.sendall(s2s_header("remote.fake", "a.fake"))
    r.stream_header()
    r.element()
    s.sendall(b"<db:verify from='a.fake' to='remote.fake' id='x'>" + b"ab" * 32 + b"</db:verify>")
    el = r.element()
    check("db:verify for a backend's key from a non-backend address: refused",
          attr(el, "type") == "error" or el.startswith("<stream:error"), el)
    s.close()


def down_cases(rs, o, holder):
    """A backend that is down; returns the backend started in its place."""
    check("remote pair for the down backend's domain", o.auth("down.fake") == "valid")
    o.send(msg("u@remote.fake/r", "x@down.fake", "down2"))
    t0 = time.time()
    bounced = wait_for(lambda: [m for m in with_id(rs, "down2") if attr(m, "type") == "error"], STALL + 6)
    el = bounced[0] if bounced else ""
    check("a stanza for a backend that is down waits, then bounces remote-server-timeout",
          "remote-server-timeout" in el and attr(el, "from") == "x@down.fake", rs.messages()[-3:])
    check("... not before stall_timeout", time.time() - t0 >= STALL - 1, time.time() - t0)
    o.send(msg("u@remote.fake/r", "x@down.fake", "down3"))
    time.sleep(1.0)
    bk2 = Backend(["down.fake"], DOWN, S2S)
    holder.append(bk2)
    check("a stanza that waited is delivered once the backend is back", wait_for(lambda: with_id(bk2, "down3"), 6),
          bk2.messages())
    check("... and not bounced", not [m for m in with_id(rs, "down3") if attr(m, "type") == "error"])
    return bk2


def b2b_case(bk, bk2):
    # two backends behind one hub talk to each other through it
    t2 = bk.connect_out(S2S, "down.fake", from_domain="a.fake")
    check("backend to another backend's domain: authenticated", t2.auth("down.fake") == "valid")
    t2.send(msg("v@a.fake/x", "x@down.fake", "b2b"))
    got = wait_for(lambda: with_id(bk2, "b2b"))
    check("backend to backend: delivered over the other's internal link", got, bk2.messages())
    check("... which the other backend verified with the hub",
          ("a.fake", "down.fake", "valid") in [(r, d, t) for r, d, t, _ in bk2.verified], bk2.verified)
    t2.close()


def limits_cases():
    # a backend's streams are not held to the per-address limits
    many = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", S2S), timeout=5)
        s.sendall(s2s_header("a.fake", "remote.fake"))
        many.append((s, Reader(s)))
    def opened(r):
        try:
            r.stream_header(3)
            return r.element(3).startswith("<stream:features")
        except (EOFError, OSError) as e:
            return repr(e)
    got = [opened(r) for _, r in many]
    check("five streams from a backend address, max_connections_per_ip 3: all open", got == [True] * 5, got)
    strangers = []
    for _ in range(5):
        s = from_addr("127.0.0.10")
        s.sendall(s2s_header("remote.fake", "a.fake"))
        strangers.append((s, Reader(s)))
    got = [stream_error_of(r, 2) for _, r in strangers]
    check("... while a non-backend address gets policy-violation past 3", got.count("policy-violation") == 2, got)
    for s, _ in many + strangers:
        s.close()


def ctl_cases():
    """fedhubctl backends; returns its rows by backend name."""
    out = subprocess.run([FEDHUBCTL, "-s", CTL, "--json", "backends"], capture_output=True, text=True, timeout=10)
    try:
        j = json.loads(out.stdout)
    except ValueError:
        j = {}
    rows = {b["name"]: b for b in j.get("backends", [])}
    check("fedhubctl backends lists each backend with its domains and links",
          rows.get("pros", {}).get("domains") == 2 and rows.get("pros", {}).get("links_up", 0) >= 1 and
          rows.get("solo", {}).get("links_up", 0) >= 2 and rows.get("down", {}).get("connect") == "127.0.0.1:%d" % DOWN,
          out.stdout[:600] + out.stderr)
    links = [l for l in j.get("links", []) if l.get("direction") == "backend"]
    check("... and its internal links with their authenticated domains",
          any(sorted(l.get("remote", [])) == ["a.fake", "b.fake"] and l.get("local") == ["remote.fake"]
              for l in links), links)
    return rows


def metrics_cases(rows):
    m = metrics(HTTP)
    check("metrics: stanzas relayed to the backend", m.get('fedhub_backend_stanzas_in_total{backend="pros"}', 0) >= 23,
          {k: v for k, v in m.items() if "backend" in k})
    check("metrics: stanzas from the backend", m.get('fedhub_backend_stanzas_out_total{backend="pros"}', 0) >= 1)
    check("metrics: the down backend's bounce", m.get('fedhub_backend_bounced_total{backend="down"}', 0) >= 1)
    check("metrics: links up", m.get('fedhub_backend_links_up{backend="pros"}', 0) >= 1)
    check("metrics: nothing queued now", m.get('fedhub_backend_queued{backend="down"}', -1) == 0)
    # README's metrics table names the per-backend series: each is published for every [backend]
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
    with open(readme) as f:
        documented = sorted({n for line in f if line.startswith("| `fedhub_backend_")
                             for n in re.findall(r"`(fedhub_backend_[a-z_]+)`", line)})
    missing = ['%s{backend="%s"}' % (n, b) for n in documented for b in ("pros", "down", "solo", "sec")
               if '%s{backend="%s"}' % (n, b) not in m]
    check("metrics: every fedhub_backend_* name README documents is published per backend",
          len(documented) >= 6 and not missing, (documented, missing))
    # fedhubctl backends shows the same sums (nothing flows now)
    diff = [(b, k, rows[b].get(k), m.get('fedhub_backend_%s{backend="%s"}' % (n, b)))
            for b in ("pros", "down", "solo", "sec") if b in rows
            for k, n in (("links_up", "links_up"), ("queued", "queued"), ("stanzas_in", "stanzas_in_total"),
                         ("stanzas_out", "stanzas_out_total"), ("bounced", "bounced_total"))
            if rows[b].get(k) != m.get('fedhub_backend_%s{backend="%s"}' % (n, b))]
    check("fedhubctl backends agrees with /metrics for every backend", len(rows) == 4 and not diff, diff)


if __name__ == "__main__":
    main()
