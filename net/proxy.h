/*
 * net/proxy.h — the PROXY protocol (HAProxy's, versions 1 and 2): the
 * header a load balancer sends first on a connection to say whom it is
 * relaying for.
 */
#ifndef FEDHUB_PROXY_H
#define FEDHUB_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* Parse a header at the start of [p, p+n). Returns the bytes it takes
 * (> 0), 0 if more bytes are needed, -1 if this is not a valid header.
 * *src gets the original client's address (AF_INET or AF_INET6 in a
 * sockaddr_in6-sized struct), or family AF_UNSPEC for LOCAL / UNKNOWN
 * (health checks: keep the connection's own address). */
int proxy_parse(const char *p, size_t n, struct sockaddr_in6 *src);

/* An address block: "10.0.0.0/8", "192.0.2.7" (a /32), "2001:db8::/32",
 * "::1" (a /128). IPv4-mapped IPv6 peers (::ffff:a.b.c.d) match IPv4 blocks. */
struct proxy_cidr {
	unsigned char addr[16]; /* network order; IPv4 in the first 4 bytes */
	unsigned char family;   /* AF_INET or AF_INET6 */
	unsigned char bits;
};
#define PROXY_MAX_TRUSTED 64
/* Parse one block; host bits must be zero ("10.0.0.1/8" is refused, since it
 * is more likely a typo than a network). Returns 0 or -1. */
int proxy_cidr_parse(const char *s, struct proxy_cidr *out);
bool proxy_cidr_match(const struct proxy_cidr *c, const struct sockaddr *sa);
/* The balancers allowed to send a header (at most PROXY_MAX_TRUSTED); set
 * before the workers start, read-only afterwards. Until it is called only
 * loopback (127.0.0.0/8, ::1) is trusted. */
void proxy_set_trusted(const struct proxy_cidr *list, int n);
bool proxy_trusted(const struct sockaddr *sa);

#endif
