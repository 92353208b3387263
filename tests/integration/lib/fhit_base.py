"""fhit_base: the core of the fhit harness (see fhit.py): the port plan and
test names every fhit script shares, Harness (temp dir, lock, deadline, the
processes it started, the case tally), check()/CaseFailed, port helpers and
run_main().

Ports are fixed (21000-21899) because the SRV records carry them and one dnsmasq
serves them, so the scripts that use them take an exclusive lock and run one at
a time. Every process is started in its own session and stopped by its process
group id (so ejabberd's su/erl/beam chain goes with it), also when a case fails,
times out, or the script is interrupted.
"""

import asyncio
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback


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
