/*
 * router/s2s_target.c — where an outbound link (router/s2s_out.c) or a
 * dialback verification stream (router/dialback.c) connects: a [route]'s
 * addresses, else a DNS lookup (SRV, XEP-0368 direct TLS) whose answer
 * goes to s2s_on_dns(); and which TLS the outbound stream demands.
 *
 * DNS answers pointing at loopback or private addresses are dropped unless
 * dns_allow_private says otherwise: a remote's DNS must not turn the hub
 * into a way into the network it sits in. [route] addresses are the
 * operator's own and are taken as they are.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "router/s2s-t.h"
#include "router/policy.h"
#include "router/backend.h"
#include "net/alloc.h"
#include "net/log.h"
#include "net/tls.h"

/* ---- static routes and resolution ---------------------------------- */

static const struct cfg_route *static_route(const char *domain)
{
	return cfg_route_find(hub_cfg, domain); /* a hash probe, built at config load */
}

/* Fill targets from a [route]; returns true if the domain has one. */
bool s2s_route_targets(const char *domain, struct dns_target *t, int *nt)
{
	/* a backend's domain: a dialback verification goes to the backend */
	if (backend_targets(domain, t, nt))
		return true;
	const struct cfg_route *r = static_route(domain);
	if (!r)
		return false;
	*nt = 0;
	for (int i = 0; i < r->nconnect && *nt < DNS_MAX_TARGETS; i++) {
		if (r->connect[i].len > sizeof(t[*nt].ss))
			continue; /* not IPv4 or IPv6: cfg takes no other */
		memcpy(&t[*nt].ss, &r->connect[i].ss, r->connect[i].len);
		t[*nt].len = r->connect[i].len;
		t[*nt].tls = false; /* a [route]'s direct_tls is the route's own (s2s_out.c) */
		(*nt)++;
	}
	return true;
}

/* Addresses a remote's DNS must not send us to: loopback, RFC 1918 and
 * fc00::/7 private, link-local, CGNAT (RFC 6598), "this network",
 * multicast, broadcast and reserved, and v4-mapped forms of those. */
static bool addr_private(const union dns_addr *ss)
{
	uint32_t a;
	if (ss->ss_family == AF_INET6) {
		const uint8_t *b = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (!memcmp(b, mapped, 12)) {
			a = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
			goto v4;
		}
		bool zero10 = true;
		for (int i = 0; i < 15; i++)
			zero10 &= b[i] == 0;
		if (zero10 && (b[15] == 0 || b[15] == 1)) /* :: and ::1 */
			return true;
		return (b[0] & 0xfe) == 0xfc ||                   /* fc00::/7 unique local */
		       (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || /* fe80::/10 link-local */
		       (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) || /* fec0::/10 site-local */
		       b[0] == 0xff;                              /* multicast */
	}
	if (ss->ss_family != AF_INET)
		return true;
	a = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
v4:
	return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 || /* this net, private, loopback */
	       (a >> 20) == (172u << 4 | 1) ||                          /* 172.16/12 */
	       (a >> 16) == (192u << 8 | 168) ||                        /* 192.168/16 */
	       (a >> 16) == (169u << 8 | 254) ||                        /* link-local */
	       (a >> 22) == (100u << 2 | 1) ||                          /* 100.64/10 CGNAT */
	       (a >> 28) >= 14;                                         /* multicast, reserved, broadcast */
}

void s2s_drop_private_targets(struct dns_target *t, int *nt, const char *domain)
{
	if (hub_cfg->dns_allow_private)
		return;
	int k = 0;
	for (int i = 0; i < *nt; i++) {
		if (!addr_private(&t[i].ss)) {
			t[k++] = t[i];
			continue;
		}
		char txt[INET6_ADDRSTRLEN] = "?";
		const void *a = t[i].ss.ss_family == AF_INET6
					? (const void *)&((struct sockaddr_in6 *)&t[i].ss)->sin6_addr
					: (const void *)&((struct sockaddr_in *)&t[i].ss)->sin_addr;
		inet_ntop(t[i].ss.ss_family, a, txt, sizeof(txt));
		log_warn(0, "s2s %s: DNS points at %s, a loopback or private address: not used (dns_allow_private)",
			 domain, txt);
	}
	*nt = k;
}

void s2s_resolve(struct hubw *h, const char *domain, struct s2s_out *L, struct vstream *vs)
{
	struct dns_wait *dw = xcalloc(1, sizeof(*dw));
	snprintf(dw->req.domain, sizeof(dw->req.domain), "%s", domain);
	dw->link = L;
	dw->vs = vs;
	dw->req.cookie = dw;
	MET_INC(h->m, dns_queries);
	if (dns_submit(h->w, &dw->req) < 0) {
		dw->req.status = -EAGAIN;
		s2s_on_dns(h, &dw->req);
	}
}

/* Outbound TLS policy: a [route]'s own tls, else the remote's policy
 * ([remote] tls, s2s_tls; required under auth certificate). */
enum cfg_tls_mode s2s_out_tls_policy(const char *remote)
{
	int bt = backend_tls_policy(remote); /* the internal links' [backend] tls */
	if (bt >= 0)
		return (enum cfg_tls_mode)bt;
	const struct cfg_route *r = static_route(remote);
	struct policy pol = policy_for(remote);
	if (!hub_tls)
		return pol.tls == CFG_TLS_REQUIRED ? CFG_TLS_REQUIRED : CFG_TLS_OFF;
	if (r && r->tls_set && pol.auth != CFG_AUTH_CERTIFICATE)
		return r->tls;
	return (enum cfg_tls_mode)pol.tls;
}
