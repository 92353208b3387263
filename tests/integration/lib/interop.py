"""interop: fedhub between a real XMPP server and XEP-0114 components.

One scenario, run against Prosody (t_interop_prosody.py) or ejabberd
(t_interop_ejabberd.py). The peer, dnsmasq and fedhub are started once and
reused by every case; cases run in a fixed order because the first one needs a
hub that has no outbound link yet.

    alice@PEER --c2s--> PEER --s2s (dialback, SRV via dnsmasq)--> fedhub --XEP-0114--> bot@echo.fhtest
    alice@PEER <--c2s-- PEER <--s2s (fedhub's outbound link)---- fedhub <-------------- echo reply

Case names carry the peer's name. Every case has its own time bound; when
fedhub cannot start, its cases fail at once with the reason.
"""

import asyncio
import time
import uuid

import fhit
from fhit import bare, check, CaseFailed, PORTS, ECHO, ECHO2, HUB, NOPE, NS_PING, NS_DISCO_INFO

N_PAIRS = 12         # (alice, botK@echo.fhtest) pairs in the pool cases
PHASE1_SEQ = 30      # messages per pair while one pool connection is killed
PHASE2_SEQ = 8       # messages per pair after the replacement joined
KILL_AFTER = 40      # the victim is killed once it has received this many in phase 1


def main(peer_name):
    h = fhit.Harness("interop_" + peer_name, deadline_s=300)
    fhit.run_main(h, lambda: scenario(h, peer_name))


