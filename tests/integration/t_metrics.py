#!/usr/bin/env python3
"""/metrics tells the truth: exactly N stanzas from a scripted remote server to a
component and M back are counted as N and M (in total, per direction, per
domain, in bytes), links by auth method, the hub's own stanzas (a ping answer,
a bounce) apart, a connection that never opened a stream in the open gauge, the
cap on labelled domains (metrics_domains_max), stream errors by condition with
the domain's last error, certificate expiry, build and process info."""
import os, re, socket, ssl, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from fakepeer import Component, RemoteServer  # noqa: E402
from hubproc import ROOT, Hub, Results  # noqa: E402

S2S, COMP, HTTP, REMOTE = 24401, 24402, 24403, 24404
N, M = 7, 5
CONF = """
[hub]
workers 2
domain hub.mfake
listen s2s 127.0.0.1:%d tls optional
listen component 127.0.0.1:%d
http 127.0.0.1:%d
log_level info
connect_timeout 3
s2s_tls optional
ca_file %s/ca.pem
metrics_domains_max 2
[domain hosted.mfake]
cert %s/hosted.pem
key %s/hosted.key
[component echo.mfake]
secret s3cret
[component idle.mfake]
secret s3cret
[component third.mfake]
secret s3cret
[route remote.mfake]
connect 127.0.0.1:%d
tls off
"""

T = Results()
check = T.check


def scrape():
    return urllib.request.urlopen("http://127.0.0.1:%d/metrics" % HTTP, timeout=3).read().decode()


