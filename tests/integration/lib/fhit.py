"""fhit: the integration-test harness for fedhub.

Starts real federation peers on loopback, each under a private temporary
directory, and the fedhub under test:

  dnsmasq   127.0.0.2:53, SRV + A records for the test domains under the made-up
            TLD .fhtest (not .test: libunbound answers NXDOMAIN for .test itself),
            NXDOMAIN for every other .fhtest name (--local=/fhtest/; without it
            dnsmasq answers REFUSED and ejabberd takes that as a failed lookup).
  Prosody   host pro.fhtest, plaintext c2s and s2s, dialback, resolving through
            dnsmasq with lua-unbound (unbound = { resolvconf = ... }).
  ejabberd  host ejd.fhtest, its own node name and Erlang distribution port (no
            epmd), resolving through dnsmasq. ejabberd looks SRV records up with
            inet_res (which honours ERL_INETRC's resolv_conf) but then resolves the
            SRV *target* with net:getaddrinfo, i.e. glibc and /etc/resolv.conf: that
            is where "DNS lookup failed: enoname" came from. So ejabberd runs in a
            private mount namespace in which /etc/resolv.conf is bind-mounted to a
            file naming 127.0.0.2; the machine's own resolver is untouched.
  fedhub    the system under test, on a config written here.
  slixmpp   c2s users and XEP-0114 echo components, in this process's asyncio loop.

Ports are fixed (21000-21899) because the SRV records carry them and one dnsmasq
serves them, so the scripts that use them take an exclusive lock and run one at
a time. Every process is started in its own session and stopped by its process
group id (so ejabberd's su/erl/beam chain goes with it), also when a case fails,
times out, or the script is interrupted.
"""

import asyncio
import concurrent.futures
import fcntl
import itertools
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hubproc import SANITIZER, parse_metrics  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

DNS_IP = "127.0.0.2"
LOOP = "127.0.0.1"
TLD = "fhtest"

# One port plan for every script that uses dnsmasq (the SRV records name them).
PORTS = {
    "hub_s2s": 21269, "hub_comp": 21347, "hub_http": 21280,
    "pro_c2s": 21222, "pro_s2s": 21270,
    "ejd_c2s": 21322, "ejd_s2s": 21370, "ejd_dist": 21390,
    # The TLS suite (lib/tls_interop.py): direct TLS (XEP-0368) listeners, and
    # a second, plaintext-only Prosody.
    "hub_s2s_tls": 21268, "pro_s2s_tls": 21271, "ejd_s2s_tls": 21371,
    "plain_c2s": 21224, "plain_s2s": 21272,
}

HUB = "hub.fhtest"
PRO = "pro.fhtest"
EJD = "ejd.fhtest"
# Second hosts on each peer with no DNS record at all (NXDOMAIN): fedhub can
# reach them only through a [route] in its config.
PRO2 = "pro2.fhtest"
EJD2 = "ejd2.fhtest"
ECHO = "echo.fhtest"
ECHO2 = "echo2.fhtest"
NOPE = "nope.fhtest"
SECRET = "s3cret"
PASSWORD = "pw-fhit"

LOCK_FILE = "/tmp/fedhub-fhit.lock"

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_PING = "urn:xmpp:ping"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


def log(*a):
    print("#", *a, file=sys.stderr, flush=True)


class CaseFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CaseFailed(msg)


# --------------------------------------------------------------------------
# processes

