"""hubproc: the fedhub process under test and the TAP tally, for the scripts
that drive fedhub with scripted peers (t_robust, t_route_fake, t_tls_fake,
t_ctl, t_drain, t_flow, t_reload and the suites on lib/hostile.py), and what
they share: the [hub] section's head, /health and /metrics.

    T = Results()
    hub = Hub(conf_text, tmpdir, ready_ports=(COMP,))
    T.check("hub starts", hub.start())
    ...
    hub.finish(T)          # SIGTERM -> exit 0, no sanitizer report, logs on failure
    T.exit()               # prints "N passed, N failed", exits 1 on any failure

Sanitizer builds (FEDHUB=build/asan/fedhub, build/tsan/fedhub) get their
options from here; a sanitizer report in any of the hub's logs fails finish().
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
FEDHUB = os.path.abspath(os.environ.get("FEDHUB", os.path.join(ROOT, "fedhub")))

# liburcu is not built with ThreadSanitizer, so TSan cannot see the ordering
# its grace periods (call_rcu -> free) and its publication (cds_lfht_add
# after the entry is filled) provide, and reports the routing table's readers
# as racing with them. Only those two writer paths are silenced.
TSAN_SUPP = """race:entry_free_rcu
race:entry_new
"""
SANITIZER = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|WARNING: ThreadSanitizer")


class Results:
    """TAP lines and their tally."""

    def __init__(self):
        self.results = []

    def check(self, name, cond, detail=""):
        """Prints `ok NAME` or `not ok NAME  # detail`; returns cond as a bool."""
        self.results.append(bool(cond))
        print(("ok " if cond else "not ok ") + name + ("" if cond else "  # " + str(detail)[:400]), flush=True)
        return bool(cond)

    def all_ok(self):
        return bool(self.results) and all(self.results)

    def exit(self):
        """The summary line; exit status 0 only when something ran and all passed."""
        print("%d passed, %d failed" % (self.results.count(True), self.results.count(False)), flush=True)
        sys.exit(0 if self.all_ok() else 1)

    def run_script(self, start, cases, finish):
        """A script's body, then exit(). start() returns the first case,
        (name, ok, detail): the peers are up. Only when it passed, cases(closing)
        runs, appending to the list closing what must be closed at the end
        (scripted peers). An exception is a failed case, its traceback on
        stderr. Whatever happened, everything in closing is closed and
        finish(self) checks the hub's (or the cluster's) exit."""
        closing = []
        try:
            name, ok, detail = start()
            if self.check(name, ok, detail):
                cases(closing)
        except Exception as e:  # a case that broke the script is a failure
            traceback.print_exc()
            self.check("the cases ran to the end", False, repr(e))
        finally:
            for c in closing:
                c.close()
            finish(self)
        self.exit()


def hub_section(s2s, comp, http, dns=None, workers=2):
    """The head of the [hub] section the scripted-peer scripts share: the
    hub's own domain hub.fake, an s2s and a component listener and the http
    endpoint on loopback, and a DNS server port where nothing listens (the
    configurations name their peers in [route] sections)."""
    return ("[hub]\nworkers %d\ndomain hub.fake\nlisten s2s 127.0.0.1:%d\nlisten component 127.0.0.1:%d\n"
            "http 127.0.0.1:%d\n" % (workers, s2s, comp, http)
            + ("dns_server 127.0.0.1:%d\n" % dns if dns else ""))


def health(port, host="127.0.0.1"):
    """GET /health: (HTTP status, its JSON body); (0, the error) when the
    hub does not answer."""
    try:
        with urllib.request.urlopen("http://%s:%d/health" % (host, port), timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError as e:
        return 0, str(e)


def parse_metrics(body):
    """Prometheus text -> {name: value}; labelled samples keyed as written,
    e.g. 'fedhub_x_total{kind="s2s"}'."""
    out = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)(?:\s+-?\d+)?$", line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


def metrics(port, host="127.0.0.1"):
    """GET /metrics on the hub's http port, parsed by parse_metrics()."""
    with urllib.request.urlopen("http://%s:%d/metrics" % (host, port), timeout=3) as r:
        return parse_metrics(r.read().decode())


