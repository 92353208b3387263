#!/usr/bin/env python3
"""fedhub behind a real HAProxy running examples/haproxy.cfg (lib/cluster.py):
PROXY protocol v2 (the example's send-proxy-v2) and v1 (the same file with
send-proxy), plain s2s and direct TLS, the real client's address in the
node's log and in `fedhubctl links`; a PROXY header from a source that is
not a balancer refused; a missing header closes the link, also on the
direct TLS listener; TLS session tickets: a link resumes on the node that
issued the ticket, and on another node when the nodes share their ticket
keys (cluster), not when they do not.

Remote servers are scripted (lib/fakepeer.py) and bind 127.0.0.5 and other
loopback addresses; HAProxy reaches the nodes from 127.0.0.1, the only
address in their proxy_from. Ports 27200-27299 (lib/cluster.py's plan)."""
import os, socket, ssl, struct, sys, tempfile, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from cluster import CLIENT_ADDR, STRANGER_ADDR, Cluster, cluster_supported  # noqa: E402
from fakepeer import Component, RemoteServer, Reader, attr, s2s_header, stream_id  # noqa: E402
from fhit import PKI  # noqa: E402
from hubproc import Results  # noqa: E402

BASE = 27200
REMOTE = BASE + 60          # remote.fake's authoritative server (dialback verify)
T = Results()
check = T.check


def main():
    timer = threading.Timer(170, lambda: os._exit(3))
    timer.daemon = True
    timer.start()
    tmp = tempfile.mkdtemp(prefix="fedhub-clha-")
    pki = PKI(tmp)
    pki.leaves([("hub", ["echo.fake", "hub.fake"]), ("remote", ["remote.fake"])])
    cluster = os.environ.get("CLUSTER_HAPROXY_STANDALONE") != "1" and cluster_supported(BASE)
    why = "CLUSTER_HAPROXY_STANDALONE=1" if os.environ.get("CLUSTER_HAPROXY_STANDALONE") == "1" else \
        "this fedhub refuses lib/cluster.py's [cluster]"
    print("# nodes %s" % ("clustered (Redis)" if cluster else "standalone: " + why), flush=True)
    cl = Cluster(tmp, BASE, nodes=2, pki=pki, proxy_v1=True, cluster=cluster,
                 extra_conf="[route remote.fake]\nconnect 127.0.0.1:%d\n" % REMOTE)

    def cases(closing):
        rs = RemoteServer("remote.fake", REMOTE, secret="unused", tls_server=pki.server_context("remote"))
        closing.append(rs)
        run(cl, pki, rs, cluster)
    T.run_script(lambda: ("redis, 2 nodes and HAProxy (examples/haproxy.cfg) start", cl.start(), cl.why), cases,
                 cl.finish)


def components(cl):
    return {n.i: Component(n.ports.comp, "echo.fake", "s3cret") for n in cl.nodes}


def delivered(comps, mid, within=5):
    """The node whose component got the message with id mid, or None."""
    deadline = time.time() + within
    while time.time() < deadline:
        for i, c in comps.items():
            try:
                el = c.recv(timeout=0.2)
            except (socket.timeout, EOFError, OSError):
                continue
            if attr(el, "id") == mid:
                return i
    return None


def node_sees(cl, i, addr, within=3):
    """Node i's log names addr as a connection's peer, and so does
    `fedhubctl links` (as the peer of an inbound link)."""
    deadline = time.time() + within
    log = links = False
    while time.time() < deadline and not (log and links):
        log = (" %s " % addr) in cl.node(i).log_text() or (" %s]" % addr) in cl.node(i).log_text()
        links = any(l.get("direction") == "in" and l.get("peer", "").startswith(addr + ":")
                    for l in cl.node(i).links())
        time.sleep(0.1)
    return log, links


def through(cl, rs, front, source, comps, mid, tls=None):
    """A remote server at `source` dials the balancer's frontend, dialback
    (or SASL EXTERNAL over direct TLS), then one message: which node got it."""
    o = rs.connect_out(front, "echo.fake", source=source, tls=tls, direct=tls is not None)
    if tls is not None:
        res = o.sasl_external("remote.fake")
        ok = res == "success"
    else:
        res = o.auth("echo.fake", timeout=10)
        ok = res == "valid"
    if not ok:
        return o, None, res
    o.send("<message from='u@remote.fake' to='bot@echo.fake' id='%s'><body>via haproxy</body></message>" % mid)
    return o, delivered(comps, mid), res