async def scenario(h, peer_name):
    P = peer_name
    if P == "prosody":
        domain, domain2, s2s_port, c2s_port = fhit.PRO, fhit.PRO2, PORTS["pro_s2s"], PORTS["pro_c2s"]
    else:
        domain, domain2, s2s_port, c2s_port = fhit.EJD, fhit.EJD2, PORTS["ejd_s2s"], PORTS["ejd_c2s"]

    fhit.start_dnsmasq(h, {domain: s2s_port, HUB: PORTS["hub_s2s"], ECHO: PORTS["hub_s2s"],
                           ECHO2: PORTS["hub_s2s"]})
    # Prosody offers XEP-0288 (mod_s2s_bidi): fedhub's links to it carry both ways
    peer = fhit.Prosody(h, bidi=True) if P == "prosody" else fhit.Ejabberd(h)
    if P == "prosody":
        peer.register("alice")
        peer.register("alice", host=domain2)
        peer.start()
    else:
        peer.start()
        peer.register("alice")
        peer.register("alice", host=domain2)

    User = fhit.make_user_class()
    Comp = fhit.make_component_class()
    alice = User("alice@%s/fhit" % domain, fhit.PASSWORD, c2s_port)
    alice2 = User("alice@%s/fhit" % domain2, fhit.PASSWORD, c2s_port)
    comps = []

    def component(dom, tag):
        c = Comp(dom, tag)
        comps.append(c)
        return c

    hub = fhit.Fedhub(h, fhit.fedhub_config(h, routes={domain2: "%s:%d" % (fhit.LOOP, s2s_port)}))
    hub.try_start()
    gated = hub.gate(P)

    main_c = component(ECHO, "main")
    echo2_c = component(ECHO2, "e2")
    try:
        await h.case("%s_user_logs_in" % P, alice.login, 30)

        async def components_up():
            await main_c.start()
            await echo2_c.start()
        await gated("components_connect", components_up, 15)

        # ---- dialback piggybacking: two of our domains, one TCP link to the peer
        async def piggyback():
            links_before = fhit.metric(PORTS["hub_http"], "fedhub_s2s_out_links_total")
            check(not fhit.tcp_links(hub.pid, s2s_port), "fedhub already had a link to the peer")
            for comp, frm in ((main_c, "bot@" + ECHO), (echo2_c, "bot@" + ECHO2)):
                token = uuid.uuid4().hex
                comp.send_body(frm, bare(alice.boundjid), token)
                m = await alice.next_message(20, lambda m, t=token: m["body"] == t)
                check(bare(m["from"]) == frm, "from %s, want %s" % (m["from"], frm))
            links = fhit.tcp_links(hub.pid, s2s_port)
            links_after = fhit.metric(PORTS["hub_http"], "fedhub_s2s_out_links_total")
            fhit.log("piggyback: ss links %d, fedhub_s2s_out_links_total %s -> %s"
                     % (len(links), links_before, links_after))
            check(len(links) == 1, "%d TCP connections from fedhub to %s:%d, want 1:\n%s"
                  % (len(links), domain, s2s_port, "\n".join(links)))
        await gated("piggyback_two_domains_one_outbound_link", piggyback, 45)

        # ---- peer user -> component and back
        async def echo():
            token = uuid.uuid4().hex
            alice.send_message(mto="bot@" + ECHO, mbody=token, mtype="chat")
            m = await alice.next_message(25, lambda m: (m["body"] or "").endswith("|" + token)
                                         or m["type"] == "error")
            check(m["type"] != "error", "error %s from %s" % (fhit.error_condition(m), m["from"]))
            check(m["body"] == "main|" + token, "body %r" % m["body"])
            check(bare(m["from"]) == "bot@" + ECHO, "from %s" % m["from"])
        await gated("message_echoed_by_component", echo, 30)

        async def iq_result():
            before = main_c.iqs
            from slixmpp.exceptions import IqError
            try:
                r = await alice["xep_0199"].send_ping("bot@" + ECHO, timeout=15)
            except IqError as e:
                raise CaseFailed("iq error %s" % e.condition)
            check(r["type"] == "result", "type %s" % r["type"])
            check(main_c.iqs == before + 1, "component saw %d iqs, want %d" % (main_c.iqs, before + 1))
        await gated("iq_get_result_round_trip", iq_result, 20)

        async def iq_error():
            from slixmpp.exceptions import IqError
            try:
                r = await alice["xep_0199"].send_ping("nobody@" + ECHO, timeout=15)
                raise CaseFailed("got %s, want an error" % r["type"])
            except IqError as e:
                check(e.condition == "item-not-found", "condition %s" % e.condition)
                check(bare(e.iq["from"]) == "nobody@" + ECHO, "from %s" % e.iq["from"])
        await gated("iq_get_error_returned_to_user", iq_error, 20)

        # ---- undeliverable: NXDOMAIN peer
        async def bounce():
            token = uuid.uuid4().hex
            main_c.send_body("bot@" + ECHO, "someone@" + NOPE, token)
            while True:     # skip bounces left over from earlier cases
                m = await asyncio.wait_for(main_c.errors.get(), 20)
                if bare(m["from"]) == "someone@" + NOPE:
                    break
                fhit.log("bounce: skipping an earlier error from %s" % m["from"])
            check(fhit.error_condition(m) == "remote-server-not-found",
                  "condition %s" % fhit.error_condition(m))
            check(bare(m["to"]) == "bot@" + ECHO, "bounce to %s" % m["to"])
            check(m["body"] in ("", token), "bounce body %r" % m["body"])
        await gated("bounce_unknown_domain_remote_server_not_found", bounce, 25)

        # ---- the hub's own domain, from a component
        async def comp_ping():
            r = await main_c.iq_get("bot@" + ECHO, HUB, fhit.el("ping", NS_PING))
            check(r["type"] == "result", "type %s %s" % (r["type"], fhit.error_condition(r)))
            check(str(r["from"]) == HUB, "from %s" % r["from"])
        await gated("component_pings_hub_domain", comp_ping, 15)

        def check_disco(xml_el):
            q = xml_el.find("{%s}query" % NS_DISCO_INFO)
            check(q is not None, "no disco#info query in result")
            check(q.find("{%s}identity" % NS_DISCO_INFO) is not None, "no identity")
            feats = {f.get("var") for f in q.findall("{%s}feature" % NS_DISCO_INFO)}
            check({NS_PING, NS_DISCO_INFO} <= feats, "features %s" % sorted(feats))

        async def comp_disco():
            r = await main_c.iq_get("bot@" + ECHO, HUB, fhit.el("query", NS_DISCO_INFO))
            check(r["type"] == "result", "type %s %s" % (r["type"], fhit.error_condition(r)))
            check_disco(r.xml)
        await gated("component_disco_info_hub_domain", comp_disco, 15)

        async def comp_unknown():
            r = await main_c.iq_get("bot@" + ECHO, HUB, fhit.el("nothing", "urn:fhit:nothing"))
            check(r["type"] == "error" and fhit.error_condition(r) == "service-unavailable",
                  "type %s condition %s" % (r["type"], fhit.error_condition(r)))
        await gated("component_unknown_iq_to_hub_service_unavailable", comp_unknown, 15)

        # ---- the hub's own domain, from the peer's user (routed by SRV to fedhub)
        async def user_ping_hub():
            from slixmpp.exceptions import IqError
            try:
                r = await alice["xep_0199"].send_ping(HUB, timeout=20)
            except IqError as e:
                raise CaseFailed("iq error %s" % e.condition)
            check(r["type"] == "result", "type %s" % r["type"])
        await gated("user_pings_hub_domain", user_ping_hub, 25)

        async def user_disco_hub():
            r = await alice["xep_0030"].get_info(jid=HUB, timeout=20)
            check_disco(r.xml)
        await gated("user_disco_info_hub_domain", user_disco_hub, 25)

        # ---- [route] overrides DNS: domain2 has no DNS record at all
        async def static_route():
            rcode, _ = fhit.dns_query("_xmpp-server._tcp." + domain2, "SRV")
            check(rcode == fhit.RCODE_NXDOMAIN, "%s is in DNS (rcode %d)" % (domain2, rcode))
            await alice2.login()
            token = uuid.uuid4().hex
            main_c.send_body("bot@" + ECHO, bare(alice2.boundjid), token)
            m = await alice2.next_message(20, lambda m: m["body"] == token or m["type"] == "error")
            check(m["type"] != "error", "error %s" % fhit.error_condition(m))
            alice2.send_message(mto="bot@" + ECHO, mbody=token, mtype="chat")
            m = await alice2.next_message(20, lambda m: m["body"] == "main|" + token or m["type"] == "error")
            check(m["type"] != "error", "error %s from %s" % (fhit.error_condition(m), m["from"]))
        await gated("static_route_overrides_dns", static_route, 45)

        # ---- component pool
        pool = {}

        async def pool_spread():
            # The pool is exactly A and B: the first connection leaves cleanly.
            main_c.disconnect()
            await main_c.gone.wait()
            for tag in ("A", "B"):
                pool[tag] = component(ECHO, tag)
                await pool[tag].start()
            got = await echo_round(alice, "spread")
            tags = {t for t, _ in got.values()}
            check(tags == {"A", "B"}, "the %d pairs all went to %s" % (N_PAIRS, tags))
        spread_ok = await gated("component_pool_spreads_pairs", pool_spread, 40)

        async def pool_failover():
            check(spread_ok, "needs component_pool_spreads_pairs")
            await pool_kill_and_replace(alice, pool, component)
        await gated("component_pool_failover_keeps_order", pool_failover, 90)
    finally:
        for c in comps:
            c.close()
        alice.close()
        alice2.close()
        hub.finish(P)
        if h.failed:
            h.dump_logs(hub.logs + peer.logs, tail=60)