def sanitizer_scale(binary=None):
    """Sanitizer builds carry shadow memory (ThreadSanitizer several times the
    heap): memory bounds are scaled by this."""
    try:
        with open(binary or FEDHUB, "rb") as f:
            data = f.read()
    except OSError:
        return 1
    return 4 if b"__tsan_init" in data else 2 if b"__asan_init" in data else 1


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Hub:
    """The fedhub under test, one process per generation (a restart after a
    death is a new generation with a log of its own: hub.N.log)."""

    def __init__(self, conf_text, tmp, ready_ports, binary=None, env=None):
        """env: variables set for the process over this one's (None: unset)."""
        self.tmp, self.gen, self.proc, self.logs, self.log = tmp, 0, None, [], None
        self.env = env or {}
        self.binary = binary or FEDHUB
        self.ready_ports = (ready_ports,) if isinstance(ready_ports, int) else tuple(ready_ports)
        self.conf = os.path.join(tmp, "hub.conf")
        with open(self.conf, "w") as f:
            f.write(conf_text)
        self.deaths = []

    def start(self):
        """Starts a generation; True once every ready port accepts."""
        self.gen += 1
        path = os.path.join(self.tmp, "hub.%d.log" % self.gen)
        self.logs.append(path)
        self.log = open(path, "w")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1:quarantine_size_mb=16")
        supp = os.path.join(self.tmp, "tsan.supp")
        with open(supp, "w") as f:
            f.write(TSAN_SUPP)
        env.setdefault("TSAN_OPTIONS", "halt_on_error=0:suppressions=" + supp)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        for k, v in self.env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        self.proc = subprocess.Popen([self.binary, "-c", self.conf], stderr=self.log, stdout=self.log, env=env)
        deadline = time.time() + 10
        for port in self.ready_ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if self.proc.poll() is not None or time.time() > deadline:
                        return False
                    time.sleep(0.05)
        return True

    def poll(self):
        return self.proc.poll() if self.proc else -1

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    @property
    def returncode(self):
        return self.proc.returncode

    def stop(self, grace=10):
        """SIGTERM; returns the exit code, 'timeout' (then SIGKILL), or
        'dead (rc)' when it had died before."""
        if self.proc is None:
            return "never started"
        try:
            if self.proc.poll() is not None:
                return "dead (%s)" % self.proc.returncode
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
                return "timeout"
        finally:
            if self.log:
                self.log.close()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()

    def sanitizer_reports(self):
        reports = []
        for path in self.logs:
            with open(path, errors="replace") as f:
                text = f.read()
            m = SANITIZER.search(text)
            if m:
                reports.append("%s: %s" % (os.path.basename(path), text[m.start():m.start() + 600]))
        return reports

    def dump_logs(self, tail=4000):
        for path in self.logs:
            with open(path, errors="replace") as f:
                text = f.read()
            print("---- %s (last %d bytes)" % (os.path.basename(path), tail))
            print(text[-tail:])

    def finish(self, results, keep_env=("FEDHUB_KEEP_LOGS", "FHIT_KEEP")):
        """The end of a run: SIGTERM must make it exit 0, it must never have
        died, its logs must hold no sanitizer report; the logs are printed
        when anything failed, and the run's directory removed (unless one of
        keep_env is set)."""
        rc = self.stop()
        results.check("hub exits 0 on SIGTERM", rc == 0, rc)
        results.check("the hub never died", not self.deaths, self.deaths)
        reports = self.sanitizer_reports()
        results.check("no sanitizer report in the hub's logs", not reports, "\n".join(reports))
        if not results.all_ok():
            self.dump_logs()
        if any(os.environ.get(k) for k in keep_env):
            print("logs kept in", self.tmp)
        else:
            subprocess.call(["rm", "-rf", self.tmp])
