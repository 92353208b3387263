"""backends: unmodified Prosody and ejabberd behind fedhub, and the outside world.

Four real servers on loopback, each started once per script (lib/fhit.py
starts them; this file only says how they are wired):

  pb.fhbk  Prosody 0.12   behind the hub ("backend"), user alice; it also
           hosts pb2.fhbk, user erin (one backend, two domains)
  pt.fhbk  Prosody 0.12   behind the hub, user frank: the same snippet plus
           a certificate and s2s_require_encryption = true, its [backend]
           tls required (the internal link encrypted both ways)
  eb.fhbk  ejabberd 23.01 behind the hub, user bob; its outbound s2s leaves
           from 127.0.0.8 (outgoing_s2s_ipv4_address), the address the hub's
           [backend] allow_from names
  po.fhbk  Prosody 0.12   outside, user carol: TLS required, certificates
           only (s2s_require_encryption + s2s_secure_auth)
  eo.fhbk  ejabberd 23.01 outside, user dave: STARTTLS required, no
           mod_s2s_dialback: SASL EXTERNAL or nothing

Three views of DNS, three dnsmasq instances (TLD .fhbk, NXDOMAIN for the
rest unless said):

  127.0.0.6  Prosody backend's (split horizon by SRV): every _xmpp-server._tcp
             SRV the tests use names the hub's s2s listener. Prosody reads it
             through lua-unbound (unbound = { resolvconf = ... }).
  127.0.0.5  ejabberd backend's (split horizon by address): every name under
             .fhbk has the hub's address and no SRV record, so ejabberd falls
             back to A and dials its outgoing_s2s_port, the hub's. It reads
             it through ERL_INETRC and, for addresses, glibc: it runs in a
             private mount namespace with that resolv.conf on /etc/resolv.conf.
  127.0.0.7  the world's: the backends' domains name the hub, the outside
             servers' domains name themselves. The hub and the outside
             servers resolve with it.

With hub=False the same servers federate directly (the backends' view then
names the real servers, and the backends get certificates so that the
outside servers' TLS requirements hold): the proof that the harness works
before fedhub is put in the middle (t_backend_peers.py).

The backends' configurations are the generated fhit ones plus the snippets a
provider is told to use, read from examples/backends/ (prosody.cfg.lua,
ejabberd.yml) with only their addresses, ports and paths replaced: if the
documented snippet stops working, these tests fail. Every certificate comes
from a CA made for the run (fhit.PKI); the hub holds the backends' domains'
certificates and the test CA.

Ports 26800-26999 (the table in tests/integration/README.md).
"""

import asyncio
import os
import re
import subprocess
import time
import uuid

import fhit
from fhit import check, CaseFailed, LOOP

TLD = "fhbk"
IN_DNS = "127.0.0.6"
IN_DNS_A = "127.0.0.5"
OUT_DNS = "127.0.0.7"
EB_SOURCE = "127.0.0.8"     # ejabberd backend's outbound source address
STRANGER = "127.0.0.9"      # a source address no [backend] lists

PB, EB, PO, EO = "pb." + TLD, "eb." + TLD, "po." + TLD, "eo." + TLD
PB2 = "pb2." + TLD
PT = "pt." + TLD
HUB = "hub." + TLD
NOPE = "nope." + TLD

PORTS = {
    "hub_s2s": 26869, "hub_comp": 26847, "hub_http": 26880,
    "pb_c2s": 26822, "pb_s2s": 26870,
    "pt_c2s": 26824, "pt_s2s": 26874,
    "eb_c2s": 26832, "eb_s2s": 26871, "eb_dist": 26890,
    "po_c2s": 26842, "po_s2s": 26872,
    "eo_c2s": 26852, "eo_s2s": 26873, "eo_dist": 26891,
}

USERS = {"alice": PB, "bob": EB, "carol": PO, "dave": EO, "erin": PB2, "frank": PT}
C2S = {"alice": "pb_c2s", "bob": "eb_c2s", "carol": "po_c2s", "dave": "eo_c2s", "erin": "pb_c2s", "frank": "pt_c2s"}

EXAMPLES = os.path.join(fhit.REPO, "examples", "backends")


def example(name, subst):
    """The text of examples/backends/NAME with each key of subst replaced by
    its value. Every key must occur: a snippet edited without the test is an
    error here, not a test that silently stops testing the docs."""
    with open(os.path.join(EXAMPLES, name)) as f:
        text = f.read()
    for old, new in subst.items():
        if old not in text:
            raise RuntimeError("examples/backends/%s no longer contains %r (update the test with it)" % (name, old))
        text = text.replace(old, new)
    return text


