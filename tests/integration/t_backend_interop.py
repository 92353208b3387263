#!/usr/bin/python3
"""t_backend_interop: unmodified Prosody and ejabberd behind fedhub, federating through it.

lib/backends.py's world with the hub in the middle (its [domain] and
[backend] sections are examples/backends/fedhub.conf; the backends run the
snippets of examples/backends/):

    alice@pb.fhbk  Prosody  --internal s2s--\\                      /--TLS, SASL EXTERNAL-- eo.fhbk ejabberd  dave
                                             >-- fedhub (hub.fhbk) <
    bob@eb.fhbk    ejabberd --internal s2s--/                      \\--TLS, SASL EXTERNAL-- po.fhbk Prosody   carol

The backends resolve every s2s domain to the hub (split-horizon dnsmasq on
127.0.0.6); the outside servers and the hub resolve with 127.0.0.7, where
pb.fhbk and eb.fhbk name the hub. Each server is started once; the cases run
in order, each under its own time bound:

  - messages both ways: Prosody behind <-> ejabberd outside, ejabberd behind
    <-> Prosody outside, the two backends with each other, and the other
    crossings; the Prosody backend's second domain on the same internal link,
    and several remote domains on one internal link (one per hub worker);
    a Prosody backend with `tls required` on its internal link (pt.fhbk);
    bursts arrive in order; the hub's links to the outside are SASL EXTERNAL;
  - a presence subscription (both ways, approved) and iq round trips (XEP-0199
    ping of the remote server, disco#info of a remote client) across the hub;
  - /metrics and `fedhubctl backends` count each backend's links and traffic;
  - the backends connect to nothing but the hub (ss of their PIDs), and the
    outside servers are reached only by the hub's process and address;
  - a stream from a source no [backend] lists is refused: to a remote domain
    (host-unknown), and claiming a backend's domain (invalid-from);
  - the Prosody backend restarted mid-conversation: the messages sent while it
    was down are delivered, in order, once it is back; down past
    stall_timeout, the message is bounced to its sender (remote-server-timeout).
"""
import asyncio
import json
import os
import re
import subprocess
import sys
import types
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import fhit  # noqa: E402
import backends  # noqa: E402
from backends import jid, PORTS, LOOP, PB, EB, PO, EO  # noqa: E402
from fhit import check, CaseFailed, bare  # noqa: E402

STALL = 8           # the hub's stall_timeout, seconds
CTL = os.environ.get("FEDHUBCTL", os.path.join(fhit.REPO, "fedhubctl"))
FLOG = "fedhub.log"
h = fhit.Harness("backend_interop", deadline_s=200)


async def wait_presence(u, pred, timeout, what):
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while True:
        left = timeout - (loop.time() - t0)
        if left <= 0:
            raise CaseFailed("%s: %s not within %d s" % (u.boundjid.bare, what, timeout))
        try:
            p = await asyncio.wait_for(u.presences.get(), left)
        except asyncio.TimeoutError:
            continue
        if pred(p):
            return p


def available(p):
    return p["type"] not in ("unavailable", "error", "probe", "subscribe", "subscribed", "unsubscribe",
                             "unsubscribed")


async def raw_stream(frm, to, then=""):
    """A plaintext s2s stream to the hub from the STRANGER address; returns
    what the hub sent until it closed (or 8 s passed)."""
    r, wr = await asyncio.open_connection(LOOP, PORTS["hub_s2s"], local_addr=(backends.STRANGER, 0))
    try:
        wr.write(("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
                  "xmlns:stream='http://etherx.jabber.org/streams' from='%s' to='%s' version='1.0'>%s"
                  % (frm, to, then)).encode())
        buf = b""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while loop.time() - t0 < 8:
            try:
                d = await asyncio.wait_for(r.read(4096), 8 - (loop.time() - t0))
            except asyncio.TimeoutError:
                break
            if not d:
                return buf.decode("utf-8", "replace"), True
            buf += d
        return buf.decode("utf-8", "replace"), False
    finally:
        wr.close()


def backend_metrics():
    m = fhit.parse_metrics(fhit.http_get(PORTS["hub_http"], "/metrics")[1])
    return lambda name, b: m.get('%s{backend="%s"}' % (name, b))