async def echo_round(alice, label):
    """One message on each pair, wait for every echo; returns {bot: (tag, body)}."""
    tokens = {}
    for k in range(N_PAIRS):
        tokens["bot%d@%s" % (k, ECHO)] = "%s:%s" % (label, uuid.uuid4().hex[:8])
    for bot, tok in tokens.items():
        alice.send_message(mto=bot, mbody=tok, mtype="chat")
    got = {}
    while len(got) < len(tokens):
        m = await alice.next_message(20, lambda m: bare(m["from"]) in tokens or m["type"] == "error")
        check(m["type"] != "error", "error %s from %s" % (fhit.error_condition(m), m["from"]))
        tag, _, body = (m["body"] or "").partition("|")
        if body == tokens[bare(m["from"])]:
            got[bare(m["from"])] = (tag, body)
    return got


async def pool_kill_and_replace(alice, pool, component):
    """Phase 1: the user sends a numbered sequence on N_PAIRS pairs; once one pool
    connection has received KILL_AFTER messages it is dropped (TCP closed at once,
    like a crash). Every pair must then reach a live connection, every message a
    live connection received must be echoed to the user, and the echoes of each
    pair must arrive in increasing sequence (gaps allowed: stanzas in flight to
    the dead connection are lost with it, XEP-0114 has no acknowledgements).
    Phase 2: a replacement connection joins; nothing is killed, so every message
    must come back, once, in order."""
    bots = ["bot%d@%s" % (k, ECHO) for k in range(N_PAIRS)]
    run = uuid.uuid4().hex[:6]
    echoes = {b: [] for b in bots}       # seq numbers echoed to the user, in arrival order
    errors = {b: [] for b in bots}
    tags_seen = {b: [] for b in bots}
    finals = {}

    def parse(body):
        # "TAG|RUN:SEQ" or "TAG|RUN:final1"
        tag, _, rest = (body or "").partition("|")
        r, _, seq = rest.partition(":")
        return tag, r, seq

    async def collect(stop):
        while not stop.is_set():
            try:
                m = await asyncio.wait_for(alice.inbox.get(), 0.2)
            except asyncio.TimeoutError:
                continue
            b = bare(m["from"])
            if b not in echoes:
                continue
            if m["type"] == "error":
                # A bounce may carry the original body ("RUN:SEQ").
                r, _, s = (m["body"] or "").partition(":")
                errors[b].append((fhit.error_condition(m), int(s) if r == run and s.isdigit() else None))
                continue
            tag, r, seq = parse(m["body"])
            if r != run:
                continue
            if seq.startswith("final"):
                finals[(b, seq)] = tag
            else:
                echoes[b].append(int(seq))
                tags_seen[b].append(tag)

    stop = asyncio.Event()
    collector = asyncio.ensure_future(collect(stop))
    victim = None
    sent_after_kill = 0
    try:
        seq = 0
        base = {t: len(c.received) for t, c in pool.items()}
        for _ in range(PHASE1_SEQ):
            seq += 1
            for b in bots:
                alice.send_message(mto=b, mbody="%s:%d" % (run, seq), mtype="chat")
                if victim is not None:
                    sent_after_kill += 1
            if victim is None:
                # Right after a burst, so that stanzas are on their way to the victim.
                counts = {t: len(c.received) - base[t] for t, c in pool.items()}
                t = max(counts, key=counts.get)
                if counts[t] >= KILL_AFTER:
                    victim = t
                    pool[t].close()
                    fhit.log("pool: killed %s after it received %d this phase (counts %s)" % (t, counts[t], counts))
            await asyncio.sleep(0.02)
        check(victim is not None, "no pool connection received %d messages" % KILL_AFTER)
        check(sent_after_kill > 0, "the kill came after the last message")
        survivor = [t for t in pool if t != victim][0]

        async def wait_finals(name, tags_ok):
            for b in bots:
                alice.send_message(mto=b, mbody="%s:%s" % (run, name), mtype="chat")
            t0 = time.monotonic()
            while any((b, name) not in finals for b in bots):
                if time.monotonic() - t0 > 30:
                    missing = [b for b in bots if (b, name) not in finals]
                    raise CaseFailed("%s echo missing for %s (errors %s)"
                                     % (name, missing, {b: errors[b] for b in missing}))
                await asyncio.sleep(0.1)
            bad = {b: finals[(b, name)] for b in bots if finals[(b, name)] not in tags_ok}
            check(not bad, "%s echoed by %s, want one of %s" % (name, bad, tags_ok))

        await wait_finals("final1", {survivor})

        # Everything the survivor received in phase 1 came back to the user.
        surv_seqs = {}
        for _frm, to, body in pool[survivor].received:
            tag, r, s = parse("x|" + body)
            if r == run and not s.startswith("final"):
                surv_seqs.setdefault(bare(to), set()).add(int(s))
        for b, seqs in surv_seqs.items():
            lost = seqs - set(echoes[b])
            check(not lost, "%s: seq %s reached %s but never came back" % (b, sorted(lost), survivor))
        for b in bots:
            check(echoes[b] == sorted(set(echoes[b])), "%s: echoes out of order or repeated: %s" % (b, echoes[b]))
            both = set(echoes[b]) & {s for _, s in errors[b] if s is not None}
            check(not both, "%s: both echoed and bounced: %s" % (b, both))
        n_echoed = sum(len(v) for v in echoes.values())
        n_err = sum(len(v) for v in errors.values())
        fhit.log("pool phase 1: sent %d, echoed %d, bounced %d, victim %s received %d, sent after kill %d"
                 % (PHASE1_SEQ * N_PAIRS, n_echoed, n_err, victim, len(pool[victim].received), sent_after_kill))

        # Phase 2: a replacement joins; no loss allowed now.
        pool["C"] = component(ECHO, "C")
        await pool["C"].start()
        mark = {b: len(echoes[b]) for b in bots}
        err_mark = {b: len(errors[b]) for b in bots}
        first2 = seq + 1
        for _ in range(PHASE2_SEQ):
            seq += 1
            for b in bots:
                alice.send_message(mto=b, mbody="%s:%d" % (run, seq), mtype="chat")
            await asyncio.sleep(0.02)
        await wait_finals("final2", {survivor, "C"})
        want = list(range(first2, seq + 1))
        for b in bots:
            got = echoes[b][mark[b]:]
            check(got == want, "%s: phase 2 echoes %s, want %s" % (b, got, want))
        used = {t for b in bots for t in tags_seen[b][mark[b]:]}
        fhit.log("pool phase 2: tags used %s" % sorted(used))
        late = {b: errors[b][err_mark[b]:] for b in bots if errors[b][err_mark[b]:]}
        check(not late, "phase 2 error bounces: %s" % late)
    finally:
        stop.set()
        await collector
