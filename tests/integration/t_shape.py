#!/usr/bin/env python3
"""Inbound shaping (router/shape.c) against a running fedhub (lib/hostile.py).

With link_rate 20000 (bytes/s) and link_stanza_rate 50, a scripted remote
server on a dialback-authenticated inbound link sends stanzas to the
component spare.fake as fast as TCP lets it. Every stanza must arrive, in
order, none bounced; the delivery must take at least what the rate implies
(a generous lower bound: shaping that does nothing delivers in milliseconds)
and not hang (an upper bound: paused links are resumed); the shaped link
stays open; the legitimate link (its own buckets) keeps flowing meanwhile;
and the pauses are counted in /metrics."""
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import hostile as H  # noqa: E402

LINK_RATE, STANZA_RATE = 20000, 50
CONF = H.conf(hub_extra="link_rate %d\nlink_stanza_rate %d" % (LINK_RATE, STANZA_RATE))
S = H.Suite("t_shape", CONF, base=26600, limit=60)
MSG = "<message from='u@remote.fake/r' to='sink@spare.fake' id='%s'><body>%s</body></message>"


def flood(s, prefix, count, body_len, min_s, max_s):
    """count stanzas of about body_len bytes each on a fresh authenticated
    link, written at once; checks delivery, order, bounces and timing."""
    comp = s.component("spare.fake", attacked=False)
    o = s.remote_s2s("spare.fake")
    s.expect(o.auth("spare.fake"), "valid", "dialback for spare.fake")
    before = s.metrics()
    got, order_ok, lock = [], [True], threading.Lock()

    def reader():
        while len(got) < count:
            try:
                el = comp.r.element(1)
            except Exception:
                if time.time() > t0 + max_s + 2:
                    return
                continue
            mid = H.attr(el, "id") or ""
            if mid.startswith(prefix + "-"):
                with lock:
                    if got and int(mid.split("-")[1]) != int(got[-1].split("-")[1]) + 1:
                        order_ok[0] = False
                    got.append(mid)

    blob = "".join(MSG % ("%s-%d" % (prefix, i), "b" * body_len) for i in range(count)).encode()
    o.s.settimeout(max_s + 5)
    legit0 = len(s.legit.got_in)
    t0 = time.time()
    rd = threading.Thread(target=reader, daemon=True)
    rd.start()
    wr = threading.Thread(target=lambda: o.s.sendall(blob), daemon=True)
    wr.start()
    # half-way, the legitimate link must have gone on meanwhile
    while len(got) < count // 2 and time.time() < t0 + max_s:
        time.sleep(0.05)
    legit_mid = len(s.legit.got_in) - legit0
    half_at = time.time() - t0
    rd.join(max(0.1, t0 + max_s - time.time()))
    took = time.time() - t0
    after = s.metrics()
    bounced = [m for m in s.rs.messages() if re.search(r"id=['\"]%s-" % prefix, m)]
    print("# %s: %d bytes, %d of %d stanzas in %.1f s (half in %.1f s, %d legit stanzas meanwhile)"
          % (prefix, len(blob), len(got), count, took, half_at, legit_mid), flush=True)
    s.expect(len(got), count, "stanzas delivered")
    s.expect(order_ok[0], True, "delivered in order")
    s.expect(len(bounced), 0, "bounces to the sender")
    s.expect(after.get("fedhub_stanzas_bounced_total", 0) - before.get("fedhub_stanzas_bounced_total", 0), 0,
             "fedhub_stanzas_bounced_total increase")
    s.expect(took, lambda t: min_s <= t <= max_s, "seconds to deliver (%.0f..%.0f)" % (min_s, max_s))
    s.expect(legit_mid, lambda n: n >= 10, "legitimate stanzas delivered while shaped")
    s.expect(after.get("fedhub_shaping_pauses_total", 0) > before.get("fedhub_shaping_pauses_total", 0), True,
             "fedhub_shaping_pauses_total grew")
    # the shaped link is still open and usable
    o.send(MSG % ("%s-%d" % (prefix, count), "end"))
    deadline = time.time() + 3
    while len(got) <= count and time.time() < deadline:
        try:
            el = comp.r.element(0.5)
            if (H.attr(el, "id") or "") == "%s-%d" % (prefix, count):
                got.append("end")
        except Exception:
            pass
    s.expect(got[-1] if got else None, "end", "a stanza after the flood")


def by_bytes(s):
    # 200 stanzas of ~1 KiB: 200 KiB at 20000 B/s, 20000 of burst -> ~9 s
    flood(s, "bytes", 200, 960, 5.0, 25.0)


def by_stanzas(s):
    # 300 small stanzas at 50/s with 50 of burst -> 5 s (the bytes allow ~0.6 s)
    flood(s, "stanzas", 300, 10, 3.0, 15.0)


def body(s):
    s.case("link_rate delays a flood without dropping or bouncing it", by_bytes, closed=False, timeout=30)
    s.case("link_stanza_rate delays a flood of small stanzas", by_stanzas, closed=False, timeout=20)


S.run(body)