async def main():
    w = backends.World(h, hub=True)
    w.start_dns()
    sock = h.path("ctl.sock")
    conf = backends.hub_config(h, w.pki, extra_hub=["stall_timeout %ds" % STALL, "retry_min 1s",
                                                    "control_socket %s" % sock])
    hub = fhit.Fedhub(h, conf, ports=PORTS)
    hub.try_start()
    gated = hub.gate("backend")
    await w.start_servers()
    loop = asyncio.get_running_loop()
    u = w.users
    try:
        await h.case("users_log_in", w.login_all, 60)
        ctx = types.SimpleNamespace(w=w, u=u, hub=hub, gated=gated, loop=loop, sock=sock)
        await message_cases(ctx)
        await observability_cases(ctx)
        await presence_iq_cases(ctx)
        await topology_cases(ctx)
        await restart_cases(ctx)
    finally:
        w.close_users()
        hub.finish("backend")
        if h.failed:
            h.dump_logs(hub.logs + w.all_logs(), tail=50)


async def message_cases(ctx):
    """Messages on every crossing, the internal links they use, order kept."""
    u, gated = ctx.u, ctx.gated
    # ---- messages, every crossing
    crossings = [("alice", "dave", "prosody_behind_ejabberd_outside"),
                 ("bob", "carol", "ejabberd_behind_prosody_outside"),
                 ("alice", "bob", "prosody_and_ejabberd_both_behind"),
                 ("alice", "carol", "prosody_behind_prosody_outside"),
                 ("bob", "dave", "ejabberd_behind_ejabberd_outside")]
    for a, b, name in crossings:
        async def rt(a=a, b=b):
            await backends.message_round_trip(u[a], u[b])
        await gated("%s_message_and_reply" % name, rt, 40)

    async def tls_backend():
        await backends.message_round_trip(u["frank"], u["dave"])
        await backends.message_round_trip(u["frank"], u["alice"])
        # Prosody's side of both directions (only the hub connects to it,
        # and it connects only to the hub): the stream the hub opened to
        # it, and its own to the hub, were encrypted
        for d, what in (("s2sin", "the hub's streams to it"), ("s2sout", "its own streams to the hub")):
            check(fhit.log_lines(h, "pt/prosody.log", r"%s\S*\s+info\s+Stream encrypted" % d),
                  "Prosody (pt) never encrypted %s" % what)
        check(not fhit.log_lines(h, FLOG, r"backend link to .*(no STARTTLS|STARTTLS refused|TLS failed)"),
              "fedhub: %s" % fhit.log_lines(h, FLOG, r"backend link to .*TLS"))
    await gated("prosody_backend_internal_link_tls_required", tls_backend, 40)

    async def two_domains():
        await backends.message_round_trip(u["erin"], u["dave"])
        conns = {}
        for d in (PB, backends.PB2):
            pat = r"\[(c\d+) [^]]*\] backend prosody1: %s -> %s authenticated" % (re.escape(EO), re.escape(d))
            conns[d] = {re.search(pat, g).group(1) for g in fhit.log_lines(h, FLOG, pat)}
        fhit.log("internal links eo.fhbk -> prosody1: %s" % conns)
        check(all(conns.values()), "a domain of prosody1 was never authenticated toward it: %s" % conns)
        check(conns[PB] & conns[backends.PB2], "pb.fhbk and pb2.fhbk on different internal links: %s" % conns)
    await gated("prosody_backend_two_domains_one_internal_link", two_domains, 30)

    async def remotes_share_link():
        # eo.fhbk, po.fhbk and eb.fhbk (the other backend) all wrote to
        # alice on prosody1 above; the hub has 2 workers, each with one
        # link to prosody1, so two of them share a link (piggybacked
        # originating domains, which Prosody must take)
        pat = r"\[(c\d+) [^]]*\] backend prosody1: (\S+) -> %s authenticated" % re.escape(PB)
        by_conn = {}
        for g in fhit.log_lines(h, FLOG, pat):
            m_ = re.search(pat, g)
            by_conn.setdefault(m_.group(1), set()).add(m_.group(2))
        fhit.log("remote domains per internal link to prosody1: %s" % by_conn)
        seen = set().union(*by_conn.values()) if by_conn else set()
        check({EO, PO, EB} <= seen, "not every remote domain was authenticated toward prosody1: %s" % by_conn)
        check(any(len(r) >= 2 for r in by_conn.values()),
              "every remote domain has an internal link of its own to prosody1: %s" % by_conn)
    await gated("prosody_backend_remote_domains_share_an_internal_link", remotes_share_link, 10)

    async def burst(a, b, n=30):
        ua, ub = u[a], u[b]
        tag = uuid.uuid4().hex[:8]
        bodies = ["%s-%02d" % (tag, i) for i in range(n)]
        for x in bodies:
            ua.send_message(mto=jid(b), mbody=x, mtype="chat")
        got = []
        while len(got) < n:
            m = await ub.next_message(20, lambda m: (m["body"] or "").startswith(tag + "-"))
            got.append(m["body"])
        check(got == bodies, "%s -> %s out of order: %s" % (a, b, got))
    await gated("order_kept_prosody_behind_to_ejabberd_outside", lambda: burst("alice", "dave"), 30)
    await gated("order_kept_ejabberd_outside_to_prosody_behind", lambda: burst("dave", "alice"), 30)
    await gated("order_kept_ejabberd_behind_to_prosody_outside", lambda: burst("bob", "carol"), 30)


