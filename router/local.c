/*
 * router/local.c — the hub's own domain: XEP-0199 ping and XEP-0030
 * disco#info; any other iq gets service-unavailable (RFC 6120 §8.3.3.19).
 * Stanzas addressed to the hub are rare, so they are parsed into an mxml
 * tree; nothing on the forwarding path comes here.
 */
#include <stdio.h>
#include <string.h>
#include <mxml.h>

#include "router/hub.h"
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
	if ((size_t)n < sizeof(buf))
		route_generated(h, buf, (size_t)n);
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
	mxml_node_t *tree = xml_to_mxml(st->raw);
	mxml_node_t *child = NULL;
	if (tree) {
		mxml_node_t *iq = mxmlGetType(tree) == MXML_ELEMENT ? tree : mxmlGetFirstChild(tree);
		for (child = iq ? mxmlGetFirstChild(iq) : NULL; child; child = mxmlGetNextSibling(child))
			if (mxmlGetType(child) == MXML_ELEMENT)
				break;
	}
	const char *name = child ? mxmlGetElement(child) : NULL;
	const char *ns = child ? mxmlElementGetAttr(child, "xmlns") : NULL;
	bool get = span_eq(st->type, "get");
	if (get && name && ns && strcmp(name, "ping") == 0 && strcmp(ns, "urn:xmpp:ping") == 0) {
		reply(h, st, NULL);
	} else if (get && name && ns && strcmp(name, "query") == 0 &&
		   strcmp(ns, "http://jabber.org/protocol/disco#info") == 0 && !mxmlElementGetAttr(child, "node")) {
		reply(h, st,
		      "<query xmlns='http://jabber.org/protocol/disco#info'>"
		      "<identity category='server' type='im' name='fedhub'/>"
		      "<feature var='http://jabber.org/protocol/disco#info'/>"
		      "<feature var='urn:xmpp:ping'/>"
		      "</query>");
	} else {
		route_bounce(h, st, STERR_SERVICE_UNAVAILABLE, NULL);
	}
	if (tree)
		mxmlDelete(tree);
}
