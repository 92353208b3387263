/*
 * net/proxy.h — the PROXY protocol (HAProxy's, versions 1 and 2): the
 * header a load balancer sends first on a connection to say whom it is
 * relaying for.
 */
#ifndef FEDHUB_PROXY_H
#define FEDHUB_PROXY_H

#include <stddef.h>
#include <netinet/in.h>

/* Parse a header at the start of [p, p+n). Returns the bytes it takes
 * (> 0), 0 if more bytes are needed, -1 if this is not a valid header.
 * *src gets the original client's address (AF_INET or AF_INET6 in a
 * sockaddr_in6-sized struct), or family AF_UNSPEC for LOCAL / UNKNOWN
 * (health checks: keep the connection's own address). */
int proxy_parse(const char *p, size_t n, struct sockaddr_in6 *src);

#endif