def prosody_backend_lua(h, dns_name, s2s_port=PORTS["pb_s2s"], encrypt=False):
    """encrypt: the TLS variant's one change, s2s_require_encryption = true."""
    return example("prosody.cfg.lua", {
        '"/etc/prosody/fedhub-resolv.conf"': '"%s"' % h.path(fhit.resolv_conf_name(dns_name)),
        '"10.0.0.5"': '"%s"' % LOOP,
        "{ 5269 }": "{ %d }" % s2s_port,
        "s2s_require_encryption = false": "s2s_require_encryption = %s" % ("true" if encrypt else "false"),
    })


# The TLS variant (README: "To encrypt the internal link"): the hub's
# [backend] says tls required; the backend has a certificate and requires
# encryption, but still takes dialback (the hub has no certificate for the
# remote domains, and does not check the backend's).
BACKEND_TLS_SECTION = """
[domain %s]
cert %s
key %s

[backend prosody-tls]
domain %s
connect %s:%d
tls required
"""


def ejabberd_backend_yml():
    import yaml
    return yaml.safe_load(example("ejabberd.yml", {
        '"10.0.0.6"': '"%s"' % EB_SOURCE,
        "outgoing_s2s_port: 5269": "outgoing_s2s_port: %d" % PORTS["hub_s2s"],
    }))


def hub_sections(pki):
    """The [domain] and [backend] sections of the hub: examples/backends/fedhub.conf
    with the test's names, addresses and certificates."""
    pb_crt, pb_key = pki.leaf("hub-pb", [PB])
    pb2_crt, pb2_key = pki.leaf("hub-pb2", [PB2])
    eb_crt, eb_key = pki.leaf("hub-eb", [EB])
    pt_crt, pt_key = pki.leaf("hub-pt", [PT])
    return example("fedhub.conf", {
        "/etc/fedhub/certs/example.org.pem": pb_crt, "/etc/fedhub/certs/example.org.key": pb_key,
        "/etc/fedhub/certs/example.com.pem": pb2_crt, "/etc/fedhub/certs/example.com.key": pb2_key,
        "/etc/fedhub/certs/example.net.pem": eb_crt, "/etc/fedhub/certs/example.net.key": eb_key,
        "connect 10.0.0.5:5269": "connect %s:%d" % (LOOP, PORTS["pb_s2s"]),
        "connect 10.0.0.6:5269": "connect %s:%d" % (LOOP, PORTS["eb_s2s"]),
        "allow_from 10.0.0.6": "allow_from %s" % EB_SOURCE,
        "example.org": PB, "example.com": PB2, "example.net": EB,
    }) + BACKEND_TLS_SECTION % (PT, pt_crt, pt_key, PT, LOOP, PORTS["pt_s2s"])


def hub_config(h, pki, extra_hub=()):
    """fedhub's router.conf: the [hub] of fhit (on this plan's ports, the
    world's DNS view, the test CA) and hub_sections()."""
    return fhit.fedhub_config(
        h, components=(), ports=PORTS, dns_ip=OUT_DNS, hub_domain=HUB, s2s_tls="optional",
        extra_hub="\n".join(["ca_file %s" % pki.ca, "connect_timeout 3s"] + list(extra_hub)),
        sections=hub_sections(pki))


