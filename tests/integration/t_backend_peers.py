#!/usr/bin/python3
"""t_backend_peers: the servers of the backend tests work on their own, without fedhub.

The four servers of lib/backends.py (Prosody and ejabberd as the backends,
Prosody and ejabberd outside, both outside ones requiring TLS and valid
certificates) and its two dnsmasq views, wired to federate directly: each
backend user exchanges messages with each outside user, over STARTTLS and
SASL EXTERNAL (the outside servers accept nothing else). If this fails,
t_backend_interop.py's failures say nothing about fedhub.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import fhit  # noqa: E402
import backends  # noqa: E402
from backends import jid  # noqa: E402
from fhit import check  # noqa: E402

h = fhit.Harness("backend_peers", deadline_s=150)


async def main():
    w = backends.World(h, hub=False)
    w.start_dns()

    async def dns():
        for ip, dom in ((backends.IN_DNS, backends.EO), (backends.OUT_DNS, backends.PB)):
            rcode, ans = fhit.dns_query("_xmpp-server._tcp." + dom, "SRV", server=ip)
            check(rcode == 0 and ans and ans[0][1][2] == w.dns["in" if ip == backends.IN_DNS else "out"][dom],
                  "SRV for %s at %s: %r" % (dom, ip, ans))
        rcode, _ = fhit.dns_query("_xmpp-server._tcp." + backends.NOPE, "SRV", server=backends.IN_DNS)
        check(rcode == fhit.RCODE_NXDOMAIN, "rcode for %s is %d, not NXDOMAIN" % (backends.NOPE, rcode))
    await h.case("dns_views_answer", dns, 10)

    await w.start_servers()
    try:
        await h.case("users_log_in", w.login_all, 60)
        u = w.users
        for a, b in (("alice", "dave"), ("alice", "carol"), ("bob", "carol"), ("bob", "dave"), ("alice", "bob"),
                     ("erin", "dave")):
            async def rt(a=a, b=b):
                await backends.message_round_trip(u[a], u[b])
            await h.case("%s_%s_round_trip_direct" % (a, b), rt, 40)
        if h.failed:
            h.dump_logs(w.all_logs(), tail=40)
    finally:
        w.close_users()


fhit.run_main(h, main)
