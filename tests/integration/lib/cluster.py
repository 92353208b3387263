"""cluster: a fedhub cluster on loopback for the t_cluster* scripts — a real
redis-server, N fedhub nodes (lib/hubproc.py) and a real HAProxy in front,
every process started here and stopped by PID.

    cl = Cluster(tmp, base=27200, nodes=3, pki=pki)
    cl.start()                      # False (and .why) when something did not come up
    cl.node(1).ports.s2s ...        # node i's ports, 1-based
    cl.haproxy_s2s, cl.haproxy_tls  # the balancer's frontends
    cl.kill9(2)                     # SIGKILL one node (recorded: finish() expects it dead)
    cl.finish(T)                    # every node SIGTERM -> exit 0, no sanitizer report; all stopped

The balancer runs examples/haproxy.cfg itself: only its addresses and ports
are substituted (make_haproxy_cfg), and every line substituted must be found,
so the shipped example cannot drift away from what is tested.

Ports, from a block of 100 at `base` (t_cluster_haproxy 27200, t_cluster 27300):
  base+0 redis, base+1 HAProxy s2s, base+2 HAProxy s2s-tls, base+3/+4 a second
  HAProxy (PROXY v1) s2s / s2s-tls;
  node i (1..3) at base+10*i: +0 s2s (proxy_protocol), +1 s2s-tls (proxy_protocol),
  +2 component, +3 http, +4 node-to-node, +5 s2s straight (no balancer),
  +6 s2s-tls straight;
  base+60..base+99 for the script (scripted remote servers and the like).

Every node trusts PROXY headers from 127.0.0.1 only (proxy_from): HAProxy
connects from there, and a script's "clients" bind other loopback addresses
(CLIENT_ADDR) so the address a node reports can only have come from the
header.
"""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from fakepeer import attr
from hubproc import Hub, ROOT, metrics

EXAMPLE = os.path.join(ROOT, "examples", "haproxy.cfg")
HAPROXY = os.environ.get("HAPROXY", "haproxy")
REDIS = os.environ.get("REDIS_SERVER", "redis-server")
CLIENT_ADDR = "127.0.0.5"   # a "remote server" seen through the balancer
STRANGER_ADDR = "127.0.0.6"  # a source that is not a balancer


class Ports:
    def __init__(self, base, i):
        b = base + 10 * i
        self.s2s, self.s2s_tls, self.comp, self.http = b, b + 1, b + 2, b + 3
        self.node, self.s2s_direct, self.tls_direct = b + 4, b + 5, b + 6


def make_haproxy_cfg(text, front_s2s, front_tls, nodes, proxy_v1=False, logfile=None):
    """examples/haproxy.cfg with its addresses and ports replaced by the
    cluster's: frontends on 127.0.0.1, server nodeN at node N's listeners and
    http port; servers beyond len(nodes) removed. proxy_v1 turns send-proxy-v2
    into send-proxy. Raises ValueError if a line it must change is missing."""
    def sub(pattern, repl, s, count_min=1):
        new, k = re.subn(pattern, repl, s, flags=re.M)
        if k < count_min:
            raise ValueError("examples/haproxy.cfg: no line matches %r" % pattern)
        return new

    # HAProxy needs two descriptors per connection and refuses to start when
    # it cannot raise RLIMIT_NOFILE that far: a test box may have less
    t = sub(r"^(\s*maxconn) \d+$", r"\1 2000", text)
    t = sub(r"^(\s*bind) :5269$", r"\1 127.0.0.1:%d" % front_s2s, t)
    t = sub(r"^(\s*bind) :5270$", r"\1 127.0.0.1:%d" % front_tls, t)
    for n in (1, 2, 3):
        for port, which in ((5269, "s2s"), (5270, "s2s_tls")):
            pat = r"^(\s*server node%d) 10\.0\.0\.1%d:%d check port 5280$" % (n, n, port)
            if n <= len(nodes):
                p = nodes[n - 1]
                t = sub(pat, r"\1 127.0.0.1:%d check port %d" % (getattr(p, which), p.http), t)
            else:
                t = sub(pat, "", t)
    t = sub(r"send-proxy-v2$", "send-proxy" if proxy_v1 else "send-proxy-v2", t, count_min=2)
    return t


