/*
 * net/dns.h — asynchronous s2s name resolution on the control thread (c-ares).
 *
 * A worker fills a struct dns_req and submits it; the control thread resolves
 * _xmpp-server._tcp.DOMAIN (RFC 6120 §3.2: SRV by priority, weighted random
 * within a priority), falls back to A/AAAA of DOMAIN on 5269, caches answers
 * for their TTL, and hands the request back to the same worker as a message
 * of type DNS_MSG_RESULT. Workers never block on DNS.
 */
#ifndef FEDHUB_DNS_H
#define FEDHUB_DNS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include "net/net.h"

#define DNS_MAX_TARGETS 8
enum { DNS_MSG_QUERY = NET_MSG_USER, DNS_MSG_RESULT };

struct dns_target {
	struct sockaddr_storage ss;
	socklen_t len;
	bool tls; /* from _xmpps-server: direct TLS (XEP-0368) */
};

struct dns_req {
	char domain[256];
	int worker;
	void *cookie; /* the worker's, untouched */
	int status;   /* 0, or -ENOENT (no such domain/service), -ETIMEDOUT, -EIO */
	int ntargets;
	struct dns_target t[DNS_MAX_TARGETS];
};

/* Control thread: set up c-ares; server "host:port" or NULL for resolv.conf. */
int dns_init(const char *server);
/* Control thread: run the loop (net messages + c-ares) until net_stopping(). */
void dns_ctrl_loop(void);
/* Worker: submit (the request is owned by the control thread until it comes back). */
int dns_submit(struct net_worker *w, struct dns_req *r);
/* Control thread: handle a DNS_MSG_QUERY message. */
void dns_on_ctrl_msg(struct net_msg *m);

#endif
