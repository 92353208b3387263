"""tls_interop: fedhub federating with a real peer over TLS only, with certificates.

One scenario, run against Prosody 0.12 (t_tls_prosody.py) or ejabberd 23.01
(t_tls_ejabberd.py). Every certificate comes from a CA made for the run (lib
fhit.PKI). fedhub listens with `tls required` on its STARTTLS port, has a
direct TLS (XEP-0368) listener, `s2s_tls required` outbound and the test CA as
its ca_file; the peer requires TLS and valid certificates (Prosody:
s2s_require_encryption + s2s_secure_auth; ejabberd: s2s_use_starttls required
and no mod_s2s_dialback, so SASL EXTERNAL is the only way in or out).

Domains (P = pro or ejd):
  P.fhtest      alice; STARTTLS both ways, SASL EXTERNAL both ways
  P2.fhtest     alice; _xmpps-server SRV to the peer's direct TLS port, and
                echo2.fhtest has one to fedhub's: direct TLS both ways
  P3.fhtest     alice; the peer presents a certificate that does not name P3
                (Prosody: its own file for the vhost; ejabberd: no certfile
                names it, so it presents its default one)
  echo, echo2   fedhub's components, one certificate naming echo, echo2, hub
  bad.fhtest    a fedhub component without a [domain] certificate: the hub presents
                its default one, which names other domains
  sNNN.fhtest   200 hosted [domain]s, each with its own certificate (SNI)
  plain.fhtest  (Prosody run only) a second Prosody with no TLS at all

XEP-0288 (bidirectional s2s) is not tested: fedhub does not implement it, and
neither peer is configured for it (Prosody's mod_s2s_bidi is not loaded).

Evidence that SASL EXTERNAL was used comes from fedhub's log lines
"s2s in A -> B: authenticated (SASL EXTERNAL)" and "s2s out A -> B: ...";
that a link used direct TLS, from "s2s out X: connected (direct TLS)" and from
the established connections on fedhub's direct TLS port (ss).
"""

import asyncio
import re
import subprocess
import types
import uuid

import fhit
from fhit import bare, check, CaseFailed, PORTS, ECHO, ECHO2, HUB, LOOP

BAD = "bad.fhtest"
N_SNI = 200
SNI_PICK = 123          # the sNNN domain the peer's user writes to
PLAIN = "plain.fhtest"
FLOG = "fedhub.log"


def sni_domain(i):
    return "s%03d.%s" % (i, fhit.TLD)


def main(peer_name):
    h = fhit.Harness("tls_" + peer_name, deadline_s=170)
    fhit.run_main(h, lambda: scenario(h, peer_name))


def s_client_cert(domain, port, starttls):
    """The openssl s_client command line for fedhub's port with SNI = domain
    (and, for STARTTLS, the stream's to=domain), checking the name."""
    argv = ["openssl", "s_client", "-connect", "%s:%d" % (LOOP, port), "-servername", domain,
            "-verify_hostname", domain, "-verify_return_error"]
    if starttls:
        argv += ["-starttls", "xmpp-server", "-xmpphost", domain]
    return argv


async def run_s_client(argv, cafile):
    """Runs it against the test CA; returns (exit status, stdout, stderr, the
    subject and SAN of the certificate the server sent)."""
    p = await asyncio.create_subprocess_exec(*(argv + ["-CAfile", cafile, "-showcerts"]),
                                             stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(b""), 15)
    out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    if not m:
        raise CaseFailed("openssl s_client %s: no certificate (rc %s): %s" % (" ".join(argv[2:]), p.returncode,
                                                                           err.strip()[-300:]))
    x = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName"], input=m.group(0),
                       capture_output=True, text=True, timeout=10).stdout
    return p.returncode, out, err, x