def redis_cmd(port, *args, timeout=2):
    """One command over RESP; returns the decoded reply (str, int, list, None)
    or raises OSError. Enough for PING, GET, KEYS, SCARD in a test."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
        s.sendall(out)
        f = s.makefile("rb")
        return _resp(f)
    finally:
        s.close()


def _resp(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed")
    t, v = line[:1], line[1:-2]
    if t == b"+":
        return v.decode()
    if t == b"-":
        raise OSError("redis: " + v.decode())
    if t == b":":
        return int(v)
    if t == b"$":
        n = int(v)
        if n < 0:
            return None
        d = f.read(n + 2)
        return d[:-2].decode(errors="replace")
    if t == b"*":
        n = int(v)
        return None if n < 0 else [_resp(f) for _ in range(n)]
    raise OSError("redis: unexpected reply %r" % line)


def wait_port(port, proc=None, within=10, host="127.0.0.1"):
    deadline = time.time() + within
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Redis:
    """A redis-server of the test's own on 127.0.0.1:port: no persistence,
    its own directory under tmp."""

    def __init__(self, tmp, port):
        self.port, self.dir, self.proc, self.log = port, os.path.join(tmp, "redis"), None, None
        os.makedirs(self.dir, exist_ok=True)

    def start(self):
        """True once it answers PING and is still running (when the port is
        taken, another server would answer and this one exit)."""
        self.log = open(os.path.join(self.dir, "redis.log"), "a")
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--daemonize", "no", "--databases", "1"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if redis_cmd(self.port, "PING") == "PONG":
                    time.sleep(0.1)
                    return self.proc.poll() is None
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log:
            self.log.close()
            self.log = None

    def kill(self):
        self.stop(signal.SIGKILL)

    def cmd(self, *args):
        return redis_cmd(self.port, *args)

    def get(self, key):
        """GET key, or "(redis down)" when it does not answer."""
        try:
            return self.cmd("GET", key)
        except OSError:
            return "(redis down)"

    def members(self, key):
        return self.cmd("SMEMBERS", key) or []


class HAProxy:
    def __init__(self, tmp, name, cfg_text, ports):
        self.cfg = os.path.join(tmp, name + ".cfg")
        self.logpath = os.path.join(tmp, name + ".log")
        self.ports, self.proc = ports, None
        with open(self.cfg, "w") as f:
            f.write(cfg_text)

    def start(self):
        chk = subprocess.run([HAPROXY, "-c", "-q", "-f", self.cfg], capture_output=True, text=True, timeout=20)
        if chk.returncode != 0:
            self.why = "haproxy -c: " + (chk.stderr or chk.stdout).strip()[:300]
            return False
        self.log = open(self.logpath, "w")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        ok = all(wait_port(p, self.proc) for p in self.ports)
        if not ok:
            self.why = "haproxy did not listen on %s" % (self.ports,)
        return ok

    def text(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # hard stop: closes every connection now
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
            self.log = None


class Node:
    def __init__(self, cluster, i):
        self.i, self.ports = i, Ports(cluster.base, i)
        self.dir = os.path.join(cluster.tmp, "node%d" % i)
        os.makedirs(self.dir, exist_ok=True)
        self.ctl = os.path.join(self.dir, "ctl.sock")
        self.hub = Hub(cluster.node_conf(self), self.dir,
                       ready_ports=(self.ports.comp, self.ports.s2s, self.ports.s2s_direct, self.ports.http))
        self.killed = False

    def links(self):
        """fedhubctl --json links: the node's connections (list of dicts)."""
        p = subprocess.run([os.path.join(ROOT, "fedhubctl"), "-s", self.ctl, "--json", "links"],
                           capture_output=True, text=True, timeout=20)
        return json.loads(p.stdout) if p.returncode == 0 else []

    def metrics(self):
        return metrics(self.ports.http)

    def log_text(self):
        out = []
        for p in self.hub.logs:
            with open(p, errors="replace") as f:
                out.append(f.read())
        return "".join(out)