def v2_header(src, sport, dst, dport):
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack(">H", 12) + socket.inet_aton(src) +
            socket.inet_aton(dst) + struct.pack(">HH", sport, dport))


def closed_silently(s, within=3):
    """The hub closes s without sending a byte: (True, b'') or (False, what came)."""
    got = b""
    s.settimeout(within)
    try:
        while True:
            d = s.recv(4096)
            if not d:
                return got == b"", got
            got += d
    except socket.timeout:
        return False, got or b"(still open)"
    except OSError:
        return got == b"", got


def tls_handshake(pki, s):
    """'refused' unless a TLS handshake on s completes. (wrap_socket alone
    does not say: on a socket the peer has already reset, getpeername fails
    and Python skips the handshake without an error.)"""
    try:
        t = pki.client_context().wrap_socket(s, server_hostname="echo.fake", do_handshake_on_connect=False)
        t.do_handshake()
        got = "handshake completed (%s)" % t.version()
        t.close()
        return got
    except (ssl.SSLError, OSError):
        return "refused"


def run(cl, pki, rs, cluster):
    comps = components(cl)
    keep = []

    # 1. PROXY v2 through HAProxy: the node sees the client, not the balancer
    o, node, res = through(cl, rs, cl.haproxy_s2s, CLIENT_ADDR, comps, "v2-1")
    keep.append(o)
    if check("PROXY v2 through HAProxy: dialback, the message reaches a node's component", node, res):
        log, links = node_sees(cl, node, CLIENT_ADDR)
        check("PROXY v2: the node's log names the client %s" % CLIENT_ADDR, log)
        check("PROXY v2: fedhubctl links shows the client %s as the peer" % CLIENT_ADDR, links,
              cl.node(node).links())

    # 2. PROXY v1 (the example with send-proxy)
    o, node, res = through(cl, rs, cl.haproxy_v1_s2s, "127.0.0.7", comps, "v1-1")
    keep.append(o)
    if check("PROXY v1 through HAProxy: dialback, the message reaches a node's component", node, res):
        log, links = node_sees(cl, node, "127.0.0.7")
        check("PROXY v1: the node's log and fedhubctl links name the client 127.0.0.7", log and links,
              (log, links))

    # 3. direct TLS (XEP-0368) through HAProxy: the header, then the ClientHello
    o, node, res = through(cl, rs, cl.haproxy_tls, "127.0.0.8", comps, "tls-1", tls=pki.client_context("remote"))
    keep.append(o)
    if check("direct TLS through HAProxy: SASL EXTERNAL, the message reaches a node's component", node, res):
        log, links = node_sees(cl, node, "127.0.0.8")
        check("direct TLS: the node's log and fedhubctl links name the client 127.0.0.8", log and links,
              (log, links))
    o, node, res = through(cl, rs, cl.haproxy_v1_tls, "127.0.0.9", comps, "tls-v1",
                           tls=pki.client_context("remote"))
    keep.append(o)
    check("direct TLS through HAProxy with PROXY v1", node, res)

    # 4. a PROXY header from a source that is not a balancer: closed, counted
    n1 = cl.node(1)
    before = n1.metrics().get("fedhub_proxy_untrusted_total", 0)
    s = socket.create_connection(("127.0.0.1", n1.ports.s2s), timeout=5, source_address=(STRANGER_ADDR, 0))
    s.sendall(v2_header("192.0.2.1", 40000, "127.0.0.1", n1.ports.s2s) + s2s_header())
    ok, got = closed_silently(s)
    check("a PROXY header from %s (not in proxy_from) is refused: closed, nothing said" % STRANGER_ADDR, ok, got)
    s.close()
    after = n1.metrics().get("fedhub_proxy_untrusted_total", 0)
    check("... and counted in fedhub_proxy_untrusted_total", after - before == 1, (before, after))
    s = socket.create_connection(("127.0.0.1", n1.ports.s2s_tls), timeout=5, source_address=(STRANGER_ADDR, 0))
    s.sendall(b"PROXY TCP4 192.0.2.1 127.0.0.1 40000 5270\r\n")
    got = tls_handshake(pki, s)
    check("... also on the direct TLS listener", got == "refused", got)

    # 5. the header missing where it is required: closed (from the balancer's own address)
    s = socket.create_connection(("127.0.0.1", n1.ports.s2s), timeout=5)
    s.sendall(s2s_header())
    ok, got = closed_silently(s)
    check("no PROXY header on a proxy_protocol listener: closed, nothing said", ok, got)
    s.close()
    s = socket.create_connection(("127.0.0.1", n1.ports.s2s_tls), timeout=5)
    got = tls_handshake(pki, s)
    check("no PROXY header on a proxy_protocol direct TLS listener: the ClientHello is refused", got == "refused",
          got)
    # the listener without proxy_protocol takes the same stream as is
    s = socket.create_connection(("127.0.0.1", n1.ports.s2s_direct), timeout=5)
    r = Reader(s)
    s.sendall(s2s_header())
    check("the same stream on a listener without proxy_protocol is answered", "id=" in r.stream_header())
    s.close()

    # 6. TLS resumption: a ticket from node 1, presented to node 1 and to node 2
    resumption(cl, pki, cluster)
    for o in keep:
        o.close()
    for c in comps.values():
        c.close()