async def observability_cases(ctx):
    """/metrics, fedhubctl backends and the log count the links and the traffic."""
    sock, gated = ctx.sock, ctx.gated

    async def metrics_traffic():
        m = backend_metrics()
        for b in ("prosody1", "ejabberd1", "prosody-tls"):
            for name in ("fedhub_backend_stanzas_in_total", "fedhub_backend_stanzas_out_total",
                         "fedhub_backend_links_up"):
                check((m(name, b) or 0) > 0, "%s{backend=%s} is %s after the crossings" % (name, b, m(name, b)))
            check(m("fedhub_backend_bounced_total", b) == 0, "bounced for %s: %s" % (b, m("fedhub_backend_bounced_total", b)))
            check(m("fedhub_backend_queued", b) == 0, "queued for %s: %s" % (b, m("fedhub_backend_queued", b)))
    await gated("metrics_count_backend_traffic", metrics_traffic, 10)

    async def ctl_backends():
        r = subprocess.run([CTL, "-s", sock, "--json", "backends"], capture_output=True, text=True, timeout=10)
        check(r.returncode == 0, "fedhubctl backends: exit %d: %s" % (r.returncode, r.stderr.strip()))
        j = json.loads(r.stdout)
        bs = {b["name"]: b for b in j["backends"]}
        fhit.log("fedhubctl backends: %s; %d links, e.g. %s" % (bs, len(j["links"]), j["links"][:1]))
        check(set(bs) == {"prosody1", "ejabberd1", "prosody-tls"}, "backends %s" % sorted(bs))
        check((bs["prosody1"]["domains"], bs["prosody-tls"]["tls"]) == (2, "required"), "%s" % bs)
        m = backend_metrics()
        for b in ("prosody1", "ejabberd1", "prosody-tls"):
            check(bs[b]["links_up"] > 0 and bs[b]["stanzas_in"] > 0 and bs[b]["stanzas_out"] > 0,
                  "%s after the crossings: %s" % (b, bs[b]))
            check(bs[b]["stanzas_in"] == m("fedhub_backend_stanzas_in_total", b),
                  "%s: fedhubctl says %d in, /metrics %s" % (b, bs[b]["stanzas_in"],
                                                            m("fedhub_backend_stanzas_in_total", b)))
        check(j["links"], "no internal link listed")
    await gated("fedhubctl_backends_lists_backends_and_their_links", ctl_backends, 15)

    async def external():
        # Every (backend domain, outside domain) pair is authenticated both
        # ways on the hub's links; with eo.fhbk (ejabberd without dialback)
        # only SASL EXTERNAL can do it. Toward po.fhbk the first pair on a
        # link is SASL EXTERNAL, a later one may be dialback on that TLS link.
        for local in (PB, EB):
            for remote in (EO, PO):
                for d, a, b in (("out", local, remote), ("in", remote, local)):
                    pat = r"s2s %s %s -> %s: authenticated \((.*)\)" % (d, re.escape(a), re.escape(b))
                    got = fhit.log_lines(h, FLOG, pat)
                    check(got, "no 's2s %s %s -> %s: authenticated' line in fedhub's log" % (d, a, b))
                    how = {re.search(pat, g).group(1) for g in got}
                    if remote == EO:
                        check(how == {"SASL EXTERNAL"}, "%s %s -> %s authenticated by %s" % (d, a, b, how))
                    fhit.log("%s %s -> %s: %s" % (d, a, b, how))
        for d in ("out", "in"):
            check(fhit.log_lines(h, FLOG, r"s2s %s \S+ -> \S+: authenticated \(SASL EXTERNAL" % d),
                  "no %s link was SASL EXTERNAL" % d)
    await gated("outside_links_authenticated_sasl_external", external, 10)


