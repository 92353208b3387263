"""fhit_peers: the real federation peers, each in a directory of the Harness.

  Prosody   host pro.fhtest, plaintext c2s and s2s, dialback, resolving through
            dnsmasq with lua-unbound (unbound = { resolvconf = ... }).
  ejabberd  host ejd.fhtest, its own node name and Erlang distribution port (no
            epmd), resolving through dnsmasq. ejabberd looks SRV records up with
            inet_res (which honours ERL_INETRC's resolv_conf) but then resolves the
            SRV *target* with net:getaddrinfo, i.e. glibc and /etc/resolv.conf: that
            is where "DNS lookup failed: enoname" came from. So ejabberd runs in a
            private mount namespace in which /etc/resolv.conf is bind-mounted to a
            file naming 127.0.0.2; the machine's own resolver is untouched.
"""

import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fhit_base import DNS_IP, EJD, EJD2, LOOP, PASSWORD, PORTS, PRO, PRO2, log, port_free, wait_port  # noqa: E402


PROSODY_CFG = """-- written by tests/integration/lib/fhit_peers.py
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

EJABBERD_YML = """# written by tests/integration/lib/fhit_peers.py
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

EJABBERDCTL_CFG = """# written by tests/integration/lib/fhit_peers.py
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
            yml = "# written by tests/integration/lib/fhit_peers.py (merged)\n" + yaml.safe_dump(base, sort_keys=False)
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
