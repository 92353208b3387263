/*
 * router/comp.h — XEP-0114 component streams (router/comp.c).
 */
#ifndef FEDHUB_COMP_H
#define FEDHUB_COMP_H

#include "router/hub.h"

extern const struct net_conn_ops comp_ops;
void comp_accept(struct net_conn *c);

#endif