class Harness:
    """Owns the temp dir, the lock, every started process, and the case tally."""

    def __init__(self, name, deadline_s, lock=True):
        self.name = name
        self.procs = []           # (label, Popen) in start order
        self.passed = 0
        self.failed = 0
        self.dir = tempfile.mkdtemp(prefix="fhit-%s-" % name)
        # ejabberd runs as its own user and must reach its subdir.
        os.chmod(self.dir, 0o755)
        self.keep = os.environ.get("FHIT_KEEP") == "1"
        self._lockf = None
        self._deadline_s = deadline_s
        if lock:
            self._take_lock()
        # The whole script is bounded: SIGALRM turns into an exception in the
        # main thread, which unwinds through the finally that stops everything.
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.alarm(deadline_s)

    def _take_lock(self):
        self._lockf = open(LOCK_FILE, "a+")
        t0 = time.monotonic()
        while True:
            try:
                fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() - t0 > 300:
                    raise RuntimeError("another fhit script holds %s for >300 s" % LOCK_FILE)
                time.sleep(0.5)

    def _on_alarm(self, *_):
        # KeyboardInterrupt because asyncio re-raises only that (and SystemExit)
        # from inside its callbacks; anything else would be logged and lost.
        raise KeyboardInterrupt("script deadline of %d s reached" % self._deadline_s)

    def _on_signal(self, signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def spawn(self, label, argv, logname, env=None, cwd=None):
        logf = open(self.path(logname), "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env, cwd=cwd)
        logf.close()
        self.procs.append((label, p))
        log("started %s pid %d: %s" % (label, p.pid, " ".join(argv)))
        return p

    def stop(self, p, grace=5.0, sig=signal.SIGTERM):
        """Signal the process group led by p, wait, then SIGKILL the group.
        Returns the exit status, or None if it had to be killed."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Children of the group (beam, erl_child_setup) may outlive the leader.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            return p.wait(5)
        except subprocess.TimeoutExpired:
            return None

    def cleanup(self):
        signal.alarm(0)
        for label, p in reversed(self.procs):
            stop = getattr(p, "fhit_stop", None)
            try:
                if stop is not None and p.poll() is None:
                    stop()
                self.stop(p)
            except Exception as e:  # keep stopping the rest
                log("stopping %s: %s" % (label, e))
        self.procs = []
        if self.keep:
            log("kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._lockf:
            self._lockf.close()
            self._lockf = None

    def dump_logs(self, names, tail=40):
        for n in names:
            fn = self.path(n)
            if not os.path.exists(fn):
                continue
            with open(fn, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()[-tail:]
            log("---- last %d lines of %s" % (len(lines), n))
            for line in lines:
                log("  " + line)

    # ---- cases

    def result(self, name, ok, why=""):
        if ok:
            self.passed += 1
            print("ok %s" % name, flush=True)
        else:
            self.failed += 1
            print("not ok %s%s" % (name, (" # " + why.replace("\n", " ")) if why else ""), flush=True)

    async def case(self, name, coro_fn, timeout):
        """Run one case under its own time bound; any exception is a failure."""
        try:
            await asyncio.wait_for(coro_fn(), timeout)
            self.result(name, True)
            return True
        except asyncio.TimeoutError:
            self.result(name, False, "timed out after %d s" % timeout)
        except CaseFailed as e:
            self.result(name, False, str(e))
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            self.result(name, False, "%s: %s" % (type(e).__name__, e))
        return False


def wait_port(host, port, timeout, proc=None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), 0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def port_free(host, port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------
# certificates

class PKI:
    """A throw-away CA in DIR/pki and leaf certificates it signs: SAN dNSName
    for each of the leaf's domains, EKU serverAuth + clientAuth (an s2s peer
    is both). All leaves share one EC key: each certificate costs one openssl
    run, so a few hundred are made in seconds."""

    def __init__(self, where):
        """where: a Harness, or a directory (the PKI goes in its pki/)."""
        self.dir = where.path("pki") if hasattr(where, "path") else os.path.join(where, "pki")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.ca = os.path.join(self.dir, "ca.pem")
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.key = os.path.join(self.dir, "leaf.key")
        self._csr = os.path.join(self.dir, "leaf.csr")
        self._serial = itertools.count(2)   # next() is atomic under the GIL: leaf() runs in threads
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", self.ca_key, "-out", self.ca, "-days", "2", "-subj", "/CN=fhit test CA",
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", self.key, "-out", self._csr, "-subj", "/CN=fhit leaf")
        # Peers running as their own user (ejabberd) read copies; these are test keys.
        os.chmod(self.key, 0o644)

    @staticmethod
    def _run(*args):
        r = subprocess.run(("openssl",) + args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (args[0], r.stderr.strip()))

    def leaf(self, name, sans):
        """Signs NAME.crt for the domains sans (subject CN = the first one).
        Returns (cert path, key path)."""
        crt = os.path.join(self.dir, name + ".crt")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n"
                    % ",".join("DNS:" + d for d in sans))
        self._run("x509", "-req", "-in", self._csr, "-subj", "/CN=" + sans[0], "-CA", self.ca, "-CAkey", self.ca_key,
                  "-set_serial", str(next(self._serial)), "-days", "2", "-extfile", ext, "-out", crt)
        return crt, self.key

    def leaves(self, specs, jobs=3):
        """leaf() for each (name, sans) in specs, jobs openssl runs at a time.
        Returns [(cert, key)] in the order of specs."""
        with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
            return list(ex.map(lambda nv: self.leaf(*nv), specs))

    def cert(self, name):
        """The certificate file of the leaf made as NAME."""
        return os.path.join(self.dir, name + ".crt")

    def client_context(self, cert=None):
        """A TLS client context trusting the CA, presenting leaf cert if given."""
        import ssl
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.load_verify_locations(self.ca)
        if cert:
            c.load_cert_chain(self.cert(cert), self.key)
        return c

    def server_context(self, cert):
        """A TLS server context presenting leaf cert, asking for (and
        verifying, when sent) the client's certificate."""
        import ssl
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        c.load_verify_locations(self.ca)
        c.load_cert_chain(self.cert(cert), self.key)
        c.verify_mode = ssl.CERT_OPTIONAL
        return c

    def combined(self, name, sans):
        """Like leaf(), plus NAME.pem holding the certificate and the key (ejabberd's certfiles)."""
        crt, key = self.leaf(name, sans)
        pem = os.path.join(self.dir, name + ".pem")
        with open(pem, "w") as out, open(crt) as c, open(key) as k:
            out.write(c.read() + k.read())
        os.chmod(pem, 0o644)
        return pem


# --------------------------------------------------------------------------
# DNS

QTYPES = {"A": 1, "AAAA": 28, "SRV": 33}


def dns_query(name, qtype, server=DNS_IP, port=53, timeout=1.0):
    """One UDP query. Returns (rcode, answers) with answers a list of
    ("A", "1.2.3.4") or ("SRV", (prio, weight, port, target))."""
    qid = os.getpid() & 0xFFFF
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", QTYPES[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (server, port))
        r, _ = s.recvfrom(4096)
    finally:
        s.close()
    rcode = r[3] & 0x0F
    an = struct.unpack(">H", r[6:8])[0]

    def read_name(off):
        labels = []
        jumped_end = None
        while True:
            n = r[off]
            if n & 0xC0 == 0xC0:
                if jumped_end is None:
                    jumped_end = off + 2
                off = ((n & 0x3F) << 8) | r[off + 1]
                continue
            off += 1
            if n == 0:
                break
            labels.append(r[off:off + n].decode())
            off += n
        return ".".join(labels), (jumped_end if jumped_end is not None else off)

    off = 12
    _, off = read_name(off)
    off += 4
    out = []
    for _ in range(an):
        _, off = read_name(off)
        typ, _cls, _ttl, rdlen = struct.unpack(">HHIH", r[off:off + 10])
        off += 10
        rd = off
        if typ == 1:
            out.append(("A", socket.inet_ntoa(r[rd:rd + 4])))
        elif typ == 33:
            prio, weight, port_ = struct.unpack(">HHH", r[rd:rd + 6])
            target, _ = read_name(rd + 6)
            out.append(("SRV", (prio, weight, port_, target)))
        off = rd + rdlen
    return rcode, out


RCODE_NXDOMAIN = 3


def start_dnsmasq(h, srv, xmpps=None, ip=DNS_IP, name="dnsmasq", tld=TLD, addresses=None):
    """srv: {domain: port} -> _xmpp-server._tcp.DOMAIN SRV DOMAIN:port and
    DOMAIN A 127.0.0.1. xmpps: {domain: port} -> _xmpps-server._tcp.DOMAIN
    SRV DOMAIN:port (XEP-0368 direct TLS), same priority and weight.
    ip, name, tld: a further instance (another loopback address, its own
    NAME.log/.pid/.out, NXDOMAIN below .TLD); its resolv.conf is
    h.path(resolv_conf_name(name)). addresses: {domain: ip} -> every name
    at or below DOMAIN has that A record (and no SRV record: NODATA)."""
    if shutil.which("dnsmasq") is None:
        raise RuntimeError("dnsmasq not installed")
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
            "--no-resolv", "--no-hosts", "--no-poll",
            "--listen-address=%s" % ip, "--bind-interfaces", "--port=53",
            "--local=/%s/" % tld, "--pid-file=%s" % h.path(name + ".pid"),
            "--user=root", "--log-queries", "--log-facility=%s" % h.path(name + ".log")]
    for dom, port in srv.items():
        argv.append("--srv-host=_xmpp-server._tcp.%s,%s,%d,0,0" % (dom, dom, port))
        argv.append("--host-record=%s,%s" % (dom, LOOP))
    for dom, port in (xmpps or {}).items():
        argv.append("--srv-host=_xmpps-server._tcp.%s,%s,%d,0,0" % (dom, dom, port))
        if dom not in srv:
            argv.append("--host-record=%s,%s" % (dom, LOOP))
    for dom, addr in (addresses or {}).items():
        argv.append("--address=/%s/%s" % (dom, addr))
    p = h.spawn(name, argv, name + ".out")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        if p.poll() is not None:
            h.dump_logs([name + ".out"])
            raise RuntimeError("dnsmasq exited with %s (is %s:53 taken?)" % (p.returncode, ip))
        try:
            if srv:
                rcode, ans = dns_query("_xmpp-server._tcp.%s" % next(iter(srv)), "SRV", server=ip, timeout=0.3)
            else:
                rcode, ans = dns_query("x.%s" % next(iter(addresses)), "A", server=ip, timeout=0.3)
            if rcode == 0 and ans:
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        raise RuntimeError("dnsmasq did not answer")
    with open(h.path(resolv_conf_name(name)), "w") as f:
        f.write("nameserver %s\noptions timeout:1 attempts:2\n" % ip)
    return p


