/*
 * router/local.h — stanzas addressed to the hub's own domain (router/local.c:
 * XEP-0199 ping, XEP-0030 disco#info).
 */
#ifndef FEDHUB_LOCAL_H
#define FEDHUB_LOCAL_H

#include "router/hub.h"

void local_handle(struct hubw *h, const struct xml_stanza *st);

#endif
