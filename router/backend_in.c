/*
 * router/backend_in.c — the rules for streams a backend opens to the hub,
 * which router/s2s_in.c applies, and where a dialback verification of a
 * backend's domain goes (router/s2s_target.c).
 *
 * Outbound transit. A backend sends all its federation traffic to the hub:
 * its resolver (split-horizon DNS) or its static routes point every remote
 * domain R at the hub, so it opens an ordinary s2s stream to=R from=D.
 * The hub takes it, though it does not serve R, when the stream's source is
 * in some backend's allow_from (backend_source()). Every domain the stream
 * then claims — the header's `from`, a <db:result/>, SASL EXTERNAL — must
 * be a domain of a backend whose allow_from holds that source
 * (backend_claim_ok()), or the stream gets <invalid-from/>; and a claim of
 * a backend's domain from anywhere else is refused the same way. The hub
 * verifies D's <db:result/> with dialback against the backend itself (the
 * verification stream goes to its connect addresses: backend_targets()),
 * or trusts a certificate naming D (XEP-0344). The stanzas the backend then
 * sends from D to R leave on the hub's own federation link for (D, R),
 * authenticated as D with the hub's certificate or dialback secret.
 *
 * Dialback toward the backend. On such a stream the backend may also ask
 * <db:verify from=D to=R/> about a key the hub gave it on an internal link
 * (backend.c); the hub answers as R's authoritative server: its keys need
 * no state (XEP-0185).
 *
 * A stream from a source in no allow_from, to a domain the hub does not
 * serve, is refused as before (host-unknown).
 */
#include <string.h>

#include "router/backend.h"
#include "router/s2s-t.h"

bool backend_source(const struct sockaddr *sa)
{
	const struct cfg *c = hub_cfg;
	for (int i = 0; i < c->nbackends; i++)
		if (cfg_backend_allows(&c->backends[i], sa))
			return true;
	return false;
}

bool backend_claim_ok(const char *d, const struct sockaddr *sa)
{
	const struct cfg_backend *b = cfg_backend_of(hub_cfg, d);
	return b && cfg_backend_allows(b, sa);
}

bool backend_targets(const char *domain, struct dns_target *t, int *nt)
{
	const struct cfg_backend *b = cfg_backend_of(hub_cfg, domain);
	if (!b)
		return false;
	*nt = 0;
	for (int i = 0; i < b->nconnect && *nt < DNS_MAX_TARGETS; i++) {
		memcpy(&t[*nt].ss, &b->connect[i].ss, b->connect[i].len);
		t[*nt].len = b->connect[i].len;
		t[*nt].tls = false;
		(*nt)++;
	}
	return true;
}

int backend_tls_policy(const char *domain)
{
	const struct cfg_backend *b = cfg_backend_of(hub_cfg, domain);
	if (!b)
		return -1;
	if (!hub_tls)
		return b->tls == CFG_TLS_REQUIRED ? CFG_TLS_REQUIRED : CFG_TLS_OFF;
	return b->tls;
}