def resolv_conf_name(dnsmasq_name="dnsmasq"):
    """The resolv.conf start_dnsmasq() writes for the instance of that name."""
    return "resolv.conf" if dnsmasq_name == "dnsmasq" else dnsmasq_name + ".resolv.conf"


# --------------------------------------------------------------------------
# Prosody

PROSODY_CFG = """-- written by tests/integration/lib/fhit.py
run_as_root = true
daemonize = false
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ {s2s_direct} }}
legacy_ssl_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{dir}/prosody.log" }} }}
{tls_comment}
modules_enabled = {{ "roster"; "saslauth"; "dialback"; "disco"; "ping"; "posix"{tls_module}{bidi_module} }}
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
s2s_require_encryption = {s2s_secure}
s2s_secure_auth = {s2s_secure}
s2s_timeout = 20
unbound = {{ resolvconf = "{resolv}" }}
{tls_extra}{extra_global}{vhosts}
"""


class ProsodyTLS:
    """TLS settings for a Prosody instance. certs: {vhost: (crt, key)}: each is
    copied into the instance's certificates dir as VHOST.crt/VHOST.key, where
    Prosody finds it by name. secure: s2s_require_encryption and
    s2s_secure_auth. direct_port: s2s_direct_tls_ports (XEP-0368)."""

    def __init__(self, cafile, certs, secure=True, direct_port=None):
        self.cafile, self.certs, self.secure, self.direct_port = cafile, certs, secure, direct_port


