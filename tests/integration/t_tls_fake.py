#!/usr/bin/env python3
"""TLS on fedhub's s2s links against scripted peers using Python's ssl module
(OpenSSL): STARTTLS required, SASL EXTERNAL both ways, XEP-0344, direct TLS
(XEP-0368), refusals. Certificates come from a throw-away CA made here."""
import os, re, signal, socket, ssl, subprocess, sys, tempfile, time, warnings
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakepeer import Component, RemoteServer, Reader, attr

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FEDHUB = os.environ.get("FEDHUB", os.path.join(ROOT, "fedhub"))
S2S, S2STLS, COMP, HTTP, REMOTE = 24369, 24370, 24447, 24380, 24371
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok " if cond else "not ok ") + name + ("" if cond else "  # " + str(detail)[:300]), flush=True)


def sh(*a):
    subprocess.run(a, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_pki(d):
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", d + "/ca.key", "-out", d + "/ca.pem", "-days", "2", "-subj", "/CN=fedhub test CA",
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    for name, sans in (("hub", "DNS:echo.fake,DNS:hub.fake"), ("remote", "DNS:remote.fake"),
                       ("wrong", "DNS:other.fake")):
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", "%s/%s.key" % (d, name), "-out", "%s/%s.csr" % (d, name), "-subj", "/CN=" + name)
        open("%s/%s.ext" % (d, name), "w").write("subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" % sans)
        sh("openssl", "x509", "-req", "-in", "%s/%s.csr" % (d, name), "-CA", d + "/ca.pem", "-CAkey", d + "/ca.key",
           "-CAcreateserial", "-out", "%s/%s.pem" % (d, name), "-days", "2", "-extfile", "%s/%s.ext" % (d, name))


def ctx(d, cert, server):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    c.load_verify_locations(d + "/ca.pem")
    if cert:
        c.load_cert_chain("%s/%s.pem" % (d, cert), "%s/%s.key" % (d, cert))
    if server:
        c.verify_mode = ssl.CERT_OPTIONAL
    return c


def stream_error_of(r):
    try:
        while True:
            el = r.element(5)
            if el.startswith("<stream:error"):
                m = re.search(r"<([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'", el)
                return m.group(1) if m else el
    except (EOFError, OSError) as e:
        return "closed " + str(e)


def main():
    tmp = tempfile.mkdtemp(prefix="fedhub-tls-")
    make_pki(tmp)
    conf = os.path.join(tmp, "hub.conf")
    open(conf, "w").write("""
[hub]
workers 2
domain hub.fake
listen s2s 127.0.0.1:%d tls required
listen s2s-tls 127.0.0.1:%d
listen component 127.0.0.1:%d
http 127.0.0.1:%d
log_level debug
ca_file %s/ca.pem
connect_timeout 3
s2s_tls required
[domain echo.fake]
cert %s/hub.pem
key %s/hub.key
[component echo.fake]
secret s3cret
[route remote.fake]
connect 127.0.0.1:%d
tls required
""" % (S2S, S2STLS, COMP, HTTP, tmp, tmp, tmp, REMOTE))
    log = open(os.path.join(tmp, "hub.log"), "w")
    hub = subprocess.Popen([FEDHUB, "-c", conf], stderr=log, stdout=log)
    rs = None
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", COMP), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        rs = RemoteServer("remote.fake", REMOTE, tls_server=ctx(tmp, "remote", True))
        run(tmp, rs)
    finally:
        if rs:
            rs.close()
        hub.send_signal(signal.SIGTERM)
        try:
            rc = hub.wait(5)
        except subprocess.TimeoutExpired:
            hub.kill()
            rc = "timeout"
        check("hub exits 0 on SIGTERM", rc == 0, rc)
        log.close()
        if not all(results):
            print(open(os.path.join(tmp, "hub.log")).read()[-5000:])
        subprocess.call(["rm", "-rf", tmp])
    print("%d passed, %d failed" % (results.count(True), results.count(False)))
    sys.exit(0 if all(results) else 1)


def run(tmp, rs):
    c = Component(COMP, "echo.fake", "s3cret")

    s = socket.create_connection(("127.0.0.1", S2S), timeout=5)
    r = Reader(s)
    s.sendall(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
              b"xmlns:db='jabber:server:dialback' from='remote.fake' to='echo.fake' version='1.0'>")
    r.stream_header()
    feats = r.element()
    check("STARTTLS offered as required, nothing else before it",
          "<required/>" in feats and "dialback" not in feats and "mechanisms" not in feats, feats)
    s.sendall(b"<db:result from='remote.fake' to='echo.fake'>abc</db:result>")
    check("dialback before STARTTLS when required: policy-violation", stream_error_of(r) == "policy-violation")

    o = rs.connect_out(S2S, "echo.fake", tls=ctx(tmp, "remote", False))
    check("after STARTTLS, EXTERNAL offered for a valid certificate", "EXTERNAL" in o.features, o.features)
    check("inbound SASL EXTERNAL succeeds", o.sasl_external("remote.fake") == "success")
    o.send("<message from='u@remote.fake' to='bot@echo.fake' id='t1'><body>over tls</body></message>")
    el = c.recv()
    check("stanza over TLS reaches the component", attr(el, "id") == "t1", el)

    o2 = rs.connect_out(S2S, "echo.fake", tls=ctx(tmp, "wrong", False))
    check("no EXTERNAL for a certificate that does not name the domain", "EXTERNAL" not in o2.features, o2.features)
    check("dialback still possible as the fallback", "dialback" in o2.features, o2.features)
    res = o2.auth("echo.fake", timeout=15)
    check("dialback fallback over TLS verifies through the authoritative server", res == "valid", res)

    o3 = rs.connect_out(S2S, "echo.fake", tls=ctx(tmp, "remote", False))
    res = o3.auth("echo.fake", timeout=15)
    check("XEP-0344: dialback with a proving certificate is valid", res == "valid", res)

    o4 = rs.connect_out(S2STLS, "echo.fake", tls=ctx(tmp, "remote", False), direct=True)
    check("direct TLS listener (XEP-0368) offers EXTERNAL", "EXTERNAL" in o4.features, o4.features)

    bad = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bad.load_verify_locations(tmp + "/ca.pem")
    bad.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        bad.minimum_version = ssl.TLSVersion.TLSv1_1
        bad.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        rs.connect_out(S2STLS, "echo.fake", tls=bad, direct=True)
        check("TLS 1.1 refused by the hub", False, "handshake succeeded")
    except ssl.SSLError as e:
        # the hub's alert (protocol version), not a local refusal to offer 1.1
        check("TLS 1.1 refused by the hub", "NO_PROTOCOLS_AVAILABLE" not in str(e), e)
    except (OSError, EOFError) as e:
        check("TLS 1.1 refused by the hub", True)

    c.send("<message from='bot@echo.fake' to='u@remote.fake' id='t2'><body>out over tls</body></message>")
    deadline = time.time() + 10
    while time.time() < deadline and not any("id='t2'" in m for m in rs.messages()):
        time.sleep(0.05)
    check("outbound link: STARTTLS, then SASL EXTERNAL with the hub's certificate",
          "echo.fake" in rs.sasl_ok and any("id='t2'" in m for m in rs.messages()), (rs.sasl_ok, rs.messages()))


if __name__ == "__main__":
    main()