async def start(h, P):
    """The peers, fedhub and the users for peer P; returns what the cases use
    (a namespace of the names below), with the checks they share."""
    if P == "prosody":
        dom, dom2, dom3 = fhit.PRO, fhit.PRO2, "pro3.fhtest"
        s2s, direct, c2s = PORTS["pro_s2s"], PORTS["pro_s2s_tls"], PORTS["pro_c2s"]
    else:
        dom, dom2, dom3 = fhit.EJD, fhit.EJD2, "ejd3.fhtest"
        s2s, direct, c2s = PORTS["ejd_s2s"], PORTS["ejd_s2s_tls"], PORTS["ejd_c2s"]
    hub_s2s, hub_tls = PORTS["hub_s2s"], PORTS["hub_s2s_tls"]

    pki = fhit.PKI(h)
    hub_crt = pki.leaf("hub", [ECHO, ECHO2, HUB])
    # The 200 SNI certificates take seconds: made while the peer starts.
    loop = asyncio.get_running_loop()
    sni_future = loop.run_in_executor(None, pki.leaves, [("s%03d" % i, [sni_domain(i)]) for i in range(N_SNI)])

    srv = {dom: s2s, dom2: s2s, dom3: s2s, HUB: hub_s2s, ECHO: hub_s2s, ECHO2: hub_s2s, BAD: hub_s2s,
           sni_domain(SNI_PICK): hub_s2s}
    if P == "prosody":
        srv[PLAIN] = PORTS["plain_s2s"]
    fhit.start_dnsmasq(h, srv, xmpps={dom2: direct, ECHO2: hub_tls})

    if P == "prosody":
        peer_crt = pki.leaf("peer", [dom, dom2])
        wrong_peer_crt = pki.leaf("wrongpeer", ["wrongpeer.fhtest"])
        tls = fhit.ProsodyTLS(pki.ca, {dom: peer_crt, dom2: peer_crt, dom3: wrong_peer_crt}, direct_port=direct)
        peer = fhit.Prosody(h, extra_hosts=(dom2, dom3), tls=tls)
        for d in (dom, dom2, dom3):
            peer.register("alice", host=d)
        peer.start()
        plain = fhit.Prosody(h, host=PLAIN, c2s=PORTS["plain_c2s"], s2s=PORTS["plain_s2s"], extra_hosts=(),
                             name="plain")
        plain.register("carol")
        plain.start()
    else:
        tls = fhit.EjabberdTLS(pki.ca, [pki.combined("peer", [dom, dom2])], direct_port=direct)
        peer = fhit.Ejabberd(h, extra_hosts=(dom2, dom3), tls=tls)
        peer.start()
        for d in (dom, dom2, dom3):
            peer.register("alice", host=d)
        plain = None

    sni_crts = await sni_future
    domains = {ECHO: hub_crt, ECHO2: hub_crt, HUB: hub_crt}
    for i, crt in enumerate(sni_crts):
        domains[sni_domain(i)] = crt
    conf = fhit.fedhub_config(
        h, components=(ECHO, ECHO2, BAD, sni_domain(SNI_PICK)), s2s_tls="required", domains=domains,
        extra_hub="\n".join(["listen s2s-tls %s:%d" % (LOOP, hub_tls), "ca_file %s" % pki.ca, "s2s_tls required",
                             "connect_timeout 5"]))
    hub = fhit.Fedhub(h, conf, extra_ports=("hub_s2s_tls",))
    hub.try_start()

    User = fhit.make_user_class()
    Comp = fhit.make_component_class()
    alice = User("alice@%s/fhit" % dom, fhit.PASSWORD, c2s)
    alice2 = User("alice@%s/fhit" % dom2, fhit.PASSWORD, c2s)
    alice3 = User("alice@%s/fhit" % dom3, fhit.PASSWORD, c2s)
    users = [alice, alice2, alice3]
    comps = {}

    gated = hub.gate(P)

    async def echo_from(user, bot, tag, timeout=20):
        token = uuid.uuid4().hex
        user.send_message(mto=bot, mbody=token, mtype="chat")
        m = await user.next_message(timeout, lambda m: (m["body"] or "").endswith("|" + token)
                                    or m["type"] == "error")
        check(m["type"] != "error", "error %s from %s: %s" % (fhit.error_condition(m), m["from"],
                                                              m["error"]["text"]))
        check(m["body"] == "%s|%s" % (tag, token), "body %r" % m["body"])
        check(bare(m["from"]) == bot, "from %s" % m["from"])

    async def bounced(user, bot, comp):
        """user's message to bot comes back as an error; comp never sees it."""
        token = uuid.uuid4().hex
        before = len(comp.received)
        user.send_message(mto=bot, mbody=token, mtype="chat")
        m = await user.next_message(25, lambda m: m["type"] == "error" or (m["body"] or "").endswith(token))
        check(m["type"] == "error", "delivered: %r from %s" % (m["body"], m["from"]))
        check(bare(m["from"]) == bot, "bounce from %s" % m["from"])
        check(len(comp.received) == before, "the component received %s" % comp.received[before:])
        return m

    def auth_lines(direction, a, b, how):
        return fhit.log_lines(h, FLOG, r"s2s %s %s -> %s: authenticated \(%s" % (direction, re.escape(a),
                                                                                 re.escape(b), re.escape(how)))

    return types.SimpleNamespace(
        h=h, P=P, dom=dom, dom2=dom2, dom3=dom3, s2s=s2s, direct=direct, c2s=c2s, hub_s2s=hub_s2s,
        hub_tls=hub_tls, pki=pki, loop=loop, peer=peer, plain=plain, hub=hub, User=User, Comp=Comp,
        alice=alice, alice2=alice2, alice3=alice3, users=users, comps=comps, gated=gated, echo_from=echo_from,
        bounced=bounced, auth_lines=auth_lines)


