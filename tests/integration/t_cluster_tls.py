#!/usr/bin/env python3
"""Node links over TLS (README "Cluster", `node_tls CERT KEY CA`): nodes A
and B with certificates from one CA, node C with a certificate from another
CA, one real redis-server (the registry).

1. check: `fedhub -t` accepts the node_tls configuration and rejects one
   whose key does not match its certificate.
2. forward: 2,000 stanzas from an s2s link on A reach the component on B
   over the node link, in order, none bounced; both nodes show the node link
   authenticated with the cluster secret over TLSv1.3 in /metrics and log it.
3. foreign CA: A forwarding to C's component fails (neither side's chain
   verifies): no stanza reaches C, both count TLS failures. A scripted
   TLS client with a certificate of the other CA, or none, gets no stream
   from B; with a certificate of the right CA it gets B's stream header.
4. plaintext: a node speaking the node protocol in the clear to B gets no
   stream and the link is closed; one that sends nothing is closed at
   connect_timeout.

Bounded by an alarm; the hubs, Redis and every socket are closed here."""
import os, shutil, signal, socket, ssl, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from fakepeer import RemoteServer, Reader, attr, NS_STREAM, counted_component, sender, in_order
from fhit_pki import PKI
from cluster import Redis
from hubproc import Hub, Results, metrics, FEDHUB

A = dict(s2s=27510, comp=27511, http=27512, node=27513)
B = dict(s2s=27520, comp=27521, http=27522, node=27523)
C = dict(s2s=27530, comp=27531, http=27532, node=27533)
REMOTE, NODNS, REDIS = 27540, 27553, 27579
SECRET = "node-tls-test-secret-0123456789abcdef01"
CONF = """
[hub]
workers 2
domain hub.fake
listen s2s 127.0.0.1:%(s2s)d
listen component 127.0.0.1:%(comp)d
http 127.0.0.1:%(http)d
log_level info
connect_timeout 3
stall_timeout 10s
dns_server 127.0.0.1:%(dns)d
[component echo.fake]
secret s3cret
[component other.fake]
secret s3cret
[route remote.fake]
connect 127.0.0.1:%(remote)d
[cluster]
redis 127.0.0.1:%(redis)d
node_id %(id)s
node_listen 127.0.0.1:%(node)d
cluster_secret_file %(secret)s
node_tls %(cert)s %(key)s %(ca)s
lease_time 3s
redis_timeout 300ms
"""
TLS13 = 'fedhub_links_authenticated{direction="node",auth="cluster_secret",tls="TLSv1.3"}'
T = Results()


def conf(ports, nid, secret, cert, key, ca):
    return CONF % dict(ports, dns=NODNS, remote=REMOTE, redis=REDIS, id=nid, secret=secret, cert=cert, key=key,
                       ca=ca)


def log_text(hub):
    text = ""
    for path in hub.logs:
        with open(path, errors="replace") as f:
            text += f.read()
    return text


def bounces(rs, prefix):
    return [m for m in rs.messages() if "type='error'" in m and (attr(m, "id") or "").startswith(prefix)]


def check_case(tmp, text, pki, other):
    good = os.path.join(tmp, "check-good.conf")
    with open(good, "w") as f:
        f.write(text)
    r = subprocess.run([FEDHUB, "-t", "-c", good], capture_output=True, text=True, timeout=20)
    T.check("check: fedhub -t accepts node_tls", r.returncode == 0, (r.stdout + r.stderr)[-400:])
    # A's certificate with the other PKI's key: they do not match
    bad_key = os.path.join(tmp, "other.key")
    shutil.copy(other.key, bad_key)
    bad = os.path.join(tmp, "check-bad.conf")
    with open(bad, "w") as f:
        f.write(text.replace(" " + pki.key + " ", " " + bad_key + " "))
    r = subprocess.run([FEDHUB, "-t", "-c", bad], capture_output=True, text=True, timeout=20)
    T.check("check: fedhub -t rejects a node_tls key that is not the certificate's",
            r.returncode != 0 and "node_tls" in r.stdout + r.stderr, (r.returncode, (r.stdout + r.stderr)[-400:]))


def wait_member(reg, key, member, within=15):
    deadline = time.time() + within
    while time.time() < deadline and member not in reg.members(key):
        time.sleep(0.1)
    return member in reg.members(key)