class World:
    """The DNS views, the PKI and the four servers; with hub=True the
    backends' traffic is pointed at PORTS['hub_s2s'] (the hub itself is the
    script's: hub_config() below is a start for its configuration)."""

    def __init__(self, h, hub=True):
        self.h, self.hub = h, hub
        self.pki = fhit.PKI(h)
        self.servers = {}
        self.users = {}

    # ---- DNS

    def start_dns(self):
        hub = PORTS["hub_s2s"]
        real = {PB: PORTS["pb_s2s"], PB2: PORTS["pb_s2s"], EB: PORTS["eb_s2s"], PO: PORTS["po_s2s"],
                EO: PORTS["eo_s2s"]}
        if self.hub:
            inside = {d: hub for d in (EO, PO, EB, PB, PB2, PT, HUB)}
            outside = {PB: hub, PB2: hub, PT: hub, EB: hub, HUB: hub, PO: real[PO], EO: real[EO]}
        else:
            inside = dict(real)
            outside = dict(real)
        fhit.start_dnsmasq(self.h, inside, ip=IN_DNS, name="dns_in", tld=TLD)
        if self.hub:
            fhit.start_dnsmasq(self.h, {}, ip=IN_DNS_A, name="dns_in_a", tld=TLD, addresses={TLD: LOOP})
        fhit.start_dnsmasq(self.h, outside, ip=OUT_DNS, name="dns_out", tld=TLD)
        self.dns = {"in": inside, "out": outside}

    # ---- servers

    def _prosody_backend(self):
        tls = None
        if not self.hub:
            crt = self.pki.leaf("pb", [PB, PB2])
            tls = fhit.ProsodyTLS(self.pki.ca, {PB: crt, PB2: crt}, secure=False)
        extra = ""
        if self.hub:
            # mod_offline on top of fhit's modules: what the hub delivers
            # while the user is logged out (the backend-restart case) waits.
            extra = prosody_backend_lua(self.h, "dns_in") + \
                '\nmodules_enabled = { "roster"; "saslauth"; "dialback"; "disco"; "ping"; "posix"; "offline" }\n'

        p = fhit.Prosody(self.h, host=PB, c2s=PORTS["pb_c2s"], s2s=PORTS["pb_s2s"], extra_hosts=(PB2,), name="pb",
                         tls=tls, resolv=self.h.path(fhit.resolv_conf_name("dns_in")), extra_global=extra)
        p.register("alice")
        p.register("erin", host=PB2)
        p.start()
        return p

    def _prosody_tls_backend(self):
        crt = self.pki.leaf("pt", [PT])
        tls = fhit.ProsodyTLS(self.pki.ca, {PT: crt}, secure=False)
        extra = prosody_backend_lua(self.h, "dns_in", PORTS["pt_s2s"], encrypt=True)
        p = fhit.Prosody(self.h, host=PT, c2s=PORTS["pt_c2s"], s2s=PORTS["pt_s2s"], extra_hosts=(), name="pt",
                         tls=tls, resolv=self.h.path(fhit.resolv_conf_name("dns_in")), extra_global=extra)
        p.register("frank")
        p.start()
        return p

    def _prosody_outside(self):
        tls = fhit.ProsodyTLS(self.pki.ca, {PO: self.pki.leaf("po", [PO])}, secure=True)
        p = fhit.Prosody(self.h, host=PO, c2s=PORTS["po_c2s"], s2s=PORTS["po_s2s"], extra_hosts=(), name="po",
                         tls=tls, resolv=self.h.path(fhit.resolv_conf_name("dns_out")))
        p.register("carol")
        p.start()
        return p

    def _ejabberd_backend(self):
        tls, merge = None, None
        if self.hub:
            merge = ejabberd_backend_yml()
        else:
            tls = fhit.EjabberdTLS(self.pki.ca, [self.pki.combined("eb", [EB])], secure=False)
            merge = {"outgoing_s2s_ipv4_address": EB_SOURCE}
        e = fhit.Ejabberd(self.h, host=EB, node="fhbk1@localhost", c2s=PORTS["eb_c2s"], s2s=PORTS["eb_s2s"],
                          dist=PORTS["eb_dist"], extra_hosts=(), tls=tls, name="eb",
                          dns_ip=IN_DNS_A if self.hub else IN_DNS, merge=merge)
        e.start()
        e.register("bob")
        return e

    def _ejabberd_outside(self):
        tls = fhit.EjabberdTLS(self.pki.ca, [self.pki.combined("eo", [EO])], secure=True)
        e = fhit.Ejabberd(self.h, host=EO, node="fhbk2@localhost", c2s=PORTS["eo_c2s"], s2s=PORTS["eo_s2s"],
                          dist=PORTS["eo_dist"], extra_hosts=(), tls=tls, name="eo", dns_ip=OUT_DNS)
        e.start()
        e.register("dave")
        return e

    async def start_servers(self, which=None):
        """Starts them at once (ejabberd takes seconds); raises on the first
        that fails, after every start has ended."""
        makers = {"pb": self._prosody_backend, "eb": self._ejabberd_backend,
                  "po": self._prosody_outside, "eo": self._ejabberd_outside}
        if self.hub:
            makers["pt"] = self._prosody_tls_backend
        which = which or tuple(makers)
        loop = asyncio.get_running_loop()
        futs = {n: loop.run_in_executor(None, makers[n]) for n in which}
        errors = []
        for n, f in futs.items():
            try:
                self.servers[n] = await f
            except Exception as e:
                errors.append("%s: %s" % (n, e))
        if errors:
            for n in which:
                self.h.dump_logs(self.logs_of(n), tail=30)
            raise RuntimeError("; ".join(errors))

    def logs_of(self, n):
        s = self.servers.get(n)
        if s is not None:
            return s.logs
        return ["%s/prosody.log" % n, "%s.out" % n] if n in ("pb", "po", "pt") else \
            ["%s/log/ejabberd.log" % n, "%s/log/error.log" % n, "%s.out" % n]

    def all_logs(self):
        return [f for n in ("pb", "eb", "po", "eo", "pt") for f in self.logs_of(n)]

    def pid_of(self, n):
        """The PID of the server process itself (for ejabberd the beam.smp in
        the process group fhit started, not the unshare/sh/su chain)."""
        p = self.servers[n].proc
        if n in ("pb", "po", "pt"):
            return p.pid
        out = subprocess.run(["ps", "-eo", "pid=,ppid=,comm="], capture_output=True, text=True, timeout=10).stdout
        kids, comm = {}, {}
        for line in out.splitlines():
            f = line.split(None, 2)
            if len(f) == 3:
                kids.setdefault(int(f[1]), []).append(int(f[0]))
                comm[int(f[0])] = f[2]
        todo = [p.pid]
        while todo:
            pid = todo.pop()
            if comm.get(pid) == "beam.smp":
                return pid
            todo += kids.get(pid, [])
        raise CaseFailed("no beam.smp below %s's pid %d" % (n, p.pid))

    # ---- users

    async def login_all(self, names=None):
        User = fhit.make_user_class()
        names = names or [n for n in USERS if self.hub or n != "frank"]
        for n in names:
            u = self.new_user(User, n, PORTS[C2S[n]])
            await u.login(30)
        return self.users

    def new_user(self, User, n, port):
        """A User that also queues every presence stanza it gets (u.presences)."""
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import StanzaPath
        u = User("%s@%s/fhbk" % (n, USERS[n]), fhit.PASSWORD, port)
        u.presences = asyncio.Queue()
        u.register_handler(Callback("bk presence", StanzaPath("presence"), u.presences.put_nowait))
        self.users[n] = u
        return u

    async def relogin(self, n):
        """A fresh session for user n (after its server restarted)."""
        self.users[n].close()
        u = self.new_user(fhit.make_user_class(), n, PORTS[C2S[n]])
        await u.login(30)
        return u

    def close_users(self):
        for u in self.users.values():
            u.close()