async def tls_cases(ctx):
    """STARTTLS and direct TLS (XEP-0368), SASL EXTERNAL both ways."""
    h, P, dom, dom2, hub_tls, Comp = ctx.h, ctx.P, ctx.dom, ctx.dom2, ctx.hub_tls, ctx.Comp
    alice, alice2, users, comps, gated = ctx.alice, ctx.alice2, ctx.users, ctx.comps, ctx.gated
    echo_from, auth_lines = ctx.echo_from, ctx.auth_lines

    async def logins():
        for u in users:
            await u.login()
    await h.case("%s_users_log_in" % P, logins, 40)

    async def components_up():
        for d, tag in ((ECHO, "main"), (ECHO2, "e2"), (BAD, "bad"), (sni_domain(SNI_PICK), "sni")):
            comps[d] = Comp(d, tag)
            await comps[d].start()
    await gated("components_connect", components_up, 20)

    # ---- STARTTLS both ways, SASL EXTERNAL both ways
    async def starttls_echo():
        await echo_from(alice, "bot@" + ECHO, "main")
        inb = await fhit.wait_log(h, FLOG, r"s2s in %s -> %s: authenticated" % (re.escape(dom), re.escape(ECHO)), 5)
        check(auth_lines("in", dom, ECHO, "SASL EXTERNAL"), "inbound link not by SASL EXTERNAL: %s" % inb)
        outb = await fhit.wait_log(h, FLOG, r"s2s out %s -> %s: authenticated" % (re.escape(ECHO), re.escape(dom)), 5)
        check(auth_lines("out", ECHO, dom, "SASL EXTERNAL"), "outbound link not by SASL EXTERNAL: %s" % outb)
        tls_out = fhit.log_lines(h, FLOG, r"s2s out %s: TLS.*certificate valid" % re.escape(dom))
        check(tls_out, "no 's2s out %s: TLS... certificate valid' line" % dom)
        check(not fhit.log_lines(h, FLOG, r"s2s out %s: connected \(direct TLS\)" % re.escape(dom)),
              "the link to %s used direct TLS, but it has no _xmpps-server record" % dom)
    await gated("starttls_echo_sasl_external_both_ways", starttls_echo, 40)

    # ---- direct TLS (XEP-0368): _xmpps-server records for dom2 and echo2
    direct_echo = {}

    async def direct_round_trip():
        before = fhit.tcp_conns_to_local_port(hub_tls)
        await echo_from(alice2, "bot@" + ECHO2, "e2")
        direct_echo["ok"] = True
        fhit.log("direct TLS: connections on fedhub's %d before %d, now %d"
                 % (hub_tls, len(before), len(fhit.tcp_conns_to_local_port(hub_tls))))
    await gated("echo_between_xmpps_domains", direct_round_trip, 40)

    async def direct_peer_to_hub():
        check(direct_echo, "needs echo_between_xmpps_domains")
        conns = fhit.tcp_conns_to_local_port(hub_tls)
        check(conns, "%s reached echo2 without connecting to fedhub's direct TLS port %d" % (P, hub_tls))
        check(auth_lines("in", dom2, ECHO2, "SASL EXTERNAL"),
              "no 's2s in %s -> %s: authenticated (SASL EXTERNAL)'" % (dom2, ECHO2))
    await gated("direct_tls_peer_to_hub_sasl_external", direct_peer_to_hub, 10)

    async def direct_hub_to_peer():
        check(direct_echo, "needs echo_between_xmpps_domains")
        check(fhit.log_lines(h, FLOG, r"s2s out %s: connected \(direct TLS\)" % re.escape(dom2)),
              "no 's2s out %s: connected (direct TLS)' line" % dom2)
        check(auth_lines("out", ECHO2, dom2, "SASL EXTERNAL"),
              "no 's2s out %s -> %s: authenticated (SASL EXTERNAL)'" % (ECHO2, dom2))
    await gated("direct_tls_hub_to_peer_sasl_external", direct_hub_to_peer, 10)