async def presence_iq_cases(ctx):
    """A presence subscription both ways and iq round trips across the hub."""
    u, gated, loop = ctx.u, ctx.gated, ctx.loop
    # ---- presence and iq
    async def presence(a, b):
        ua, ub = u[a], u[b]
        ua.send_presence_subscription(pto=jid(b))
        # b's client approves and subscribes back, which a's client
        # approves: each then has the other in its roster and its presence.
        await wait_presence(ub, lambda p: p["type"] == "subscribe" and bare(p["from"]) == jid(a), 20,
                            "the subscription request from %s" % jid(a))
        await wait_presence(ua, lambda p: available(p) and bare(p["from"]) == jid(b), 20,
                            "%s's available presence" % jid(b))
        await wait_presence(ub, lambda p: available(p) and bare(p["from"]) == jid(a), 20,
                            "%s's available presence" % jid(a))
        # The servers' rosters (fetched, not the clients' bookkeeping)
        t0 = loop.time()
        while True:
            await ua.get_roster(timeout=10)
            await ub.get_roster(timeout=10)
            subs = (ua.client_roster[jid(b)]["subscription"], ub.client_roster[jid(a)]["subscription"])
            if subs == ("both", "both"):
                break
            if loop.time() - t0 > 10:
                raise CaseFailed("the rosters' subscriptions (%s's, %s's) are %s, not both" % (a, b, subs))
            await asyncio.sleep(0.5)
    await gated("presence_subscription_prosody_behind_ejabberd_outside", lambda: presence("alice", "dave"), 45)
    await gated("presence_subscription_ejabberd_behind_prosody_outside", lambda: presence("bob", "carol"), 45)

    async def iq(a, server, peer):
        from slixmpp.exceptions import IqError, IqTimeout
        ua = u[a]
        try:
            await ua["xep_0199"].send_ping(server, timeout=10)
            info = await ua["xep_0030"].get_info(jid=u[peer].boundjid.full, timeout=10)
        except IqError as e:
            raise CaseFailed("iq error %s from %s" % (e.iq["error"]["condition"], e.iq["from"]))
        except IqTimeout:
            raise CaseFailed("no iq result within 10 s")
        feats = info["disco_info"]["features"]
        check("urn:xmpp:ping" in feats, "disco#info of %s: %s" % (u[peer].boundjid.full, feats))
    await gated("iq_ping_and_disco_prosody_behind_ejabberd_outside", lambda: iq("alice", EO, "dave"), 30)
    await gated("iq_ping_and_disco_ejabberd_behind_prosody_outside", lambda: iq("bob", PO, "carol"), 30)


async def topology_cases(ctx):
    """Who connects where, and streams from a source that is no backend."""
    w, u, hub, gated = ctx.w, ctx.u, ctx.hub, ctx.gated
    # ---- who connects where
    async def backends_only_hub():
        hub_addr = "%s:%d" % (LOOP, PORTS["hub_s2s"])
        for n, own in (("pb", (PORTS["pb_c2s"], PORTS["pb_s2s"])),
                       ("eb", (PORTS["eb_c2s"], PORTS["eb_s2s"], PORTS["eb_dist"]))):
            conns = backends.conns_of(w.pid_of(n))
            outgoing = [(lo, pe) for lo, pe in conns if int(lo.rsplit(":", 1)[1]) not in own]
            fhit.log("%s (pid %d) outgoing: %s" % (n, w.pid_of(n), outgoing))
            bad = [pe for _, pe in outgoing if pe != hub_addr]
            check(not bad, "%s connects to %s, not only to the hub %s" % (n, bad, hub_addr))
            check(outgoing, "%s has no connection to the hub at all (the check would prove nothing)" % n)
            if n == "eb":
                check(all(lo.startswith(backends.EB_SOURCE + ":") for lo, _ in outgoing),
                      "ejabberd's outbound s2s not from %s: %s" % (backends.EB_SOURCE, outgoing))
    await gated("backends_connect_only_to_the_hub", backends_only_hub, 10)

    async def remotes_see_hub():
        for n, port in (("eo", PORTS["eo_s2s"]), ("po", PORTS["po_s2s"])):
            owners = backends.owners_of_conns_to(port)
            check(owners, "nothing is connected to %s's s2s port %d" % (n, port))
            check(owners == {hub.pid}, "%s's s2s port %d is reached by PIDs %s; fedhub is %d"
                  % (n, port, owners, hub.pid))
            peers = [pe for lo, pe in backends.conns_of(w.pid_of(n)) if lo == "%s:%d" % (LOOP, port)]
            check(peers and all(pe.startswith(LOOP + ":") for pe in peers),
                  "%s sees s2s peers %s, not only the hub's address %s" % (n, peers, LOOP))
    await gated("outside_servers_see_only_the_hub", remotes_see_hub, 10)

    # ---- streams from a source that is no backend
    async def stranger():
        before = u["dave"].inbox.qsize()
        msg = "<message from='x@%s' to='%s'><body>stranger</body></message>" % (EB, jid("dave"))
        got, closed = await raw_stream(EB, EO, "<db:result from='%s' to='%s'>k</db:result>%s" % (EB, EO, msg))
        check("host-unknown" in got and closed, "a stream to the remote %s from %s: %r (closed: %s)"
              % (EO, backends.STRANGER, got[-300:], closed))
        got, closed = await raw_stream(EB, PB, "<db:result from='%s' to='%s'>k</db:result>" % (EB, PB))
        check("invalid-from" in got and closed, "a stream claiming %s from %s: %r (closed: %s)"
              % (EB, backends.STRANGER, got[-300:], closed))
        await asyncio.sleep(1)
        check(not any(m["body"] == "stranger" for m in list(u["dave"].inbox._queue)[before:]),
              "the stranger's message reached dave")
    await gated("stream_from_no_backend_address_refused", stranger, 25)