class Prosody:
    def __init__(self, h, host=PRO, c2s=PORTS["pro_c2s"], s2s=PORTS["pro_s2s"], extra_hosts=(PRO2,),
                 name="prosody", tls=None, bidi=False, resolv=None, extra_global=""):
        """resolv: the resolv.conf libunbound reads (default: the main
        dnsmasq's). extra_global: Lua placed after the generated global
        settings (a later assignment wins) and before the VirtualHosts."""
        self.h, self.host, self.c2s, self.s2s = h, host, c2s, s2s
        self.name, self.tls = name, tls
        self.dir = h.path(name)
        os.makedirs(self.dir + "/data", exist_ok=True)
        self.cfg = os.path.join(self.dir, "prosody.cfg.lua")
        fmt = dict(dir=self.dir, c2s=c2s, s2s=s2s, s2s_direct="", resolv=resolv or h.path("resolv.conf"),
                   extra_global=extra_global + "\n" if extra_global else "", s2s_secure="false", tls_module="", tls_extra="",
                   bidi_module='; "s2s_bidi"' if bidi else "",
                   tls_comment="-- No certificates and no mod_tls: the peer speaks plaintext s2s.",
                   vhosts="\n".join('VirtualHost "%s"' % d for d in (host,) + tuple(extra_hosts)))
        if tls is not None:
            certdir = os.path.join(self.dir, "certs")
            os.makedirs(certdir, exist_ok=True)
            for vhost, (crt, key) in tls.certs.items():
                shutil.copy(crt, os.path.join(certdir, vhost + ".crt"))
                shutil.copy(key, os.path.join(certdir, vhost + ".key"))
            fmt.update(tls_module='; "tls"', s2s_secure="true" if tls.secure else "false",
                       s2s_direct=str(tls.direct_port) if tls.direct_port else "",
                       tls_comment="-- STARTTLS with the test CA's certificates (one per vhost, by file name).",
                       tls_extra='certificates = "%s"\nssl = { cafile = "%s" }\n' % (certdir, tls.cafile))
        text = PROSODY_CFG.format(**fmt)
        # An option extra_global sets replaces the generated line (Prosody
        # warns about an option set twice).
        for opt in re.findall(r"(?m)^([A-Za-z_][A-Za-z0-9_]*)\s*=", extra_global):
            head, sep, tail = text.partition(extra_global)
            text = re.sub(r"(?m)^%s\s*=.*\n" % opt, "", head) + sep + tail
        with open(self.cfg, "w") as f:
            f.write(text)
        self.proc = None
        self.logs = ["%s/prosody.log" % name, "%s.out" % name]

    def ctl(self, *args, timeout=30):
        return subprocess.run(["prosodyctl", "--config", self.cfg] + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def register(self, user, password=PASSWORD, host=None):
        r = self.ctl("register", user, host or self.host, password)
        if r.returncode != 0:
            raise RuntimeError("prosodyctl register %s: %s%s" % (user, r.stdout, r.stderr))

    def start(self):
        for p in (self.c2s, self.s2s) + ((self.tls.direct_port,) if self.tls and self.tls.direct_port else ()):
            if not port_free(LOOP, p):
                raise RuntimeError("port %d is taken" % p)
        self.proc = self.h.spawn(self.name, ["prosody", "--config", self.cfg], "%s.out" % self.name)
        ports = [self.c2s, self.s2s] + ([self.tls.direct_port] if self.tls and self.tls.direct_port else [])
        if not (wait_port(LOOP, self.c2s, 20, self.proc) and all(wait_port(LOOP, p, 5, self.proc) for p in ports)):
            self.h.dump_logs(self.logs)
            raise RuntimeError("prosody did not listen on %s" % ports)


# --------------------------------------------------------------------------
# ejabberd

EJABBERD_YML = """# written by tests/integration/lib/fhit.py
hosts:
{hosts}
loglevel: info
log_rotate_count: 0
certfiles: {certfiles}
{ca_file}define_macro: {{}}
listen:
  - port: {c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
    max_stanza_size: 262144
  - port: {s2s}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
    max_stanza_size: 524288
{direct_listener}{starttls_comment}
s2s_use_starttls: {starttls}
s2s_access: s2s
outgoing_s2s_families: [ipv4]
outgoing_s2s_port: 5269
s2s_dns_timeout: 3
s2s_dns_retries: 1
# After a failed outbound attempt ejabberd bounces stanzas to that domain for
# up to this long (default 300 s), which would poison later cases.
s2s_max_retry_delay: 2
auth_method: internal
auth_password_format: plain
acl:
  local:
    user_regexp: ""
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
  register:
    deny: all
shaper_rules:
  c2s_shaper: none
  s2s_shaper: none
modules:
{dialback_module}
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_offline: {{}}
"""

INETRC = """{{lookup,["file","dns"]}}.
{{host,{{127,0,0,1}},["localhost"]}}.
{{resolv_conf,"{resolv}"}}.
"""

EJABBERDCTL_CFG = """# written by tests/integration/lib/fhit.py
ERLANG_NODE={node}
INET_DIST_INTERFACE=127.0.0.1
# A fixed distribution port: no epmd, and no port outside the test range.
ERL_DIST_PORT={dist}
"""


class EjabberdTLS:
    """TLS settings for ejabberd. certfiles: PEM files (certificates and keys;
    ejabberd picks a certificate by the names it carries, and presents its
    first one for a host no certificate names). s2s_use_starttls: required.
    secure: no mod_s2s_dialback, so a link authenticates with SASL EXTERNAL
    (a valid certificate naming the domain) or not at all, and ejabberd checks
    the certificate of every server it connects to (its s2s_out_tls_verify hook
    answers 'no check needed' only while dialback may be used instead).
    direct_port: a second ejabberd_s2s_in listener with tls: true (XEP-0368)."""

    def __init__(self, cafile, certfiles, secure=True, direct_port=None):
        self.cafile, self.certfiles, self.secure, self.direct_port = cafile, certfiles, secure, direct_port


class Ejabberd:
    def __init__(self, h, host=EJD, node="fhit1@localhost", c2s=PORTS["ejd_c2s"], s2s=PORTS["ejd_s2s"],
                 dist=PORTS["ejd_dist"], extra_hosts=(EJD2,), tls=None, name="ejabberd", dns_ip=DNS_IP,
                 merge=None):
        """name: its directory and log names (several instances in one run
        need their own name, node and ports). dns_ip: the DNS server of its
        resolv.conf. merge: a dict (parsed YAML) deep-merged into the
        generated ejabberd.yml, its values winning."""
        self.h, self.host, self.node, self.name = h, host, node, name
        self.c2s, self.s2s, self.dist = c2s, s2s, dist
        self.dir = h.path(name)
        self.cfgdir = os.path.join(self.dir, "etc")
        self.spool = os.path.join(self.dir, "spool")
        self.logdir = os.path.join(self.dir, "log")
        for d in (self.cfgdir, self.spool, self.logdir):
            os.makedirs(d, exist_ok=True)
        self.resolv = os.path.join(self.dir, "resolv.conf")
        with open(self.resolv, "w") as f:
            f.write("nameserver %s\noptions timeout:1 attempts:2\n" % dns_ip)
        fmt = dict(certfiles="[]", ca_file="", direct_listener="", starttls="false",
                   dialback_module="  mod_s2s_dialback: {}",
                   starttls_comment="# Plaintext s2s with dialback. With no certificate, 'optional' would still\n"
                   "# advertise STARTTLS and then fail the handshake (\"TLS failed: no_certfile\").")
        self.tls = tls
        if tls is not None:
            pki = os.path.join(self.dir, "pki")   # inside self.dir: chowned to ejabberd below
            os.makedirs(pki, exist_ok=True)
            files = []
            for src in list(tls.certfiles) + [tls.cafile]:
                dst = os.path.join(pki, os.path.basename(src))
                shutil.copy(src, dst)
                files.append(dst)
            fmt.update(certfiles="\n" + "".join('  - "%s"\n' % f for f in files[:-1]),
                       ca_file='ca_file: "%s"\n' % files[-1], starttls="required",
                       starttls_comment="# STARTTLS required, certificates checked against the test CA.",
                       dialback_module="  mod_s2s_dialback: {}" if not tls.secure else "  # no mod_s2s_dialback: certificates only")
            if tls.direct_port:
                fmt["direct_listener"] = ('  - port: %d\n    ip: "127.0.0.1"\n    module: ejabberd_s2s_in\n'
                                          '    tls: true\n    max_stanza_size: 524288\n' % tls.direct_port)
        yml = EJABBERD_YML.format(hosts="\n".join("  - %s" % d for d in (host,) + tuple(extra_hosts)),
                                  c2s=c2s, s2s=s2s, **fmt)
        if merge:
            import yaml
            base = yaml.safe_load(yml)
            deep_merge(base, merge)
            yml = "# written by tests/integration/lib/fhit.py (merged)\n" + yaml.safe_dump(base, sort_keys=False)
        with open(os.path.join(self.cfgdir, "ejabberd.yml"), "w") as f:
            f.write(yml)
        with open(os.path.join(self.cfgdir, "inetrc"), "w") as f:
            f.write(INETRC.format(resolv=self.resolv))
        with open(os.path.join(self.cfgdir, "ejabberdctl.cfg"), "w") as f:
            f.write(EJABBERDCTL_CFG.format(node=node, dist=dist))
        subprocess.run(["chown", "-R", "ejabberd:ejabberd", self.dir], check=True)
        self.proc = None
        self.logs = ["%s/log/ejabberd.log" % name, "%s/log/error.log" % name, "%s.out" % name]

    def _ctl_argv(self):
        return ["ejabberdctl", "--config-dir", self.cfgdir, "--config", os.path.join(self.cfgdir, "ejabberd.yml"),
                "--spool", self.spool, "--logs", self.logdir, "--node", self.node]

    def ctl(self, *args, timeout=60):
        return subprocess.run(self._ctl_argv() + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, cwd=self.dir)

    def register(self, user, password=PASSWORD, host=None):
        r = self.ctl("register", user, host or self.host, password)
        if r.returncode != 0:
            raise RuntimeError("ejabberdctl register %s: %s%s" % (user, r.stdout, r.stderr))

    def start(self):
        direct = (self.tls.direct_port,) if self.tls and self.tls.direct_port else ()
        for p in (self.c2s, self.s2s, self.dist) + direct:
            if not port_free(LOOP, p):
                raise RuntimeError("port %d is taken" % p)
        # The private mount namespace: see the comment atop this file.
        script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", self.resolv] + \
            self._ctl_argv() + ["foreground"]
        self.proc = self.h.spawn(self.name, argv, "%s.out" % self.name, cwd=self.dir)
        self.proc.fhit_stop = self.stop
        if not (wait_port(LOOP, self.c2s, 60, self.proc) and
                all(wait_port(LOOP, p, 10, self.proc) for p in (self.s2s,) + direct)):
            self.h.dump_logs(self.logs)
            raise RuntimeError("ejabberd did not listen on %d/%d" % (self.c2s, self.s2s))
        # The listeners open before every module is up; 'status' says when it is.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            r = self.ctl("status", timeout=30)
            if r.returncode == 0 and "is running" in r.stdout and "started" in r.stdout:
                return
            time.sleep(0.5)
        raise RuntimeError("ejabberd status never said started: %s" % r.stdout)

    def stop(self):
        try:
            self.ctl("stop", timeout=20)
            self.proc.wait(15)
        except Exception as e:
            log("ejabberdctl stop: %s" % e)


def deep_merge(base, over):
    """Merges dict over into dict base in place: nested dicts merge, any
    other value of over replaces base's."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


# --------------------------------------------------------------------------
# fedhub

def fedhub_binary():
    b = os.environ.get("FEDHUB", os.path.join(REPO, "fedhub"))
    return b if os.path.isfile(b) and os.access(b, os.X_OK) else None


def fedhub_config(h, components=(ECHO, ECHO2), routes=None, extra_hub="", s2s_tls="optional", domains=None,
                  ports=None, dns_ip=DNS_IP, hub_domain=HUB, sections=""):
    """s2s_tls: the STARTTLS policy of the s2s listener. domains: {name: (cert,
    key)}, one [domain] section each, in order. ports, dns_ip, hub_domain:
    another plan than fhit's. sections: text appended as it is."""
    ports = ports or PORTS
    lines = ["# written by tests/integration/lib/fhit.py", "[hub]", "workers 2", "domain %s" % hub_domain,
             "listen s2s %s:%d tls %s" % (LOOP, ports["hub_s2s"], s2s_tls),
             "listen component %s:%d" % (LOOP, ports["hub_comp"]),
             "http %s:%d" % (LOOP, ports["hub_http"]),
             "dns_server %s:53" % dns_ip,
             "dns_allow_private yes",  # the test DNS points every domain at loopback
             "log_level debug"]
    if extra_hub:
        lines.append(extra_hub)
    for c in components:
        lines += ["[component %s]" % c, "secret %s" % SECRET]
    for dom, hp in (routes or {}).items():
        lines += ["[route %s]" % dom, "connect %s" % hp]
    for dom, (cert, key) in (domains or {}).items():
        lines += ["[domain %s]" % dom, "cert %s" % cert, "key %s" % key]
    fn = h.path("fedhub.conf")
    with open(fn, "w") as f:
        f.write("\n".join(lines) + "\n" + sections)
    return fn


class Fedhub:
    def __init__(self, h, conf, extra_ports=(), ports=None):
        """extra_ports: PORTS keys of further listeners to wait for (hub_s2s_tls).
        ports: another plan ({key: port}) to look those keys up in."""
        self.h, self.conf = h, conf
        self.ports = ports or PORTS
        self.keys = ("hub_s2s", "hub_comp", "hub_http") + tuple(extra_ports)
        self.bin = fedhub_binary()
        self.proc = None
        self.logs = ["fedhub.log"]

    def start(self):
        if self.bin is None:
            raise RuntimeError("no fedhub binary (build it with make, or set FEDHUB=path)")
        for k in self.keys:
            if not port_free(LOOP, self.ports[k]):
                raise RuntimeError("port %d is taken" % self.ports[k])
        self.proc = self.h.spawn("fedhub", [self.bin, "-c", self.conf], "fedhub.log")
        ok = all(wait_port(LOOP, self.ports[k], 10, self.proc) for k in self.keys)
        if not ok:
            self.h.dump_logs(self.logs)
            raise RuntimeError("fedhub did not listen (exit status %s)" % self.proc.poll())

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        """SIGTERM; returns (exit status, seconds taken) or (None, s) if killed."""
        t0 = time.monotonic()
        rc = self.h.stop(self.proc, grace=2.0)
        return rc, time.monotonic() - t0

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def try_start(self):
        """start(); a failure is kept in .error (for gate()) instead of raised."""
        self.error = None
        try:
            self.start()
        except Exception as e:
            self.error = "fedhub: %s" % e
        return self.error is None

    def gate(self, prefix):
        """Returns gated(name, fn, timeout): a case named PREFIX_NAME that
        fails at once, with the reason, when fedhub is not up, and fails when
        fedhub is no longer running at its end."""
        async def gated(name, fn, timeout):
            name = "%s_%s" % (prefix, name)
            if getattr(self, "error", None) or not self.alive():
                self.h.result(name, False, getattr(self, "error", None) or "fedhub exited with %s" % self.proc.poll())
                return False

            async def body():
                await fn()
                check(self.alive(), "fedhub exited with %s during the case" % self.proc.poll())
            return await self.h.case(name, body, timeout)
        return gated

    def finish(self, prefix):
        """The last case: fedhub, still running, exits 0 on SIGTERM, and its
        log holds no sanitizer report."""
        name = "%s_fedhub_exits_0_on_sigterm_no_sanitizer_report" % prefix
        if self.proc is None:
            self.h.result(name, False, getattr(self, "error", None) or "fedhub never started")
            return
        if not self.alive():
            self.h.result(name, False, "fedhub had exited with %s" % self.proc.poll())
            return
        rc, took = self.stop()
        log("fedhub stopped: status %s after %.1f s" % (rc, took))
        with open(self.h.path(self.logs[0]), errors="replace") as f:
            m = SANITIZER.search(f.read())
        self.h.result(name, rc == 0 and not m, "exit status %s%s" % (rc, ", a sanitizer report in its log" if m else ""))


def http_get(port, path, timeout=5):
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (LOOP, port, path), timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def metric(port, name):
    """Sum of every sample of a Prometheus metric (all label sets), or None."""
    status, body = http_get(port, "/metrics")
    if status != 200:
        return None
    samples = [v for k, v in parse_metrics(body).items() if k == name or k.startswith(name + "{")]
    return sum(samples) if samples else None


def bare(j):
    """The bare JID of a JID (anything str() gives one of)."""
    return str(j).split("/", 1)[0]


def tcp_conns_to_local_port(lport):
    """Established TCP connections whose local end is 127.0.0.1:lport, i.e.
    accepted by whoever listens there (ss -t, no process filter)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "src", "%s:%d" % (LOOP, lport)],
                         capture_output=True, text=True, timeout=10).stdout
    return [line for line in out.splitlines() if line.strip()]


def log_lines(h, name, pattern, start=0):
    """Lines of the log file h.path(name) from byte offset start that match the regex."""
    try:
        with open(h.path(name), "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if re.search(pattern, line)]


def log_size(h, name):
    try:
        return os.path.getsize(h.path(name))
    except OSError:
        return 0


async def wait_log(h, name, pattern, timeout, start=0):
    """Waits until a line matching pattern appears in the log (from offset
    start); returns the matching lines or raises CaseFailed."""
    t0 = time.monotonic()
    while True:
        got = log_lines(h, name, pattern, start)
        if got:
            return got
        if time.monotonic() - t0 > timeout:
            raise CaseFailed("no line matching /%s/ in %s within %d s" % (pattern, name, timeout))
        await asyncio.sleep(0.1)


def tcp_links(pid, dport):
    """Established TCP connections owned by pid to 127.0.0.1:dport."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", "dst", "%s:%d" % (LOOP, dport)],
                         capture_output=True, text=True, timeout=10).stdout
    return [line for line in out.splitlines() if "pid=%d," % pid in line]