async def wrong_cert_cases(ctx):
    """Certificates that do not name the domain, on either side."""
    h, P, dom3, alice, alice3, comps = ctx.h, ctx.P, ctx.dom3, ctx.alice, ctx.alice3, ctx.comps
    gated, echo_from, bounced, auth_lines = ctx.gated, ctx.echo_from, ctx.bounced, ctx.auth_lines

    # ---- fedhub presents a certificate that does not name the domain:
    # the peer's secure auth refuses the link and bounces the stanza.
    async def hub_wrong_cert():
        m = await bounced(alice, "bot@" + BAD, comps[BAD])
        fhit.log("bounce for %s: %s %r" % (BAD, fhit.error_condition(m), m["error"]["text"]))
        check(not fhit.log_lines(h, FLOG, r"s2s in \S+ -> %s: authenticated" % re.escape(BAD)),
              "a link to %s was authenticated" % BAD)
    await gated("peer_refuses_hub_cert_with_wrong_name", hub_wrong_cert, 30)

    # ---- the peer presents a certificate that does not name its domain
    mark = fhit.log_size(h, FLOG)
    if P == "prosody":
        async def peer_wrong_cert():
            # No SASL EXTERNAL for it; fedhub's policy allows dialback over
            # TLS, which Prosody falls back to: verified by a callback.
            await echo_from(alice3, "bot@" + ECHO, "main", timeout=25)
            check(not auth_lines("in", dom3, ECHO, "SASL EXTERNAL"), "SASL EXTERNAL accepted for %s" % dom3)
            check(fhit.log_lines(h, FLOG, r"s2s in %s -> %s: authenticated \(dialback\)"
                                 % (re.escape(dom3), re.escape(ECHO)), mark),
                  "no 's2s in %s -> %s: authenticated (dialback)' line" % (dom3, ECHO))
            check(fhit.log_lines(h, FLOG, r"s2s out %s: TLS.*certificate (?!valid)" % re.escape(dom3), mark),
                  "fedhub did not note that %s's certificate is not valid for it" % dom3)
        await gated("peer_wrong_cert_no_sasl_external_dialback_fallback", peer_wrong_cert, 35)
    else:
        async def peer_wrong_cert():
            # No SASL EXTERNAL for it, and ejabberd (no dialback) has no
            # other way: the link fails and the user's message is bounced.
            await bounced(alice3, "bot@" + ECHO, comps[ECHO])
            check(not auth_lines("in", dom3, ECHO, ""), "a link from %s was authenticated" % dom3)
        await gated("peer_wrong_cert_no_sasl_external_link_fails_bounced", peer_wrong_cert, 35)