class Cluster:
    """redis-server + nodes fedhub processes + HAProxy, on loopback.

    cluster=False starts the nodes without a [cluster] section (independent
    hubs behind one balancer, no Redis): what the PROXY cases need.
    extra_hub / extra_conf: text added to every node's [hub] section / after it
    (static routes, more components); node_extra(i) -> text for node i only.
    """

    def __init__(self, tmp, base, nodes=3, pki=None, cluster=True, extra_hub="", extra_conf="",
                 node_extra=None, proxy_v1=False, workers=1, cluster_conf=None, lease_ms=2000):
        self.tmp, self.base, self.pki, self.cluster = tmp, base, pki, cluster
        self.extra_hub, self.extra_conf, self.node_extra = extra_hub, extra_conf, node_extra
        self.workers, self.cluster_conf, self.lease_ms = workers, cluster_conf, lease_ms
        self.cluster_secret = os.path.join(tmp, "cluster.key")
        write_secret(self.cluster_secret)
        self.redis = Redis(tmp, base) if cluster else None
        self.secret = os.path.join(tmp, "dialback.key")
        with open(self.secret, "w") as f:  # the same on every node (README "Deployment")
            f.write("cluster-test-dialback-secret-0123456789\n")
        os.chmod(self.secret, 0o600)
        self.nodes = [Node(self, i) for i in range(1, nodes + 1)]
        self.haproxy_s2s, self.haproxy_tls = base + 1, base + 2
        self.haproxy_v1_s2s, self.haproxy_v1_tls = base + 3, base + 4
        with open(EXAMPLE) as f:
            example = f.read()
        ports = [n.ports for n in self.nodes]
        self.haproxy = HAProxy(tmp, "haproxy", make_haproxy_cfg(example, self.haproxy_s2s, self.haproxy_tls, ports),
                               (self.haproxy_s2s, self.haproxy_tls))
        self.haproxy_v1 = None
        if proxy_v1:
            self.haproxy_v1 = HAProxy(tmp, "haproxy-v1",
                                      make_haproxy_cfg(example, self.haproxy_v1_s2s, self.haproxy_v1_tls, ports,
                                                       proxy_v1=True),
                                      (self.haproxy_v1_s2s, self.haproxy_v1_tls))
        self.why = ""

    def node(self, i):
        return self.nodes[i - 1]

    def node_conf(self, n):
        p = n.ports
        tls = ""
        if self.pki:
            tls = "ca_file %s\n" % self.pki.ca
        conf = """[hub]
workers %d
domain hub.fake
listen s2s 127.0.0.1:%d tls optional proxy_protocol
listen s2s-tls 127.0.0.1:%d proxy_protocol
listen s2s 127.0.0.1:%d tls optional
listen s2s-tls 127.0.0.1:%d
listen component 127.0.0.1:%d
http 127.0.0.1:%d
control_socket %s
proxy_from 127.0.0.1
dialback_secret_file %s
log_level debug
connect_timeout 3
retry_min 1
%s%s""" % (self.workers, p.s2s, p.s2s_tls, p.s2s_direct, p.tls_direct, p.comp, p.http, n.ctl, self.secret, tls,
           self.extra_hub)
        if not self.pki:  # no certificate: no TLS listener can work
            conf = re.sub(r"^listen s2s-tls .*\n", "", conf, flags=re.M)
        if self.cluster:
            conf += (self.cluster_conf or CLUSTER_CONF) % {"redis": self.base, "node": n.i, "port": p.node,
                                                          "secret": self.cluster_secret, "lease": self.lease_ms}
        if self.pki:
            conf += "[domain echo.fake]\ncert %s\nkey %s\n" % (self.pki.cert("hub"), self.pki.key)
        conf += "[component echo.fake]\nsecret s3cret\n" + self.extra_conf
        if self.node_extra:
            conf += self.node_extra(n.i)
        return conf

    def start(self):
        if self.redis and not self.redis.start():
            self.why = "redis-server did not start on %d" % self.base
            return False
        for n in self.nodes:
            if not n.hub.start():
                self.why = "node %d did not start (see %s)" % (n.i, n.hub.logs[-1])
                return False
        for h in (self.haproxy, self.haproxy_v1):
            if h and not h.start():
                self.why = h.why
                return False
        return True

    def kill9(self, i):
        n = self.node(i)
        n.hub.kill()
        n.killed = True

    def dump(self, tail=3000):
        for n in self.nodes:
            print("---- node %d" % n.i)
            n.hub.dump_logs(tail)
        for h in (self.haproxy, self.haproxy_v1):
            if h:
                print("---- %s (last %d bytes)" % (os.path.basename(h.logpath), tail))
                print(h.text()[-tail:])

    def finish(self, results):
        """Every node not killed on purpose: SIGTERM -> exit 0, never died, no
        sanitizer report. Then HAProxy and Redis are stopped, and the logs
        printed if anything failed."""
        for h in (self.haproxy, self.haproxy_v1):
            if h:
                h.stop()
        for n in self.nodes:
            if n.killed:
                n.hub.stop()
                reports = n.hub.sanitizer_reports()
                results.check("node %d (killed): no sanitizer report" % n.i, not reports, "\n".join(reports))
                continue
            rc = n.hub.stop()
            results.check("node %d exits 0 on SIGTERM" % n.i, rc == 0, rc)
            reports = n.hub.sanitizer_reports()
            results.check("node %d: no sanitizer report" % n.i, not reports, "\n".join(reports))
        if self.redis:
            self.redis.stop()
        if not results.all_ok():
            self.dump()
        if os.environ.get("FEDHUB_KEEP_LOGS") or os.environ.get("FHIT_KEEP"):
            print("logs kept in", self.tmp)
        else:
            subprocess.call(["rm", "-rf", self.tmp])


