#!/usr/bin/env python3
"""Configuration reload (SIGHUP): a domain and a component added while a link
carries traffic (the link survives, nothing is lost, the new names route); a
component removed (its connection gets <host-gone/>, stanzas to it are
bounced); a certificate renewed (the next handshake gets the new one, a link
made before keeps going); a bad configuration refused (the hub keeps running
on the old one); a listener change reported as needing a restart."""
import os, re, signal, socket, ssl, subprocess, sys, tempfile, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from fakepeer import Component, RemoteServer
from hubproc import FEDHUB, Results, health, hub_section

S2S, COMP, HTTP, TLSP, REMOTE = 26569, 26647, 26580, 26568, 26570
HUB = hub_section(S2S, COMP, HTTP, dns=26653) + """%s
connect_timeout 2
[route remote.fake]
connect 127.0.0.1:%d
[component a.fake]
secret s3cret
[component b.fake]
secret s3cret
"""
T = Results()
check = T.check


def write(conf, extra="", listen_extra=""):
    open(conf, "w").write(HUB % (listen_extra, REMOTE) + extra)


def sh(*a):
    subprocess.run(a, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_cert(d, name, sans):
    if not os.path.exists(d + "/ca.pem"):
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", d + "/ca.key", "-out", d + "/ca.pem", "-days", "2", "-subj", "/CN=fedhub test CA",
           "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "%s/%s.key" % (d, name), "-out", "%s/%s.csr" % (d, name), "-subj", "/CN=" + name)
    open("%s/%s.ext" % (d, name), "w").write("subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" % sans)
    sh("openssl", "x509", "-req", "-in", "%s/%s.csr" % (d, name), "-CA", d + "/ca.pem", "-CAkey", d + "/ca.key",
       "-CAcreateserial", "-out", "%s/%s.pem" % (d, name), "-days", "2", "-extfile", "%s/%s.ext" % (d, name))


class Log:
    def __init__(self, path):
        self.path, self.pos = path, 0

    def wait(self, pattern, timeout=5):
        """The next log text (after the last match) matching pattern."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = open(self.path).read()
            m = re.search(pattern, text[self.pos:])
            if m:
                self.pos += m.end()
                return text[self.pos - m.end() + m.start():self.pos]
            time.sleep(0.05)
        return None


def hup(hub, log, timeout=5):
    hub.send_signal(signal.SIGHUP)
    return log.wait(r"reload: (done|refused)[^\n]*", timeout)


def stream_error(r, timeout=5):
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


def s2s_header(to):
    """Open an s2s stream to the hub for `to`: the hub's answer, header and features or error."""
    s = socket.create_connection(("127.0.0.1", S2S), timeout=5)
    s.sendall(("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
               "xmlns:db='jabber:server:dialback' from='remote.fake' to='%s' version='1.0'>" % to).encode())
    data, deadline = b"", time.time() + 5
    while time.time() < deadline and b"features" not in data and b"error" not in data:
        try:
            d = s.recv(65536)
        except OSError:
            break
        if not d:
            break
        data += d
    s.close()
    return data.decode(errors="replace")


def traffic_case(tmp, hub, conf, log):
    a = Component(COMP, "a.fake", "s3cret")
    b = Component(COMP, "b.fake", "s3cret")
    check("before_reload_new_domain_unknown", "host-unknown" in s2s_header("new.fake"))
    stop, sent = threading.Event(), [0]

    def sender():
        while not stop.is_set():
            a.send("<message from='u@a.fake' to='v@b.fake' id='t%d'><body>x</body></message>" % sent[0])
            sent[0] += 1
            time.sleep(0.001)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    time.sleep(0.3)
    write(conf, "[domain new.fake]\n[component c.fake]\nsecret c-secret\n")
    line = hup(hub, log)
    check("reload_applied", line and "done" in line, line)
    text = open(log.path).read()
    check("reload_logs_what_changed", "domains added: new.fake" in text and "components added: c.fake" in text,
          text[-500:])
    time.sleep(0.3)
    stop.set()
    th.join()
    ids = []
    try:
        while len(ids) < sent[0]:
            el = b.recv(5)
            m = re.search(r"id='t(\d+)'", el)
            if m:
                ids.append(int(m.group(1)))
    except (EOFError, OSError) as e:
        pass
    check("link_survives_reload_no_stanza_lost", ids == list(range(sent[0])) and sent[0] > 100,
          "sent %d got %d" % (sent[0], len(ids)))
    check("new_domain_routes_after_reload", "host-unknown" not in s2s_header("new.fake")
          and "features" in s2s_header("new.fake"))
    try:
        c = Component(COMP, "c.fake", "c-secret")
        a.send("<message from='u@a.fake' to='w@c.fake' id='c1'><body>hi</body></message>")
        el = c.recv(5)
        ok = "id='c1'" in el
    except Exception as e:
        ok, el, c = False, repr(e), None
    check("new_component_connects_and_routes", ok, el)

    # removing c.fake: its connection is closed with host-gone, stanzas to it bounce
    write(conf, "[domain new.fake]\n")
    line = hup(hub, log)
    check("reload_removing_component_applied", line and "done" in line, line)
    err = stream_error(c.r) if c else "no component"
    check("removed_component_gets_host_gone", err == "host-gone", err)
    a.send("<message from='u@a.fake' to='w@c.fake' id='c2'><body>hi</body></message>")
    bounce = ""
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            el = a.recv(10)
            if "id='c2'" in el:
                bounce = el
                break
    except (EOFError, OSError) as e:
        bounce = repr(e)
    check("stanza_to_removed_component_bounced", "type='error'" in bounce, bounce)

    # a bad configuration: refused, the running one kept
    open(conf, "a").write("bogus_directive 1\n")
    line = hup(hub, log)
    check("bad_reload_refused", line and "refused" in line, line)
    check("bad_reload_hub_keeps_running", hub.poll() is None and
          health(HTTP)[0] == 200)
    a.send("<message from='u@a.fake' to='v@b.fake' id='after-bad'><body>x</body></message>")
    try:
        el = b.recv(5)
    except Exception as e:
        el = repr(e)
    check("bad_reload_old_configuration_still_routes", "after-bad" in el and
          "features" in s2s_header("new.fake"), el)

    # listeners cannot change at run time: reported, kept
    write(conf, "[domain new.fake]\n", "listen s2s 127.0.0.1:26571")
    line = hup(hub, log)
    text = open(log.path).read()
    check("listener_change_needs_restart", line and "done" in line and
          "listen changed: needs a restart; the running value is kept" in text, text[-400:])
    try:
        socket.create_connection(("127.0.0.1", 26571), timeout=1).close()
        opened = True
    except OSError:
        opened = False
    check("listener_change_not_applied", not opened)
    a.close()
    b.close()


def cert_case(tmp):
    d = tmp + "/pki"
    os.makedirs(d)
    make_cert(d, "tls1", "DNS:tls.fake")
    os.rename(d + "/tls1.pem", d + "/tls.pem")
    os.rename(d + "/tls1.key", d + "/tls.key")
    conf = tmp + "/tls.conf"
    open(conf, "w").write("""
[hub]
workers 2
domain hub.fake
listen s2s-tls 127.0.0.1:%d
http 127.0.0.1:%d
ca_file %s/ca.pem
[domain tls.fake]
cert %s/tls.pem
key %s/tls.key
""" % (TLSP, HTTP, d, d, d))
    logp = tmp + "/tls.log"
    hub = subprocess.Popen([FEDHUB, "-c", conf], stderr=open(logp, "w"), stdout=subprocess.DEVNULL)
    log = Log(logp)
    try:
        log.wait("fedhub running", 5)
        cx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cx.load_verify_locations(d + "/ca.pem")

        def handshake():
            s = cx.wrap_socket(socket.create_connection(("127.0.0.1", TLSP), timeout=5), server_hostname="tls.fake")
            return s, s.getpeercert(binary_form=True)

        old, der1 = handshake()
        make_cert(d, "tls2", "DNS:tls.fake")
        os.rename(d + "/tls2.key", d + "/tls.key")
        os.rename(d + "/tls2.pem", d + "/tls.pem")
        line = hup(hub, log)
        text = open(logp).read()
        check("cert_reload_applied", line and "done" in line and "certificates renewed: tls.fake" in text, text[-400:])
        new, der2 = handshake()
        check("renewed_cert_used_by_next_handshake", der2 != der1 and der2 == ssl.PEM_cert_to_DER_cert(
            open(d + "/tls.pem").read()))
        new.close()
        # the link made with the old certificate still works
        old.sendall(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
                    b"from='remote.fake' to='tls.fake' version='1.0'>")
        data = b""
        deadline = time.time() + 5
        while time.time() < deadline and b"features" not in data:
            chunk = old.recv(65536)
            if not chunk:
                break
            data += chunk
        check("old_link_continues_after_cert_renewal", b"<stream:stream" in data and b"features" in data, data[:200])
        old.close()
    finally:
        hub.terminate()
        try:
            hub.wait(10)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()


def main():
    timer = threading.Timer(58, lambda: os._exit(3))
    timer.daemon = True
    timer.start()
    tmp = tempfile.mkdtemp(prefix="fedhub-reload-")
    conf = tmp + "/hub.conf"
    write(conf)
    logp = tmp + "/hub.log"
    hub = subprocess.Popen([FEDHUB, "-c", conf], stderr=open(logp, "w"), stdout=subprocess.DEVNULL)
    log = Log(logp)
    try:
        if not log.wait("fedhub running", 5):
            check("hub_starts", False, open(logp).read()[-300:])
        else:
            traffic_case(tmp, hub, conf, log)
    except Exception as e:
        import traceback
        traceback.print_exc()
        check("traffic_case", False, repr(e))
    finally:
        hub.terminate()
        try:
            rc = hub.wait(15)
        except subprocess.TimeoutExpired:
            hub.kill()
            rc = hub.wait()
        check("hub_exits_0_after_reloads", rc == 0, rc)
    try:
        cert_case(tmp)
    except Exception as e:
        check("cert_case", False, repr(e))
    T.exit()


if __name__ == "__main__":
    main()
