#!/usr/bin/python3
"""t_peers: the test peers work on their own, without fedhub.

dnsmasq serves the test SRV records, Prosody (pro.fhtest) and ejabberd
(ejd.fhtest) accept their users, and the two federate with each other in both
directions over plaintext s2s with dialback, each resolving the other through
dnsmasq. If this fails, the interop tests' failures say nothing about fedhub.
"""
import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import fhit  # noqa: E402
from fhit import check, PRO, EJD, NOPE, PORTS  # noqa: E402

h = fhit.Harness("peers", deadline_s=200)


async def main():
    fhit.start_dnsmasq(h, {PRO: PORTS["pro_s2s"], EJD: PORTS["ejd_s2s"], fhit.HUB: PORTS["hub_s2s"],
                           fhit.ECHO: PORTS["hub_s2s"], fhit.ECHO2: PORTS["hub_s2s"]})

    async def dns():
        rcode, ans = fhit.dns_query("_xmpp-server._tcp." + PRO, "SRV")
        check(rcode == 0 and ("SRV", (0, 0, PORTS["pro_s2s"], PRO)) in ans, "SRV for %s: %r" % (PRO, ans))
        rcode, ans = fhit.dns_query(EJD, "A")
        check(rcode == 0 and ans == [("A", "127.0.0.1")], "A for %s: %r" % (EJD, ans))
        rcode, _ = fhit.dns_query("_xmpp-server._tcp." + NOPE, "SRV")
        check(rcode == fhit.RCODE_NXDOMAIN, "rcode for %s is %d, not NXDOMAIN" % (NOPE, rcode))
    await h.case("dnsmasq_serves_srv_a_and_nxdomain", dns, 10)

    pro = fhit.Prosody(h)
    ejd = fhit.Ejabberd(h)
    try:
        pro.register("alice")
        pro.start()
    except Exception as e:
        h.dump_logs(pro.logs)
        raise RuntimeError("prosody: %s" % e)
    try:
        ejd.start()
        ejd.register("bob")
    except Exception as e:
        h.dump_logs(ejd.logs)
        raise RuntimeError("ejabberd: %s" % e)

    User = fhit.make_user_class()
    alice = User("alice@%s/fhit" % PRO, fhit.PASSWORD, PORTS["pro_c2s"])
    bob = User("bob@%s/fhit" % EJD, fhit.PASSWORD, PORTS["ejd_c2s"])
    try:
        await h.case("prosody_user_logs_in", alice.login, 20)
        await h.case("ejabberd_user_logs_in", bob.login, 30)

        async def send_and_receive(src, dst):
            token = uuid.uuid4().hex
            src.send_message(mto=dst.boundjid.bare, mbody=token, mtype="chat")
            m = await dst.next_message(25, lambda m: m["body"] == token)
            check(m["from"].bare == src.boundjid.bare, "from is %s" % m["from"])

        ok1 = await h.case("prosody_to_ejabberd_over_s2s_dialback", lambda: send_and_receive(alice, bob), 30)
        ok2 = await h.case("ejabberd_to_prosody_over_s2s_dialback", lambda: send_and_receive(bob, alice), 30)

        async def bounce():
            # ejabberd's bounce for an NXDOMAIN peer: the behaviour fedhub must match.
            bob.send_message(mto="someone@" + NOPE, mbody="x", mtype="chat")
            m = await bob.next_message(20, lambda m: m["type"] == "error")
            check(fhit.error_condition(m) == "remote-server-not-found", "condition %s" % fhit.error_condition(m))
        await h.case("ejabberd_bounces_nxdomain_with_remote_server_not_found", bounce, 25)
        if not (ok1 and ok2):
            h.dump_logs(pro.logs + ejd.logs)
    finally:
        alice.close()
        bob.close()


fhit.run_main(h, main)