def samples(body):
    """{'name{labels}': value} with labels sorted as rendered."""
    out = {}
    for m in re.finditer(r"^(fedhub_[a-z_]+(?:\{[^}]*\})?) (\S+)$", body, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def val(name, **labels):
    s = samples(scrape())
    if labels:
        want = set('%s="%s"' % kv for kv in labels.items())
        for k, v in s.items():
            if k.startswith(name + "{") and set(k[len(name) + 1:-1].split(",")) == want:
                return v
        return None
    return s.get(name)


def eventually(name, fn, want, timeout=5):
    """The counters are summed at scrape while workers run: wait for the
    value (bounded), then check it is exactly `want`."""
    deadline = time.time() + timeout
    got = fn()
    while got != want and time.time() < deadline:
        time.sleep(0.05)
        got = fn()
    check(name, got == want, "got %r, want %r" % (got, want))


def check_latency_histogram(body):
    """fedhub_router_latency_seconds is a Prometheus histogram: cumulative
    buckets in increasing le, +Inf equal to _count, a _sum."""
    b = [(float(m.group(1)), float(m.group(2))) for m in
         re.finditer(r'^fedhub_router_latency_seconds_bucket\{le="([^"]+)"\} (\S+)$', body, re.M)]
    s = samples(body)
    les = [le for le, _ in b]
    counts = [c for _, c in b]
    check("router_latency_seconds: buckets in increasing le, +Inf last",
          len(b) > 10 and les == sorted(les) and les[-1] == float("inf"), les[:3] + les[-3:])
    check("router_latency_seconds: cumulative counts", counts == sorted(counts), counts[-5:])
    check("router_latency_seconds: +Inf == _count, a _sum",
          counts and counts[-1] == s.get("fedhub_router_latency_seconds_count") and
          s.get("fedhub_router_latency_seconds_sum", -1) >= 0, (counts[-1:], s.get("fedhub_router_latency_seconds_count")))


def sh(*a):
    subprocess.run(a, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_pki(d):
    """A CA, the hosted domain's certificate (30 days) and a remote server's."""
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", d + "/ca.key", "-out", d + "/ca.pem", "-days", "2", "-subj", "/CN=fedhub test CA",
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    for name, sans in (("hosted", "DNS:hosted.mfake"), ("tremote", "DNS:tremote.mfake")):
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", "%s/%s.key" % (d, name), "-out", "%s/%s.csr" % (d, name), "-subj", "/CN=" + name)
        open("%s/%s.ext" % (d, name), "w").write("subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" % sans)
        sh("openssl", "x509", "-req", "-in", "%s/%s.csr" % (d, name), "-CA", d + "/ca.pem", "-CAkey", d + "/ca.key",
           "-CAcreateserial", "-out", "%s/%s.pem" % (d, name), "-days", "30", "-extfile", "%s/%s.ext" % (d, name))


def main():
    tmp = tempfile.mkdtemp(prefix="fedhub-metrics-")
    make_pki(tmp)
    hub = Hub(CONF % (S2S, COMP, HTTP, tmp, tmp, tmp, REMOTE), tmp, ready_ports=(COMP,))

    def cases(closing):
        time.sleep(0.2)  # the probe connection of hub.start() is closed
        rs = RemoteServer("remote.mfake", REMOTE)
        closing.append(rs)
        run(rs, tmp)
    T.run_script(lambda: ("hub starts", hub.start(), "see its log"), cases, hub.finish)


def run(rs, tmp):
    body = scrape()
    check("HELP and TYPE precede the samples",
          "# HELP fedhub_stanzas_received_total " in body and "# TYPE fedhub_stanzas_received_total counter" in body)
    m = re.search(r'^fedhub_build_info\{version="([^"]*)",wolfssl="[^"]*",aesni="(yes|no)"\} 1$', body, re.M)
    check("build_info names version, wolfSSL and AES-NI", m and m.group(1), body[:200])
    end = subprocess.check_output(["openssl", "x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in",
                                   tmp + "/hosted.pem"]).decode().strip().split("=", 1)[1]
    want = int(time.mktime(time.strptime(end, "%Y-%m-%d %H:%M:%SZ")) - time.timezone)
    check("cert_expiry_seconds is the certificate's notAfter",
          val("fedhub_cert_expiry_seconds", domain="hosted.mfake") == want,
          (val("fedhub_cert_expiry_seconds", domain="hosted.mfake"), want))
    s = samples(body)
    check("process metrics are published",
          s.get("fedhub_process_resident_memory_bytes", 0) > 0 and s.get("fedhub_process_open_fds", 0) > 0
          and s.get("fedhub_process_start_time_seconds", 0) > time.time() - 600
          and "fedhub_process_cpu_seconds_total" in s, {k: v for k, v in s.items() if "process" in k})

    # a connection that never sends a byte is open
    base_in = val("fedhub_connections_open", direction="in")
    raw = socket.create_connection(("127.0.0.1", S2S), timeout=5)
    eventually("a connection without a stream is in connections_open",
               lambda: val("fedhub_connections_open", direction="in"), base_in + 1)
    eventually("... and in conns_open", lambda: val("fedhub_conns_open"), base_in + 1)
    raw.close()
    eventually("... and leaves it when closed", lambda: val("fedhub_connections_open", direction="in"), base_in)

    c = Component(COMP, "echo.mfake", "s3cret")
    eventually("component link counted by auth method",
               lambda: val("fedhub_links_authenticated", direction="component", auth="handshake", tls="none"), 1)
    o = rs.connect_out(S2S, "echo.mfake")
    check("inbound dialback verified", o.auth("echo.mfake") == "valid")
    eventually("inbound link counted by auth method",
               lambda: val("fedhub_link_authentications_total", direction="in", auth="dialback"), 1)
    eventually("inbound link in links_authenticated",
               lambda: val("fedhub_links_authenticated", direction="in", auth="dialback", tls="none"), 1)

    sent_bytes = 0
    for i in range(N):
        x = "<message from='u@remote.mfake/r' to='bot@echo.mfake' id='in%d'><body>%s</body></message>" % (i, "x" * i)
        sent_bytes += len(x)
        o.send(x)
    got = [c.recv() for _ in range(N)]
    check("N stanzas reach the component", len(got) == N)
    eventually("stanzas_received_total{in} == N", lambda: val("fedhub_stanzas_received_total", direction="in"), N)
    eventually("stanzas_sent_total{component} == N",
               lambda: val("fedhub_stanzas_sent_total", direction="component"), N)
    eventually("domain_stanzas_total remote in == N",
               lambda: val("fedhub_domain_stanzas_total", kind="remote", domain="remote.mfake", direction="in"), N)
    eventually("domain_stanzas_total component out == N",
               lambda: val("fedhub_domain_stanzas_total", kind="component", domain="echo.mfake", direction="out"), N)
    eventually("domain_bytes_total remote in == the N stanzas' bytes",
               lambda: val("fedhub_domain_bytes_total", kind="remote", domain="remote.mfake", direction="in"),
               sent_bytes)
    eventually("domain_bytes_total component out == the same bytes",
               lambda: val("fedhub_domain_bytes_total", kind="component", domain="echo.mfake", direction="out"),
               sent_bytes)

    back_bytes = 0
    for i in range(M):
        x = "<message from='bot@echo.mfake' to='u@remote.mfake/r' id='out%d'><body>%s</body></message>" % (i, "y" * i)
        back_bytes += len(x)
        c.send(x)
    deadline = time.time() + 10
    while time.time() < deadline and len(rs.messages()) < M:
        time.sleep(0.05)
    check("M stanzas reach the remote server", len(rs.messages()) == M, rs.messages())
    eventually("stanzas_received_total{component} == M",
               lambda: val("fedhub_stanzas_received_total", direction="component"), M)
    eventually("stanzas_sent_total{out} == M", lambda: val("fedhub_stanzas_sent_total", direction="out"), M)
    eventually("outbound link counted by auth method",
               lambda: val("fedhub_link_authentications_total", direction="out", auth="dialback"), 1)
    eventually("domain_stanzas_total remote out == M",
               lambda: val("fedhub_domain_stanzas_total", kind="remote", domain="remote.mfake", direction="out"), M)
    eventually("domain_bytes_total component in == the M stanzas' bytes",
               lambda: val("fedhub_domain_bytes_total", kind="component", domain="echo.mfake", direction="in"),
               back_bytes)
    eventually("stanzas_in_total counts only received stanzas", lambda: val("fedhub_stanzas_in_total"), N + M)
    eventually("router_latency_seconds counts each forwarded stanza once (N + M)",
               lambda: val("fedhub_router_latency_seconds_count"), N + M)
    check_latency_histogram(scrape())

    # the hub's own stanzas: a ping answer and a bounce
    c.send("<iq type='get' id='p1' from='bot@echo.mfake' to='hub.mfake'><ping xmlns='urn:xmpp:ping'/></iq>")
    el = c.recv()
    check("ping answered", "type='result'" in el, el)
    c.send("<message from='bot@echo.mfake' to='x@idle.mfake' id='b1'><body>x</body></message>")
    el = c.recv()
    check("stanza to an unconnected component bounced", "service-unavailable" in el, el)
    eventually("the answer counts as generated", lambda: val("fedhub_stanzas_generated_total", kind="answer"), 1)
    eventually("the bounce counts as generated", lambda: val("fedhub_stanzas_generated_total", kind="bounce"), 1)
    eventually("bounces_total by condition", lambda: val("fedhub_bounces_total", condition="service-unavailable"), 1)
    eventually("received counts the two stanzas sent, not what the hub made",
               lambda: val("fedhub_stanzas_received_total", direction="component"), M + 2)
    eventually("stanzas_in_total too", lambda: val("fedhub_stanzas_in_total"), N + M + 2)
    eventually("sent counts what reached the component (N + answer + bounce)",
               lambda: val("fedhub_stanzas_sent_total", direction="component"), N + 2)
    check("router_latency_seconds leaves out what the hub made",
          val("fedhub_router_latency_seconds_count") == N + M, val("fedhub_router_latency_seconds_count"))

    # the cap: remote.mfake and echo.mfake are labelled; a third domain is not
    c3 = Component(COMP, "third.mfake", "s3cret")
    eventually("a domain past metrics_domains_max counts under _other",
               lambda: val("fedhub_domain_links", kind="component", domain="_other"), 1)
    body = scrape()
    check("no series is labelled with it", 'domain="third.mfake"' not in body)
    check("metrics_domains is the cap", samples(body).get("fedhub_metrics_domains") == 2)
    c3.send("<message from='bot@third.mfake' to='u@remote.mfake/r' id='o3'/>")
    eventually("its stanzas count under _other",
               lambda: val("fedhub_domain_stanzas_total", kind="component", domain="_other", direction="in"), 1)
    c3.close()
    eventually("_other's link gauge falls when it closes",
               lambda: val("fedhub_domain_links", kind="component", domain="_other"), 0)

    # a stream error: from a domain not authenticated on the link
    o.send("<message from='u@spoof.mfake' to='bot@echo.mfake' id='x1'/>")
    eventually("stream error counted by condition",
               lambda: val("fedhub_stream_errors_by_condition_total", side="sent", condition="invalid-from"), 1)
    eventually("the domain's last error is named",
               lambda: val("fedhub_domain_last_error_info", kind="remote", domain="remote.mfake",
                           condition="invalid-from"), 1)
    eventually("the closed link leaves links_authenticated",
               lambda: val("fedhub_links_authenticated", direction="in", auth="dialback", tls="none"), None)
    c.close()

    # SASL EXTERNAL over TLS (XEP-0178): a third remote domain, so past the cap
    tr = RemoteServer("tremote.mfake", REMOTE + 1)
    try:
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.load_verify_locations(tmp + "/ca.pem")
        cctx.load_cert_chain(tmp + "/tremote.pem", tmp + "/tremote.key")
        t = tr.connect_out(S2S, "hosted.mfake", tls=cctx)
        check("inbound SASL EXTERNAL succeeds", t.sasl_external("tremote.mfake") == "success")
        eventually("SASL EXTERNAL link counted with its TLS version",
                   lambda: val("fedhub_links_authenticated", direction="in", auth="sasl_external",
                               tls=t.s.version()), 1)
        eventually("... and in link_authentications_total",
                   lambda: val("fedhub_link_authentications_total", direction="in", auth="sasl_external"), 1)
        eventually("... and under _other (past the cap)",
                   lambda: val("fedhub_domain_links", kind="remote", domain="_other"), 1)
        t.close()
    finally:
        tr.close()

    # the shipped dashboard and alert rules use only metrics the hub publishes
    body = scrape()
    typed = set(re.findall(r"^# TYPE (fedhub_\w+) ", body, re.M))
    for f in ("grafana-dashboard.json", "prometheus-alerts.yml"):
        used = set(re.findall(r"\b(fedhub_[a-z_]+)", open(os.path.join(ROOT, "examples", f)).read()))
        check("%s names only published metrics" % f, used and used <= typed, sorted(used - typed))


if __name__ == "__main__":
    main()