# --------------------------------------------------------------------------
# slixmpp actors (imported lazily so the shell tests need no slixmpp)

def _slix():
    import logging
    import slixmpp
    logging.getLogger("slixmpp").setLevel(logging.ERROR)
    return slixmpp


def make_user_class():
    slixmpp = _slix()

    class User(slixmpp.ClientXMPP):
        """A c2s user on a peer, plaintext, that queues every message it gets."""

        def __init__(self, jid, password, port):
            super().__init__(jid, password)
            self.port = port
            self.inbox = asyncio.Queue()
            self.online = asyncio.Event()
            self.failed = None
            self['feature_mechanisms'].unencrypted_plain = True
            self.register_plugin("xep_0030")
            self.register_plugin("xep_0199")
            self.add_event_handler("session_start", self._on_start)
            self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))
            # slixmpp raises 'message' only for messages with a body; a bounce
            # without one (Prosody's, for a failed s2s link) is 'message_error' alone.
            self.add_event_handler("message_error", lambda m: None if m["body"] else self.inbox.put_nowait(m))
            self.add_event_handler("failed_auth", lambda *_: self._fail("auth failed"))
            self.add_event_handler("connection_failed", lambda e: self._fail("connection failed: %s" % e))

        def _fail(self, why):
            self.failed = why
            self.online.set()

        async def _on_start(self, _):
            # Available presence, so messages to the bare JID reach this resource.
            self.send_presence()
            self.online.set()

        async def login(self, timeout=20):
            self.connect((LOOP, self.port), force_starttls=False, disable_starttls=True)
            try:
                await asyncio.wait_for(self.online.wait(), timeout)
            finally:
                self.cancel_connection_attempt()
            if self.failed:
                raise CaseFailed("%s: %s" % (self.boundjid, self.failed))

        async def next_message(self, timeout, pred=lambda m: True):
            t0 = time.monotonic()
            while True:
                left = timeout - (time.monotonic() - t0)
                if left <= 0:
                    raise CaseFailed("%s: no matching message within %d s" % (self.boundjid.bare, timeout))
                try:
                    m = await asyncio.wait_for(self.inbox.get(), left)
                except asyncio.TimeoutError:
                    continue
                if pred(m):
                    return m

        def close(self):
            if self.transport:
                self.abort()

    return User