# The [cluster] section of every node: %(redis)d Redis's port, %(node)d the
# node's number, %(port)d its node-to-node port, %(secret)s the cluster
# secret's file, %(lease)d lease_time in ms.
CLUSTER_CONF = """[cluster]
redis 127.0.0.1:%(redis)d
node_id node%(node)d
node_listen 127.0.0.1:%(port)d
cluster_secret_file %(secret)s
lease_time %(lease)dms
redis_timeout 300ms
"""


def write_secret(path):
    with open(path, "w") as f:  # 32..256 bytes, not readable by others
        f.write("cluster-test-secret-0123456789abcdef0123456789\n")
    os.chmod(path, 0o600)


def cluster_supported(base):
    """True when this fedhub accepts the [cluster] section written here
    (`fedhub -t`): the t_cluster* scripts then run clustered."""
    import tempfile
    from hubproc import FEDHUB
    d = tempfile.mkdtemp(prefix="fedhub-clck-")
    try:
        write_secret(os.path.join(d, "cluster.key"))
        p = os.path.join(d, "c.conf")
        with open(p, "w") as f:
            f.write("[hub]\nlisten s2s 127.0.0.1:%d\n" % (base + 99) + CLUSTER_CONF % {
                "redis": base, "node": 1, "port": base + 98, "secret": os.path.join(d, "cluster.key"),
                "lease": 2000})
        r = subprocess.run([os.environ.get("FEDHUB", FEDHUB), "-t", "-c", p], capture_output=True, text=True,
                           timeout=20)
        return r.returncode == 0
    finally:
        subprocess.call(["rm", "-rf", d])


class Collector:
    """A component's inbound elements, read in a thread: ids of messages and
    of bounces (type='error') in arrival order, and the first bounce itself."""

    def __init__(self, comp):
        self.comp, self.msgs, self.errors, self.first, self.lock = comp, [], [], None, threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                el = self.comp.r.element(timeout=3600)
            except (EOFError, OSError):
                return
            with self.lock:
                if attr(el, "type") == "error":
                    self.errors.append(attr(el, "id"))
                    self.first = self.first or el
                else:
                    self.msgs.append(attr(el, "id"))

    def snapshot(self):
        """(message ids, bounce ids), copies."""
        with self.lock:
            return list(self.msgs), list(self.errors)
