#!/usr/bin/env python3
"""Logs an operator can use: a stream error's line names the condition, the
peer address and the domains; repeated lines are rate limited and the
suppressed ones counted; log_format json writes one parseable object per line;
under the journal (JOURNAL_STREAM) lines carry <N> priorities and no
timestamp; the per-stanza trace appears at debug only."""
import json, os, re, socket, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from fakepeer import Component, RemoteServer  # noqa: E402
from hubproc import Hub, Results  # noqa: E402

S2S, COMP, REMOTE = 24411, 24412, 24414
CONF = """
[hub]
workers 2
domain hub.lfake
listen s2s 127.0.0.1:%d
listen component 127.0.0.1:%d
connect_timeout 3
%s
[component echo.lfake]
secret s3cret
[route remote.lfake]
connect 127.0.0.1:%d
"""
BURST = 20
LIMIT = 3

T = Results()
check = T.check


class LogHub(Hub):
    """A hub on this script's configuration (extra: more [hub] lines), in a
    directory of its own under tmp, started at once; never under the
    journal unless env says so."""

    def __init__(self, tmp, name, extra, env=None, log_file_first=False):
        """log_file_first: create the log file before the environment is
        computed (the journal case names the file's device and inode)."""
        self.name = name
        d = os.path.join(tmp, name)
        os.makedirs(d)
        if log_file_first:
            open(os.path.join(d, "hub.1.log"), "w").close()
        env = dict({"JOURNAL_STREAM": None}, **(env(d) if callable(env) else env or {}))
        super().__init__(CONF % (S2S, COMP, extra, REMOTE), d, ready_ports=(COMP,), env=env)
        self.start()

    def stop(self):
        rc = super().stop(grace=5)
        check("no sanitizer report in the %s hub's log" % self.name, not self.sanitizer_reports(),
              self.sanitizer_reports())
        return rc

    def text(self):
        with open(self.logs[-1], errors="replace") as f:
            return f.read()


