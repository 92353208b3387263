#!/usr/bin/env python3
"""Graceful drain: SIGTERM while a component is slow to read what the hub
queued for it. /health turns 503 "draining" at once, the listeners refuse new
connections, the queue flushes once the component reads again, every stanza
is delivered or bounced, and the hub exits 0 within drain_timeout + margin. A
second SIGTERM ends a drain at once (exit 0 too)."""
import os, re, signal, socket, subprocess, sys, tempfile, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from fakepeer import Component
from hubproc import FEDHUB, Results, health, hub_section

S2S, COMP, HTTP = 27369, 27447, 27380
DRAIN = 6
CONF = hub_section(S2S, COMP, HTTP, dns=27453) + """drain_timeout %d
send_queue_max 64m
[component a.fake]
secret s3cret
[component b.fake]
secret s3cret
""" % DRAIN

T = Results()
check = T.check


def start(tmp, name):
    conf = os.path.join(tmp, name + ".conf")
    open(conf, "w").write(CONF)
    log = open(os.path.join(tmp, name + ".log"), "w")
    hub = subprocess.Popen([FEDHUB, "-c", conf], stderr=log, stdout=log)
    for _ in range(100):
        if health(HTTP)[0] == 200:
            break
        time.sleep(0.05)
    return hub


def drain_under_load(tmp):
    hub = start(tmp, "hub1")
    try:
        a = Component(COMP, "a.fake", "s3cret")
        b = Component(COMP, "b.fake", "s3cret")
        # b does not read yet: beyond the kernel's buffers, what the hub
        # has for it stays queued in the hub
        N, pad = 6000, "x" * 4000
        # from a thread: back-pressure may make the hub stop reading a
        sender = threading.Thread(target=lambda: [a.send(
            "<message from='u@a.fake' to='v@b.fake' id='m%d'><body>%s</body></message>" % (i, pad))
            for i in range(N)], daemon=True)
        sender.start()
        time.sleep(1)
        t0 = time.time()
        hub.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        st, body = health(HTTP)
        check("drain_health_503_draining", st == 503 and isinstance(body, dict) and body.get("status") == "draining"
              and body.get("reason") == "SIGTERM", (st, body))
        try:
            socket.create_connection(("127.0.0.1", COMP), timeout=1).close()
            refused = False
        except OSError:
            refused = True
        check("drain_listeners_refuse_new_connections", refused)
        time.sleep(max(0, t0 + 2 - time.time()))  # longer than any fixed flush
        check("drain_waits_for_the_queue", hub.poll() is None, "hub exited before the queue flushed")
        # b reads again: everything it was sent must arrive, in order
        got, ids, bounced = 0, [], 0
        b.s.settimeout(DRAIN + 5)
        deadline = time.time() + DRAIN + 3
        closed_politely = False
        while time.time() < deadline:
            try:
                el = b.r.element(max(0.1, deadline - time.time()))
            except EOFError:
                break
            except OSError:
                break
            if el.startswith("<message"):
                m = re.search(r"id='m(\d+)'", el)
                ids.append(int(m.group(1)) if m else -1)
            if "</stream:stream>" in el or el.startswith("</stream"):
                closed_politely = True
        # the sender's side: bounces for anything that could not be delivered
        a.s.settimeout(1)
        try:
            while True:
                el = a.r.element(1)
                if el.startswith("<message") and "type='error'" in el:
                    bounced += 1
        except (EOFError, OSError):
            pass
        check("drain_every_stanza_delivered_or_bounced", len(ids) + bounced == N,
              "delivered %d bounced %d of %d" % (len(ids), bounced, N))
        check("drain_delivered_in_order", ids == sorted(ids), ids[:10])
        try:
            rc = hub.wait(DRAIN + 4 - (time.time() - t0))
        except subprocess.TimeoutExpired:
            rc = None
        el = time.time() - t0
        check("drain_exit_0_within_drain_timeout", rc == 0 and el < DRAIN + 4, "rc %s after %.1fs" % (rc, el))
        log = open(os.path.join(tmp, "hub1.log")).read()
        check("drain_logged", "drain (SIGTERM): listeners closed" in log, log[-400:])
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()


def second_sigterm(tmp):
    hub = start(tmp, "hub2")
    try:
        a = Component(COMP, "a.fake", "s3cret")
        b = Component(COMP, "b.fake", "s3cret")
        threading.Thread(target=lambda: [a.send(
            "<message from='u@a.fake' to='v@b.fake' id='n%d'><body>%s</body></message>" % (i, "y" * 4000))
            for i in range(6000)], daemon=True).start()
        time.sleep(1)
        hub.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        alive = hub.poll() is None
        t0 = time.time()
        hub.send_signal(signal.SIGTERM)
        try:
            rc = hub.wait(3)
        except subprocess.TimeoutExpired:
            rc = None
        check("second_sigterm_ends_at_once", alive and rc == 0 and time.time() - t0 < 2.5,
              "alive %s rc %s after %.1fs" % (alive, rc, time.time() - t0))
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()


def main():
    tmp = tempfile.mkdtemp(prefix="fedhub-drain-")
    timer = threading.Timer(55, lambda: os._exit(3))
    timer.daemon = True
    timer.start()
    for case in (drain_under_load, second_sigterm):
        try:
            case(tmp)
        except Exception as e:
            check(case.__name__, False, repr(e))
    T.exit()


if __name__ == "__main__":
    main()