def make_component_class():
    slixmpp = _slix()
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import StanzaPath

    class EchoComponent(slixmpp.ComponentXMPP):
        """An XEP-0114 component connection. Messages with a body are echoed to
        their sender as 'TAG|body' from the address they were sent to; iq get/set
        to a localpart starting with 'bot' gets an empty result, any other
        address gets item-not-found. Everything received is recorded."""

        def __init__(self, domain, tag, port=PORTS["hub_comp"], secret=SECRET):
            super().__init__(domain, secret, LOOP, port)
            self.tag = tag
            self.received = []      # message bodies echoed, in arrival order: (from, to, body)
            self.errors = asyncio.Queue()   # type='error' messages received
            self.iqs = 0
            self.online = asyncio.Event()
            self.gone = asyncio.Event()
            self.failed = None
            self.dead = False       # set by close(): a crashed process handles nothing more
            self.register_handler(Callback("fhit message", StanzaPath("message"), self._on_message))
            self.register_handler(Callback("fhit iq", StanzaPath("iq"), self._on_iq))
            self.add_event_handler("session_start", lambda _: self.online.set())
            self.add_event_handler("disconnected", self._on_gone)
            self.add_event_handler("stream_error", lambda e: self._fail("stream error %s" % e['condition']))
            self.add_event_handler("connection_failed", lambda e: self._fail("connection failed: %s" % e))

        def _fail(self, why):
            self.failed = self.failed or why
            self.online.set()

        def _on_gone(self, _):
            self.gone.set()
            self._fail("disconnected")

        def _on_message(self, msg):
            if self.dead:
                return
            if msg["type"] == "error":
                self.errors.put_nowait(msg)
                return
            body = msg["body"]
            if not body:
                return
            self.received.append((str(msg["from"]), str(msg["to"]), body))
            self.make_message(mto=msg["from"], mfrom=msg["to"], mbody="%s|%s" % (self.tag, body),
                              mtype=msg["type"] or "normal").send()

        def _on_iq(self, iq):
            if self.dead or iq["type"] not in ("get", "set"):
                return      # results/errors for our own requests go to their waiters
            self.iqs += 1
            if iq["to"].user.startswith("bot"):
                iq.reply(clear=True).send()
            else:
                r = iq.reply(clear=True)
                r["error"]["type"] = "cancel"
                r["error"]["condition"] = "item-not-found"
                r.send()

        async def start(self, timeout=10):
            self.connect()
            try:
                await asyncio.wait_for(self.online.wait(), timeout)
            except asyncio.TimeoutError:
                self._fail("no handshake within %d s" % timeout)
            finally:
                self.cancel_connection_attempt()
            if self.failed:
                self.close()
                raise CaseFailed("component %s/%s: %s" % (self.boundjid, self.tag, self.failed))

        def send_body(self, frm, to, body, mtype="chat"):
            self.make_message(mto=to, mfrom=frm, mbody=body, mtype=mtype).send()

        async def iq_get(self, frm, to, payload, timeout=10):
            """Send an iq get with the given payload element; returns the
            response stanza (result or error; never raises on type='error')."""
            iq = self.Iq()
            iq["type"] = "get"
            iq["to"] = to
            iq["from"] = frm
            iq.append(payload)
            from slixmpp.exceptions import IqError
            try:
                return await iq.send(timeout=timeout)
            except IqError as e:
                return e.iq

        def close(self):
            """Drop the TCP connection at once, like a crashed process."""
            self.dead = True
            self.cancel_connection_attempt()
            if self.transport:
                self.abort()

    return EchoComponent


def error_condition(stanza):
    """The RFC 6120 defined condition of an error stanza, or None."""
    err = stanza.xml.find("{%s}error" % stanza.namespace)
    if err is None:
        return None
    for child in err:
        if child.tag.startswith("{%s}" % NS_STANZAS) and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return None


def el(tag, ns):
    return ET.Element("{%s}%s" % (ns, tag))


def run_main(h, coro_fn):
    """Run the async body, always clean up, and exit 1 on any failure."""
    code = 1
    try:
        asyncio.run(coro_fn())
    except (Exception, KeyboardInterrupt) as e:
        traceback.print_exc(file=sys.stderr)
        h.result("%s-harness" % h.name, False, "%s: %s" % (type(e).__name__, e))
    finally:
        h.cleanup()
    if h.failed == 0 and h.passed > 0:
        code = 0
    log("%s: %d passed, %d failed" % (h.name, h.passed, h.failed))
    sys.exit(code)
