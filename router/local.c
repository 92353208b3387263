/*
 * router/local.c — the hub's own domain: XEP-0199 ping and XEP-0030
 * disco#info; any other iq gets service-unavailable (RFC 6120 §8.3.3.19).
 * Stanzas addressed to the hub are rare; the tokenizer has validated them,
 * and all the hub needs is the iq's first child (xml_stanza_child): its
 * name, its namespace and whether it names a disco node.
 */
#include <stdio.h>
#include <string.h>

#include "router/hub.h"
#include "router/sess.h"
#include "router/route.h"
#include "router/local.h"
#include "net/log.h"

static void reply(struct hubw *h, const struct xml_stanza *st, const char *payload)
{
	char buf[2048];
	int n = snprintf(buf, sizeof(buf), "<iq type='result'"), k;
	if ((k = put_attr(buf + n, sizeof(buf) - (size_t)n, "from", st->to)) < 0)
		return;
	n += k;
	if ((k = put_attr(buf + n, sizeof(buf) - (size_t)n, "to", st->from)) < 0)
		return;
	n += k;
	if ((k = put_attr(buf + n, sizeof(buf) - (size_t)n, "id", st->id)) < 0)
		return;
	n += k;
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, payload ? ">%s</iq>" : "/>", payload ? payload : "");
	if ((size_t)n < sizeof(buf)) {
		MET_INC(h->m, generated[MET_GEN_ANSWER]);
		route_generated(h, buf, (size_t)n);
	}
}

/* A namespace attribute value (references decoded) equals uri. */
static bool ns_is(struct xml_span v, const char *uri)
{
	char buf[128];
	int n = xml_attr_decode(v, buf, sizeof(buf));
	return n >= 0 && (size_t)n == strlen(uri) && memcmp(buf, uri, (size_t)n) == 0;
}

void local_handle(struct hubw *h, const struct xml_stanza *st)
{
	if (!span_eq(st->name, "iq")) {
		/* messages to the hub itself: nobody reads them */
		if (span_eq(st->name, "message"))
			route_bounce(h, st, STERR_SERVICE_UNAVAILABLE, NULL);
		return;
	}
	if (span_eq(st->type, "result") || span_eq(st->type, "error"))
		return;
	struct xml_child ch;
	bool child = xml_stanza_child(st->raw, &ch) == 0;
	struct xml_span node;
	bool get = span_eq(st->type, "get");
	if (get && child && span_eq(ch.name, "ping") && ns_is(ch.ns, "urn:xmpp:ping")) {
		reply(h, st, NULL);
	} else if (get && child && span_eq(ch.name, "query") && ns_is(ch.ns, "http://jabber.org/protocol/disco#info") &&
		   !xml_attr_get(ch.attrs, "node", &node)) {
		reply(h, st,
		      "<query xmlns='http://jabber.org/protocol/disco#info'>"
		      "<identity category='server' type='im' name='fedhub'/>"
		      "<feature var='http://jabber.org/protocol/disco#info'/>"
		      "<feature var='urn:xmpp:ping'/>"
		      "</query>");
	} else {
		route_bounce(h, st, STERR_SERVICE_UNAVAILABLE, NULL);
	}
}