def jid(name):
    return "%s@%s" % (name, USERS[name])


async def message_round_trip(src, dst, timeout=25):
    """src's message reaches dst, dst's reply reaches src; an error stanza on
    either side fails with its condition."""
    for a, b in ((src, dst), (dst, src)):
        token = uuid.uuid4().hex
        a.send_message(mto=b.boundjid.bare, mbody=token, mtype="chat")
        try:
            m = await b.next_message(timeout, lambda m: m["body"] == token)
        except CaseFailed:
            errs = [e for e in list(a.inbox._queue) if e["type"] == "error"]
            raise CaseFailed("%s -> %s: not delivered in %d s%s" % (
                a.boundjid.bare, b.boundjid.bare, timeout,
                "; bounced with %s" % fhit.error_condition(errs[-1]) if errs else ""))
        check(m["from"].bare == a.boundjid.bare, "from is %s" % m["from"])


def conns_of(pid):
    """Established TCP connections of a process: [(local, peer)] as 'ip:port'."""
    out = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True, text=True, timeout=10).stdout
    res = []
    for line in out.splitlines():
        if "pid=%d," % pid not in line:
            continue
        f = line.split()
        res.append((f[2], f[3]))
    return res


def owners_of_conns_to(port):
    """PIDs owning the client side of established connections to 127.0.0.1:port."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", "dst", "%s:%d" % (LOOP, port)],
                         capture_output=True, text=True, timeout=10).stdout
    pids = set()
    for line in out.splitlines():
        pids.update(int(x) for x in re.findall(r"pid=(\d+),", line))
    return pids


def wait_until(pred, timeout, what):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise CaseFailed("%s: not within %d s" % (what, timeout))
        time.sleep(0.1)
