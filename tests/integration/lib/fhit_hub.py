"""fhit_hub: fedhub under test (its config, its process, its exit check) and
what scripts observe of it: HTTP endpoints, metrics, log lines, TCP links."""

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fhit_base import (DNS_IP, ECHO, ECHO2, HUB, LOOP, PORTS, REPO, SECRET, CaseFailed,  # noqa: E402
                       check, log, port_free, wait_port)
from hubproc import SANITIZER, parse_metrics  # noqa: E402


def fedhub_binary():
    b = os.environ.get("FEDHUB", os.path.join(REPO, "fedhub"))
    return b if os.path.isfile(b) and os.access(b, os.X_OK) else None


def fedhub_config(h, components=(ECHO, ECHO2), routes=None, extra_hub="", s2s_tls="optional", domains=None,
                  ports=None, dns_ip=DNS_IP, hub_domain=HUB, sections=""):
    """s2s_tls: the STARTTLS policy of the s2s listener. domains: {name: (cert,
    key)}, one [domain] section each, in order. ports, dns_ip, hub_domain:
    another plan than fhit's. sections: text appended as it is."""
    ports = ports or PORTS
    lines = ["# written by tests/integration/lib/fhit_hub.py", "[hub]", "workers 2", "domain %s" % hub_domain,
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