def forward_case(rs, reg, a, cnt):
    T.check("forward: B's component is in Redis", wait_member(reg, "fh:comp:echo.fake", "b"),
            reg.members("fh:comp:echo.fake"))
    o = rs.connect_out(A["s2s"], "echo.fake")
    T.check("forward: the s2s link on A is authenticated", o.auth("echo.fake") == "valid")
    deadline, k = time.time() + 15, 0
    while time.time() < deadline and not [i for i in cnt.ids() if i.startswith("w")]:
        o.send(("<message from='u@remote.fake' to='c@echo.fake' id='w%d'><body>probe</body></message>" % k).encode())
        k += 1
        time.sleep(0.2)
    T.check("forward: a stanza on A reaches the component on B over TLS",
            [i for i in cnt.ids() if i.startswith("w")])
    n = 2000
    done = sender(o.s, ["<message from='u@remote.fake' to='c@echo.fake' id='f%d'><body>%s</body></message>"
                        % (i, "x" * 200) for i in range(n)])
    cnt.wait(n + k, 30)
    time.sleep(0.3)
    got = [i for i in cnt.ids() if i.startswith("f")]
    T.check("forward: %d of %d delivered by B's component" % (len(got), n), len(got) == n and len(set(got)) == n,
            len(got))
    T.check("forward: in order", in_order(got, "f"))
    T.check("forward: nothing bounced", not bounces(rs, "f"), bounces(rs, "f")[:1])
    T.check("forward: the sender was read to the end", done.wait(5))
    ma, mb = metrics(A["http"]), metrics(B["http"])
    T.check("forward: A's node link is authenticated over TLSv1.3", ma.get(TLS13, 0) >= 1,
            [x for x in ma if "links_authenticated" in x])
    T.check("forward: B's node link is authenticated over TLSv1.3", mb.get(TLS13, 0) >= 1,
            [x for x in mb if "links_authenticated" in x])
    T.check("forward: no node link in the clear",
            not ma.get('fedhub_links_authenticated{direction="node",auth="cluster_secret",tls="none"}', 0))
    T.check("forward: A logs the link up over TLSv1.3", "node link to b up, TLSv1.3" in log_text(a),
            log_text(a)[-300:])
    o.close()