def tls_stream(port, ctx, session=None):
    """A direct TLS s2s stream (SNI echo.fake), read up to the features so a
    TLS 1.3 ticket has arrived; returns (session, reused)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t = ctx.wrap_socket(s, server_hostname="echo.fake", session=session)
    r = Reader(t)
    t.sendall(s2s_header())
    r.stream_header()
    r.element()
    sess, reused = t.session, t.session_reused
    try:
        t.sendall(b"</stream:stream>")
    except OSError:
        pass
    t.close()
    return sess, reused


def resumption(cl, pki, cluster):
    ctx = pki.client_context("remote")
    n1, n2 = cl.node(1), cl.node(2)
    m1 = n1.metrics().get("fedhub_tls_resumptions_total", 0)
    sess, reused = tls_stream(n1.ports.tls_direct, ctx)
    if not check("TLS: a full handshake with node 1 gives a session ticket", sess is not None and sess.has_ticket
                 and not reused, (sess, reused)):
        return
    _, again = tls_stream(n1.ports.tls_direct, ctx, session=sess)
    check("TLS: the ticket resumes the session on node 1", again)
    m1b = n1.metrics().get("fedhub_tls_resumptions_total", 0)
    check("TLS: node 1 counts the resumption in fedhub_tls_resumptions_total", m1b - m1 == 1, (m1, m1b))
    m2 = n2.metrics().get("fedhub_tls_resumptions_total", 0)
    sess, _ = tls_stream(n1.ports.tls_direct, ctx)
    _, other = tls_stream(n2.ports.tls_direct, ctx, session=sess)
    m2b = n2.metrics().get("fedhub_tls_resumptions_total", 0)
    if cluster:
        check("TLS: node 1's ticket resumes the session on node 2 (ticket keys shared by the cluster)", other)
        check("TLS: node 2 counts it", m2b - m2 == 1, (m2, m2b))
    else:
        check("TLS: standalone nodes keep their own ticket keys: node 2 makes a full handshake", not other)
    # TLS 1.2 (a ticket in the NewSessionTicket of the handshake itself)
    ctx12 = pki.client_context("remote")
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    sess, _ = tls_stream(n1.ports.tls_direct, ctx12)
    _, same = tls_stream(n1.ports.tls_direct, ctx12, session=sess)
    check("TLS 1.2: the ticket resumes the session on node 1", same)
    _, other = tls_stream(n2.ports.tls_direct, ctx12, session=sess)
    if cluster:
        check("TLS 1.2: node 1's ticket resumes the session on node 2", other)
    else:
        check("TLS 1.2: standalone, node 2 turns the ticket down and makes a full handshake", not other)


if __name__ == "__main__":
    main()
