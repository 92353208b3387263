#!/usr/bin/env python3
"""TLS on fedhub's s2s links against scripted peers using Python's ssl module
(OpenSSL): STARTTLS required, SASL EXTERNAL both ways, XEP-0344, direct TLS
(XEP-0368), refusals. Certificates come from a throw-away CA made here."""
import os, socket, ssl, sys, tempfile, time, warnings
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from fakepeer import Component, RemoteServer, Reader, attr, s2s_header, stream_error_of  # noqa: E402
from fhit import PKI  # noqa: E402
from hubproc import Hub, Results  # noqa: E402

S2S, S2STLS, COMP, HTTP, REMOTE = 24369, 24370, 24447, 24380, 24371
T = Results()
check = T.check


def main():
    tmp = tempfile.mkdtemp(prefix="fedhub-tls-")
    pki = PKI(tmp)
    pki.leaves([("hub", ["echo.fake", "hub.fake"]), ("remote", ["remote.fake"]), ("wrong", ["other.fake"])])
    hub = Hub("""
[hub]
workers 2
domain hub.fake
listen s2s 127.0.0.1:%d tls required
listen s2s-tls 127.0.0.1:%d
listen component 127.0.0.1:%d
http 127.0.0.1:%d
log_level debug
ca_file %s
connect_timeout 3
s2s_tls required
[domain echo.fake]
cert %s
key %s
[component echo.fake]
secret s3cret
[route remote.fake]
connect 127.0.0.1:%d
tls required
""" % (S2S, S2STLS, COMP, HTTP, pki.ca, pki.cert("hub"), pki.key, REMOTE), tmp, ready_ports=(S2S, S2STLS, COMP, HTTP))

    def cases(closing):
        rs = RemoteServer("remote.fake", REMOTE, tls_server=pki.server_context("remote"))
        closing.append(rs)
        run(pki, rs, hub)
    T.run_script(lambda: ("hub starts", hub.start(), "see its log"), cases, hub.finish)


def run(pki, rs, hub):
    c = Component(COMP, "echo.fake", "s3cret")

    s = socket.create_connection(("127.0.0.1", S2S), timeout=5)
    r = Reader(s)
    s.sendall(s2s_header("remote.fake", "echo.fake"))
    r.stream_header()
    feats = r.element()
    check("STARTTLS offered as required, nothing else before it",
          "<required/>" in feats and "dialback" not in feats and "mechanisms" not in feats, feats)
    s.sendall(b"<db:result from='remote.fake' to='echo.fake'>abc</db:result>")
    got = stream_error_of(r)
    check("dialback before STARTTLS when required: policy-violation", got == "policy-violation", got)

    o = rs.connect_out(S2S, "echo.fake", tls=pki.client_context("remote"))
    check("after STARTTLS, EXTERNAL offered for a valid certificate", "EXTERNAL" in o.features, o.features)
    check("inbound SASL EXTERNAL succeeds", o.sasl_external("remote.fake") == "success")
    o.send("<message from='u@remote.fake' to='bot@echo.fake' id='t1'><body>over tls</body></message>")
    el = c.recv()
    check("stanza over TLS reaches the component", attr(el, "id") == "t1", el)

    o2 = rs.connect_out(S2S, "echo.fake", tls=pki.client_context("wrong"))
    check("no EXTERNAL for a certificate that does not name the domain", "EXTERNAL" not in o2.features, o2.features)
    check("dialback still possible as the fallback", "dialback" in o2.features, o2.features)
    res = o2.auth("echo.fake", timeout=15)
    check("dialback fallback over TLS verifies through the authoritative server", res == "valid", res)

    o3 = rs.connect_out(S2S, "echo.fake", tls=pki.client_context("remote"))
    res = o3.auth("echo.fake", timeout=15)
    check("XEP-0344: dialback with a proving certificate is valid", res == "valid", res)

    o4 = rs.connect_out(S2STLS, "echo.fake", tls=pki.client_context("remote"), direct=True)
    check("direct TLS listener (XEP-0368) offers EXTERNAL", "EXTERNAL" in o4.features, o4.features)

    bad = pki.client_context()
    bad.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        bad.minimum_version = ssl.TLSVersion.TLSv1_1
        bad.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        rs.connect_out(S2STLS, "echo.fake", tls=bad, direct=True)
        got = "handshake succeeded"
    except ssl.SSLError as e:
        # the hub's alert (protocol version), not a local refusal to offer 1.1
        got = None if "NO_PROTOCOLS_AVAILABLE" not in str(e) else "not offered by this client: %s" % e
    except (OSError, EOFError) as e:
        # the hub may drop the connection instead of sending an alert: a
        # refusal only if it is still there to refuse the next one
        got = None if hub.alive() else "the hub died: %s" % e
    check("TLS 1.1 refused by the hub", got is None and hub.alive(), got or "the hub died")

    c.send("<message from='bot@echo.fake' to='u@remote.fake' id='t2'><body>out over tls</body></message>")
    deadline = time.time() + 10
    while time.time() < deadline and not any("id='t2'" in m for m in rs.messages()):
        time.sleep(0.05)
    check("outbound link: STARTTLS, then SASL EXTERNAL with the hub's certificate",
          "echo.fake" in rs.sasl_ok and any("id='t2'" in m for m in rs.messages()), (rs.sasl_ok, rs.messages()))


if __name__ == "__main__":
    main()