async def plaintext_cases(ctx):
    """Servers that speak no TLS."""
    h, hub_s2s, plain, User, users = ctx.h, ctx.hub_s2s, ctx.plain, ctx.User, ctx.users
    comps, gated, bounced = ctx.comps, ctx.gated, ctx.bounced

    # ---- a server that speaks no TLS
    async def raw_plaintext():
        r, w = await asyncio.open_connection(LOOP, hub_s2s)
        try:
            w.write(("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
                     "xmlns:stream='http://etherx.jabber.org/streams' from='%s' to='%s' version='1.0'>"
                     % (PLAIN, ECHO)).encode())
            buf = b""
            while b"</stream:features>" not in buf:
                d = await asyncio.wait_for(r.read(4096), 5)
                check(d, "closed before features: %r" % buf)
                buf += d
            feats = buf[buf.index(b"<stream:features"):].decode()
            check("<required" in feats and "starttls" in feats, "features %s" % feats)
            check("dialback" not in feats and "mechanisms" not in feats, "more than STARTTLS offered: %s" % feats)
            w.write(("<db:result from='%s' to='%s'>k</db:result><message from='x@%s' to='bot@%s'>"
                     "<body>plain</body></message>" % (PLAIN, ECHO, PLAIN, ECHO)).encode())
            buf = b""
            while True:
                d = await asyncio.wait_for(r.read(4096), 5)
                if not d:
                    break
                buf += d
            check(b"policy-violation" in buf, "no policy-violation stream error: %r" % buf)
            check(not any(b == "plain" for _, _, b in comps[ECHO].received), "the message was delivered")
        finally:
            w.close()
    await gated("plaintext_dialback_refused_policy_violation", raw_plaintext, 15)

    if plain is not None:
        carol = User("carol@%s/fhit" % PLAIN, fhit.PASSWORD, PORTS["plain_c2s"])
        users.append(carol)

        async def plain_peer():
            await carol.login()
            await bounced(carol, "bot@" + ECHO, comps[ECHO])
            token = uuid.uuid4().hex
            comps[ECHO].send_body("bot@" + ECHO, "carol@" + PLAIN, token)
            while True:     # skip bounces from earlier cases
                e = await asyncio.wait_for(comps[ECHO].errors.get(), 20)
                if bare(e["from"]) == "carol@" + PLAIN:
                    break
            check(fhit.error_condition(e) == "remote-server-not-found", "condition %s" % fhit.error_condition(e))
            check(fhit.log_lines(h, FLOG, r"s2s out %s: peer offers no STARTTLS and TLS is required"
                                 % re.escape(PLAIN)), "no 'peer offers no STARTTLS' line")
            check(fhit.log_lines(h, plain.logs[0], r"policy-violation"),
                  "%s's Prosody did not report a policy-violation stream error from fedhub" % PLAIN)
            check(not carol.inbox.qsize() or all(m["body"] != token for m in list(carol.inbox._queue)),
                  "the message reached carol")
        await gated("plaintext_only_peer_refused_both_ways", plain_peer, 45)