def wait_for(fn, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    return fn()


def spoof(rs):
    """An authenticated inbound stream that then sends from a domain it did
    not authenticate: invalid-from (RFC 6120 §4.9.3.10). Returns its port."""
    o = rs.connect_out(S2S, "echo.lfake")
    o.auth("echo.lfake")
    port = o.s.getsockname()[1]
    o.send("<message from='u@remote.lfake' to='bot@echo.lfake' id='m1'><body>hi</body></message>")
    o.send("<message from='u@spoof.lfake' to='bot@echo.lfake' id='x1'/>")
    try:
        while True:
            o.recv(3)
    except (EOFError, OSError):
        pass
    o.s.close()
    return port


def garbage():
    s = socket.create_connection(("127.0.0.1", S2S), timeout=3)
    s.sendall(b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
              b"to='echo.lfake' version='1.0'><<<")
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()


def text_mode(tmp, rs):
    hub = LogHub(tmp, "text", "log_level info\nlog_rate_limit %d" % LIMIT)
    c = Component(COMP, "echo.lfake", "s3cret")
    spoof(rs)
    line = wait_for(lambda: [l for l in hub.text().splitlines() if "stream error invalid-from" in l])
    check("a stream error is logged at info with its condition", line and " info " in line[0], hub.text()[-2000:])
    check("... and the connection id, peer address and domains",
          line and re.search(r"\[c\d+ 127\.0\.0\.1 remote\.lfake->echo\.lfake\] stream error invalid-from", line[0]),
          line)
    closed = wait_for(lambda: [l for l in hub.text().splitlines() if "s2s in closed" in l])
    check("the close is logged at info with the link's context",
          closed and re.search(r" info .*\[c\d+ 127\.0\.0\.1 remote\.lfake->echo\.lfake\] s2s in closed", closed[0]),
          closed)
    check("no stanza trace at info", "stanza message" not in hub.text())

    # the rate limit: BURST identical stream errors within about a second
    time.sleep(1.1)  # a fresh one-second window for the statement
    t0 = time.time()
    for _ in range(BURST):
        garbage()
    burst_s = time.time() - t0
    time.sleep(1.1)
    garbage()  # the next line of the statement reports what was suppressed
    log = wait_for(lambda: "similar lines suppressed" in hub.text() and hub.text())
    shown = len(re.findall(r"stream error not-well-formed", log))
    supp = sum(int(n) for n in re.findall(r"(\d+) similar lines suppressed \(\"stream error", log))
    # the burst may straddle window boundaries: LIMIT per started second
    check("repeated lines are limited per second", supp > 0 and shown <= LIMIT * (int(burst_s) + 2) + 1,
          "shown %d suppressed %d in %.2fs" % (shown, supp, burst_s))
    check("suppressed lines are counted: shown + suppressed == sent", shown + supp == BURST + 1,
          "shown %d suppressed %d" % (shown, supp))
    c.close()
    check("text hub exits 0", hub.stop() == 0)


def json_mode(tmp, rs):
    hub = LogHub(tmp, "json", "log_level debug\nlog_format json")
    c = Component(COMP, "echo.lfake", "s3cret")
    spoof(rs)
    wait_for(lambda: "invalid-from" in hub.text())
    c.close()
    check("json hub exits 0", hub.stop() == 0)
    bad, objs = [], []
    for l in hub.text().splitlines():
        try:
            objs.append(json.loads(l))
        except ValueError:
            bad.append(l)
    check("every line is one JSON object", objs and not bad, bad[:3])
    keys = {"ts", "level", "conn", "peer", "local", "remote", "msg"}
    check("with the keys ts, level, conn, peer, local, remote, msg", all(set(o) == keys for o in objs),
          [o for o in objs if set(o) != keys][:2])
    err = [o for o in objs if "stream error invalid-from" in o["msg"]]
    check("a stream error's object names the peer and domains",
          err and err[0]["peer"] == "127.0.0.1" and err[0]["remote"] == "remote.lfake"
          and err[0]["local"] == "echo.lfake" and err[0]["level"] == "info" and re.match(r"c\d+$", err[0]["conn"]),
          err)
    trace = [o for o in objs if o["msg"].startswith("stanza message from=remote.lfake to=echo.lfake id='m1' size=")]
    check("at debug each routed stanza has a trace line", len(trace) == 1 and trace[0]["level"] == "debug", trace)


def journal_mode(tmp):
    # JOURNAL_STREAM names the stream systemd connected as DEV:INODE; here,
    # the log file the hub's stderr is. A stale value (stderr redirected
    # since) must not count.
    p = os.path.join(tmp, "other.log")
    open(p, "w").close()
    st = os.stat(p)
    hub = LogHub(tmp, "stale", "log_level info", env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
    check("stale hub exits 0", hub.stop() == 0)
    check("a JOURNAL_STREAM that is not stderr changes nothing",
          re.match(r"\d{4}-\d\d-\d\dT\S+ info  fedhub ", hub.text()), hub.text()[:200])
    def stream_of(d):
        st = os.stat(os.path.join(d, "hub.1.log"))
        return {"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)}
    hub = LogHub(tmp, "journal", "log_level info", env=stream_of, log_file_first=True)
    check("journal hub exits 0", hub.stop() == 0)
    lines = hub.text().splitlines()
    check("under the journal lines start with a syslog priority",
          lines and all(re.match(r"<[3467]>(error|warn|info|debug) ", l) for l in lines), lines[:3])
    check("... info is <6>, and no timestamp",
          any(l.startswith("<6>info  fedhub ") for l in lines) and not any(re.search(r"\d{4}-\d\d-\d\dT", l)
                                                                          for l in lines), lines[:3])


def main():
    tmp = tempfile.mkdtemp(prefix="fedhub-logs-")
    rs = RemoteServer("remote.lfake", REMOTE)
    try:
        text_mode(tmp, rs)
        json_mode(tmp, rs)
        journal_mode(tmp)
    except Exception as e:  # a case that broke the script is a failure
        check("the cases ran to the end", False, repr(e))
    finally:
        rs.close()
        if not T.all_ok():
            for n in ("text", "json", "journal"):
                p = os.path.join(tmp, n, "hub.1.log")
                if os.path.exists(p):
                    print("---- %s/hub.1.log" % n)
                    print(open(p, errors="replace").read()[-3000:])
        subprocess.call(["rm", "-rf", tmp])
    T.exit()


if __name__ == "__main__":
    main()