def tls_client(pki, cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the client side is not what is tested here
    if cert:
        ctx.load_cert_chain(pki.cert(cert), pki.key)
    return ctx


def header_from_b(ctx):
    """Opens a node stream to B over TLS; returns B's stream header, or why there is none."""
    s = socket.create_connection(("127.0.0.1", B["node"]), timeout=5)
    try:
        t = ctx.wrap_socket(s)
        t.sendall(("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='%s' from='x9' "
                   "to='b' id='feed09' version='1.0'>" % NS_STREAM).encode())
        return Reader(t).stream_header()
    except (OSError, EOFError, ssl.SSLError, RuntimeError) as e:
        return "refused: %r" % e
    finally:
        s.close()


def foreign_case(rs, reg, pki, other, a, c):
    fa, fc = metrics(A["http"]).get("fedhub_tls_failures_total", 0), metrics(C["http"]).get(
        "fedhub_tls_failures_total", 0)
    s, cnt = counted_component(C["comp"], "other.fake")
    T.check("foreign: C's component is in Redis", wait_member(reg, "fh:comp:other.fake", "c"),
            reg.members("fh:comp:other.fake"))
    o = rs.connect_out(A["s2s"], "other.fake")
    T.check("foreign: the s2s link on A is authenticated", o.auth("other.fake") == "valid")
    for k in range(5):
        o.send(("<message from='u@remote.fake' to='c@other.fake' id='g%d'><body>x</body></message>" % k).encode())
    time.sleep(3)
    T.check("foreign: nothing reaches C's component", not cnt.ids(), cnt.ids()[:3])
    ma, mc = metrics(A["http"]), metrics(C["http"])
    T.check("foreign: A counts failed TLS handshakes to C",
            ma.get("fedhub_tls_failures_total", 0) > fa, (fa, ma.get("fedhub_tls_failures_total")))
    T.check("foreign: C counts failed TLS handshakes from A",
            mc.get("fedhub_tls_failures_total", 0) > fc, (fc, mc.get("fedhub_tls_failures_total")))
    T.check("foreign: A logs why", "node link to c: TLS failed" in log_text(a), log_text(a)[-300:])
    o.close()
    cnt.closed = True
    s.close()
    f0 = metrics(B["http"]).get("fedhub_tls_failures_total", 0)
    h = header_from_b(tls_client(pki, "x"))
    T.check("foreign: a client certificate of B's CA gets B's stream header", attr(h + ">", "from") == "b", h)
    h = header_from_b(tls_client(other, "x"))
    T.check("foreign: a client certificate of another CA gets no stream from B", h.startswith("refused"), h)
    h = header_from_b(tls_client(pki))
    T.check("foreign: no client certificate gets no stream from B", h.startswith("refused"), h)
    time.sleep(0.3)
    f1 = metrics(B["http"]).get("fedhub_tls_failures_total", 0)
    T.check("foreign: B counts the two refused handshakes", f1 - f0 == 2, (f0, f1))


def plaintext_case():
    f0 = metrics(B["http"]).get("fedhub_tls_failures_total", 0)
    s = socket.create_connection(("127.0.0.1", B["node"]), timeout=5)
    s.sendall(("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='%s' from='x8' "
               "to='b' id='feed08' version='1.0'>" % NS_STREAM).encode())
    data, closed = b"", False
    deadline = time.time() + 5
    try:
        while time.time() < deadline:
            d = s.recv(4096)
            if not d:
                closed = True
                break
            data += d
    except OSError:
        closed = True
    s.close()
    T.check("plaintext: a node in the clear gets no stream from B", b"<stream:stream" not in data, data[:200])
    T.check("plaintext: ... and B closes the link", closed)
    time.sleep(0.3)
    T.check("plaintext: B counts the failed handshake",
            metrics(B["http"]).get("fedhub_tls_failures_total", 0) > f0)
    # a peer that never starts the handshake is closed at connect_timeout (3s)
    s = socket.create_connection(("127.0.0.1", B["node"]), timeout=10)
    t0, closed = time.time(), False
    try:
        closed = s.recv(1) == b""
    except OSError:
        closed = True
    s.close()
    T.check("silent: B closes a node link with no TLS handshake (%.1fs)" % (time.time() - t0),
            closed and time.time() - t0 < 9.5)


def main():
    signal.alarm(200)
    tmp = tempfile.mkdtemp(prefix="fh-ctls-")
    secret = os.path.join(tmp, "cluster.key")
    with open(secret, "w") as f:
        f.write(SECRET + "\n")
    os.chmod(secret, 0o600)
    pki = PKI(os.path.join(tmp, "good"))
    other = PKI(os.path.join(tmp, "other"))
    ca_crt, _ = pki.leaf("a", ["a.node.fake"])
    cb_crt, _ = pki.leaf("b", ["b.node.fake"])
    pki.leaf("x", ["x.node.fake"])
    cc_crt, _ = other.leaf("c", ["c.node.fake"])
    other.leaf("x", ["x.node.fake"])
    ta = conf(A, "a", secret, ca_crt, pki.key, pki.ca)
    check_case(tmp, ta, pki, other)
    global REG
    REG = Redis(tmp, REDIS)
    if not T.check("redis-server starts", REG.start()):
        T.exit()
    rs = RemoteServer("remote.fake", REMOTE)
    hubs = []
    for nid, ports, text in (("a", A, ta), ("b", B, conf(B, "b", secret, cb_crt, pki.key, pki.ca)),
                             ("c", C, conf(C, "c", secret, cc_crt, other.key, other.ca))):
        os.mkdir(os.path.join(tmp, nid))
        hubs.append(Hub(text, os.path.join(tmp, nid), ready_ports=(ports["s2s"], ports["comp"], ports["node"])))
    a, b, c = hubs
    T.check("three nodes with node_tls start and listen", all(x.start() for x in hubs))
    try:
        sb, cnt = counted_component(B["comp"], "echo.fake")
        forward_case(rs, REG, a, cnt)
        cnt.closed = True
        sb.close()
        foreign_case(rs, REG, pki, other, a, c)
        plaintext_case()
    except Exception as e:  # a failed step is a failure, not a crash of the script
        T.check("no step raised", False, repr(e))
    rs.close()
    for x in reversed(hubs):
        x.finish(T)
    REG.kill()
    if not (os.environ.get("FEDHUB_KEEP_LOGS") or os.environ.get("FHIT_KEEP")):
        shutil.rmtree(tmp, ignore_errors=True)
    T.exit()


if __name__ == "__main__":
    main()