async def sni_cases(ctx):
    """SNI: one certificate per hosted domain, 200 of them."""
    h, dom, hub_s2s, hub_tls, pki = ctx.h, ctx.dom, ctx.hub_s2s, ctx.hub_tls, ctx.pki
    loop, alice, comps, gated, auth_lines = ctx.loop, ctx.alice, ctx.comps, ctx.gated, ctx.auth_lines

    # ---- SNI: one certificate per hosted domain, 200 of them
    async def sni_s_client():
        for i in (0, SNI_PICK, N_SNI - 1):
            d = sni_domain(i)
            for port, starttls in ((hub_s2s, True), (hub_tls, False)):
                rc, out, err, x = await run_s_client(s_client_cert(d, port, starttls), pki.ca)
                fhit.log("s_client %s port %d: %s" % (d, port, " ".join(x.split())))
                check("CN = %s" % d in x and "DNS:%s" % d in x,
                      "%s on port %d: got %s" % (d, port, " ".join(x.split())))
                check(rc == 0 and "Verify return code: 0 (ok)" in out,
                      "%s on port %d: verification failed (rc %s): %s" % (d, port, rc, err.strip()[-300:]))
    await gated("sni_200_domains_openssl_s_client", sni_s_client, 60)

    async def no_sni_s_client():
        # Prosody 0.12 sends no SNI on STARTTLS (only on direct TLS): the
        # domain it asked for is the stream header's 'to', known before
        # the handshake. The certificate must be that domain's.
        d = sni_domain(SNI_PICK)
        argv = ["openssl", "s_client", "-connect", "%s:%d" % (LOOP, hub_s2s), "-noservername",
                "-starttls", "xmpp-server", "-xmpphost", d]
        rc, out, err, x = await run_s_client(argv, pki.ca)
        fhit.log("s_client %s without SNI: %s" % (d, " ".join(x.split())))
        check("DNS:%s" % d in x, "STARTTLS to='%s' without SNI: got %s" % (d, " ".join(x.split())))
    await gated("starttls_without_sni_gets_cert_of_stream_to", no_sni_s_client, 20)

    async def sni_peer():
        d = sni_domain(SNI_PICK)
        token = uuid.uuid4().hex
        mark = fhit.log_size(h, FLOG)
        alice.send_message(mto="bot@" + d, mbody=token, mtype="chat")
        t0 = loop.time()
        while not any(b == token for _, _, b in comps[d].received):
            errs = [m for m in list(alice.inbox._queue) if m["type"] == "error" and bare(m["from"]) == "bot@" + d]
            if errs or loop.time() - t0 > 20:
                # Say which certificate choice fedhub made: by SNI, or the
                # default one when the peer sent none.
                raise CaseFailed("the component for %s got nothing; %s; fedhub: %s" % (
                    d, "bounced to the user: %s %r" % (fhit.error_condition(errs[0]), errs[0]["error"]["text"])
                    if errs else "no bounce either",
                    fhit.log_lines(h, FLOG, r"s2s in: TLS.*SNI", mark)))
            await asyncio.sleep(0.1)
        check(auth_lines("in", dom, d, "SASL EXTERNAL"), "no 's2s in %s -> %s: authenticated (SASL EXTERNAL)'"
              % (dom, d))
    await gated("sni_peer_accepts_the_cert_of_one_of_200_domains", sni_peer, 30)

    async def sni_to_peer():
        # Outbound from a second hosted domain to a peer fedhub already has
        # a link with (authenticated by SASL EXTERNAL for echo.fhtest).
        d = sni_domain(SNI_PICK)
        token = uuid.uuid4().hex
        mark = fhit.log_size(h, FLOG)
        comps[d].send_body("bot@" + d, "alice@" + dom, token)
        t0 = loop.time()
        while True:
            if any(m["body"] == token for m in list(alice.inbox._queue)):
                break
            errs = [e for e in list(comps[d].errors._queue) if bare(e["from"]) == "alice@" + dom]
            check(not errs, "bounced: %s" % (errs and fhit.error_condition(errs[0])))
            if loop.time() - t0 > 20:
                raise CaseFailed("neither delivered nor bounced in 20 s; fedhub said: %s"
                                 % fhit.log_lines(h, FLOG, re.escape(d) + r".*" + re.escape(dom), mark))
            await asyncio.sleep(0.1)
    await gated("sni_domain_to_peer_delivered", sni_to_peer, 25)


async def scenario(h, P):
    ctx = await start(h, P)
    try:
        await tls_cases(ctx)
        await wrong_cert_cases(ctx)
        await plaintext_cases(ctx)
        await sni_cases(ctx)
    finally:
        for c in ctx.comps.values():
            c.close()
        for u in ctx.users:
            u.close()
        ctx.hub.finish(P)
        if h.failed:
            h.dump_logs(ctx.hub.logs + ctx.peer.logs + (ctx.plain.logs if ctx.plain else []), tail=60)