async def restart_cases(ctx):
    """The Prosody backend restarted, then down past stall_timeout."""
    w, u, gated, loop = ctx.w, ctx.u, ctx.gated, ctx.loop
    # ---- the Prosody backend restarted mid-conversation
    async def restart():
        pb = w.servers["pb"]
        await backends.message_round_trip(u["alice"], u["dave"])     # the conversation
        u["alice"].close()
        rc = h.stop(pb.proc)
        fhit.log("pb stopped: %s" % rc)
        tokens = ["down-%d-%s" % (i, uuid.uuid4().hex[:8]) for i in range(3)]
        for t in tokens:
            u["dave"].send_message(mto=jid("alice"), mbody=t, mtype="chat")
        await asyncio.sleep(2)
        await loop.run_in_executor(None, pb.start)
        alice = await w.relogin("alice")
        got = []
        while len(got) < len(tokens):
            m = await alice.next_message(STALL + 10, lambda m: m["body"] in tokens)
            got.append(m["body"])
        check(got == tokens, "delivered out of order: %s" % got)
        errs = [m for m in list(u["dave"].inbox._queue) if m["type"] == "error"]
        check(not errs, "dave got bounces: %s" % [fhit.error_condition(e) for e in errs])
        await backends.message_round_trip(alice, u["dave"])
    await gated("prosody_backend_restarted_messages_wait_and_arrive_in_order", restart, STALL + 45)

    async def stalled():
        pb = w.servers["pb"]
        u["alice"].close()
        h.stop(pb.proc)
        token = "stall-" + uuid.uuid4().hex[:8]
        t0 = loop.time()
        u["dave"].send_message(mto=jid("alice"), mbody=token, mtype="chat")
        m = await u["dave"].next_message(STALL + 15, lambda m: m["type"] == "error" and bare(m["from"]) == jid("alice"))
        took = loop.time() - t0
        fhit.log("bounced after %.1f s: %s" % (took, fhit.error_condition(m)))
        check(fhit.error_condition(m) == "remote-server-timeout", "condition %s" % fhit.error_condition(m))
        check(took >= STALL - 1, "bounced after %.1f s, before stall_timeout %d s" % (took, STALL))
        await loop.run_in_executor(None, pb.start)
        alice = await w.relogin("alice")
        await asyncio.sleep(2)
        check(not any(x["body"] == token for x in list(alice.inbox._queue)), "the bounced message was delivered too")
        await backends.message_round_trip(alice, u["dave"])
    await gated("prosody_backend_down_past_stall_timeout_bounced", stalled, STALL + 50)

    async def metrics_bounce():
        m = backend_metrics()
        check(m("fedhub_backend_bounced_total", "prosody1") == 1,
              "fedhub_backend_bounced_total{backend=prosody1} is %s, not the 1 stanza bounced"
              % m("fedhub_backend_bounced_total", "prosody1"))
        for b in ("ejabberd1", "prosody-tls"):
            check(m("fedhub_backend_bounced_total", b) == 0, "%s bounced something" % b)
        check((m("fedhub_backend_link_failures_total", "prosody1") or 0) > 0,
              "no failed link attempt counted while prosody1 was down")
        check(m("fedhub_backend_queued", "prosody1") == 0, "stanzas still queued for prosody1")
    await gated("metrics_count_the_bounce_and_the_failures", metrics_bounce, 10)


fhit.run_main(h, main)
