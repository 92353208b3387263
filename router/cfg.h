/*
 * router/cfg.h — router.conf: one source of truth for every directive.
 *
 * Format: one directive per line, `#` starts a comment (at the start of a line
 * or after whitespace), `[section]` or `[section NAME]` opens a block. Unknown
 * directives, bad values, duplicate sections and missing required values are
 * errors reported with their line. The shipped router.conf documents every
 * directive; cfg_directive_names[] lists them so a test can hold it to that.
 */
#ifndef FEDHUB_CFG_H
#define FEDHUB_CFG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include "net/net.h" /* NET_MAX_LISTENERS bounds listen[] */
#include "net/proxy.h"
#include "router/pix.h"

#define CFG_NAME_MAX 256 /* a domain name, normalised */

enum cfg_listen_kind { CFG_LISTEN_S2S, CFG_LISTEN_S2S_TLS, CFG_LISTEN_COMPONENT };
enum cfg_tls_mode { CFG_TLS_REQUIRED, CFG_TLS_OPTIONAL, CFG_TLS_OFF };
/* How a remote domain must prove who it is: dialback = a certificate that
 * names it (SASL EXTERNAL, XEP-0344) or Server Dialback; certificate = only
 * a trusted certificate that names it (RFC 6125), over TLS. */
enum cfg_auth_mode { CFG_AUTH_DIALBACK, CFG_AUTH_CERTIFICATE };

struct cfg_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[64]; /* as written, for logs */
};

struct cfg_listen {
	enum cfg_listen_kind kind;
	struct cfg_addr addr;
	enum cfg_tls_mode tls; /* s2s listeners: STARTTLS policy */
	bool tls_set;          /* given in the file; else: required when a [domain] has a cert */
	bool proxy_protocol;   /* expect a PROXY protocol v1/v2 header */
	int line;              /* in the config file, for messages */
};

struct cfg_domain { /* [domain NAME]: a hosted domain (the hub is its s2s server) */
	char name[CFG_NAME_MAX];
	char cert[512], key[512]; /* PEM paths; empty = no certificate */
	int line;
};

struct cfg_component { /* [component NAME]: an XEP-0114 service */
	char name[CFG_NAME_MAX];
	char secret[256];
	int line;
};

struct cfg_route { /* [route NAME]: static route, overrides DNS */
	char name[CFG_NAME_MAX];
	struct cfg_addr connect[8];
	int nconnect;
	enum cfg_tls_mode tls;
	bool tls_set; /* given in the section (else s2s_tls or the [remote]'s) */
	bool direct_tls;
	int line;
};

struct cfg_remote {              /* [remote NAME] or [remote *.SUFFIX]: policy for remote domains */
	char name[CFG_NAME_MAX]; /* normalised; "*.example.org" for a suffix */
	enum cfg_tls_mode tls;
	bool tls_set;
	enum cfg_auth_mode auth;
	bool auth_set;
	int line;
};

/* [backend NAME]: an unmodified XMPP server behind the hub, serving some of
 * the hosted domains (router/backend.c). */
#define CFG_BACKEND_CONNECT_MAX 8
#define CFG_BACKEND_ALLOW_MAX   16
struct cfg_backend {
	char name[64];
	struct cfg_addr connect[CFG_BACKEND_CONNECT_MAX]; /* tried in order */
	int nconnect;
	struct proxy_cidr allow[CFG_BACKEND_ALLOW_MAX]; /* its streams' sources */
	int nallow;                                     /* 0 in the file: the connect addresses */
	enum cfg_tls_mode tls;                          /* the internal links (default optional) */
	int ndomains;
	int line;
};

struct cfg_bdom { /* one domain a backend serves */
	char name[CFG_NAME_MAX];
	int backend; /* index into cfg.backends */
	int line;
};

struct cfg_acl {                 /* one remote_allow / remote_deny entry */
	char name[CFG_NAME_MAX]; /* "example.org" or "*.example.org" */
	bool allow;
	int line;
};

struct policy_tab;

#define CFG_MAX_SENTINELS 8

struct cfg_cluster {           /* [cluster]: nodes sharing routing state in Redis (router/clu.h) */
	bool on;               /* the section is present */
	struct cfg_addr redis; /* len 0: through Sentinel */
	struct cfg_addr sentinel[CFG_MAX_SENTINELS];
	int nsentinel;
	char master[64];  /* the master name all `sentinel` lines give */
	char node_id[64]; /* resolved: `auto` became hostname-port */
	struct cfg_addr node_listen;
	struct cfg_addr node_address; /* advertised; node_listen when not given */
	char secret_file[512];
	/* node_tls CERT KEY CA: node links are TLS 1.3 from the first byte,
	 * both sides presenting CERT and requiring the peer's to chain to CA;
	 * empty: node links in the clear */
	char node_tls_cert[512], node_tls_key[512], node_tls_ca[512];
	unsigned char secret[256]; /* the cluster secret's bytes */
	uint32_t secret_len;
	uint32_t lease_time_ms;    /* default 5 s */
	uint32_t redis_timeout_ms; /* every Redis command and connect; default 1 s */
	int line;                  /* of [cluster] */
};

struct cfg {
	/* [hub] */
	int workers;                   /* 0 = auto: one per core */
	char hub_domain[CFG_NAME_MAX]; /* the hub's own domain (ping, disco) */
	struct cfg_listen listen[NET_MAX_LISTENERS];
	int nlisten;
	struct cfg_addr http; /* /health, /metrics; len 0 = off */
	char dialback_secret_file[512];
	char dialback_secret[128]; /* read from the file, or random if none */
	int log_level;             /* 0 error 1 warn 2 info 3 debug */

	bool log_json;                /* log_format json: one JSON object per line */
	uint32_t log_rate_limit;      /* lines per second per call site; 0 = no limit */
	uint32_t metrics_domains_max; /* domains with their own /metrics labels */

	uint32_t max_stanza_size;
	uint32_t max_stanza_size_preauth;
	uint32_t max_depth, max_attrs, max_name;
	uint32_t link_queue_max;     /* stanzas queued per outbound link while it connects */
	uint32_t send_queue_max;     /* bytes in a connection's send queue: its high-water mark */
	uint32_t stall_timeout;      /* s; a destination with no progress this long is bounced */
	uint32_t queue_memory_max;   /* bytes of stanzas waiting for full destinations, all workers */
	uint32_t source_allowance;   /* bytes one source may have waiting for one destination */
	uint32_t idle_timeout;       /* s; close links idle this long */
	uint32_t keepalive_interval; /* s; whitespace keepalive / ping on idle links */
	uint32_t connect_timeout;    /* s; outbound connect + auth */
	uint32_t retry_min;          /* s; least time between attempts at a failed remote */
	struct cfg_addr dns_server;  /* len 0 = system resolv.conf */
	uint32_t dns_cache_max;      /* cached domains (answers and failures) */
	uint32_t dns_ttl_min;        /* s; floor on the TTL of a cached answer */
	uint32_t dns_ttl_max;        /* s; ceiling on it */
	uint32_t dns_max_inflight;   /* domains resolved at once; the rest wait */
	char ca_file[512];           /* CA bundle for peer certificates; empty = system */
	enum cfg_tls_mode s2s_tls;   /* default outbound TLS policy */
	enum cfg_auth_mode s2s_auth; /* default authentication demanded of remotes */
	bool dns_allow_private;      /* DNS answers may point at loopback/private addresses */
	struct cfg_acl *acl;         /* remote_allow / remote_deny */
	int nacl;
	bool have_allow; /* some remote_allow: unlisted remotes are refused */
	struct cfg_remote *remotes;
	int nremotes;
	struct policy_tab *policy; /* built from the above by cfg_parse (router/policy.h) */
	/* inbound s2s limits (router/guard.h, router/s2s_in.c); 0 = no limit
	 * where the directive says so */
	uint32_t max_connections;                        /* inbound s2s connections open at once */
	uint32_t max_connections_per_ip;                 /* ... from one source (IPv4, IPv6 /64) */
	uint32_t connection_rate_per_ip;                 /* new connections per second per source */
	uint32_t preauth_timeout;                        /* s; a stream must have a valid pair by then */
	uint32_t max_preauth_bytes;                      /* bytes a stream may send before that */
	uint32_t max_pairs_per_stream;                   /* (remote, local) pairs claimed on one stream */
	uint32_t max_verify_per_stream;                  /* dialback verifications pending per stream */
	uint32_t max_verify_total;                       /* ... in flight in the whole hub */
	uint32_t link_rate;                              /* bytes/s of stanzas per inbound s2s link; 0 = off */
	uint32_t link_stanza_rate;                       /* stanzas/s per inbound s2s link; 0 = off */
	uint32_t remote_rate;                            /* bytes/s per remote domain per worker; 0 = off */
	struct proxy_cidr proxy_from[PROXY_MAX_TRUSTED]; /* who may send a PROXY header */
	int nproxy_from;                                 /* 0: loopback only */
	uint32_t drain_timeout;                          /* s; SIGTERM: time given to queues to flush */
	char control_socket[108];                        /* fedhubctl's Unix socket; empty = off */
	struct cfg_cluster cluster;
	/* sections */
	struct cfg_domain *domains;
	int ndomains;
	struct cfg_component *components;
	int ncomponents;
	struct cfg_route *routes;
	int nroutes;
	struct pix route_ix; /* routes by name (router/pix.h), built by cfg_parse */
	struct pix comp_ix;  /* components by name, built by cfg_parse */
	struct pix dom_ix;   /* domains by name, built by cfg_parse */
	struct cfg_backend *backends;
	int nbackends;
	struct cfg_bdom *bdoms; /* every backend's domains */
	int nbdoms;
	struct pix bdom_ix; /* bdoms by name, built by cfg_parse */
};

/* Parse text (name is used in messages). On error prints "NAME:LINE: message"
 * for each error to `err` (may be NULL) and returns the number of errors (> 0);
 * 0 on success. `c` is overwritten (it needs no initialisation) and, whatever
 * the result, must be released with cfg_free. Files named by the config are
 * checked at this point (cert, key, ca_file) and the dialback secret is read
 * (or generated), so a config that parses is one the daemon can start with. */
int cfg_parse(struct cfg *c, const char *text, const char *name, FILE *err);
int cfg_load(struct cfg *c, const char *path, FILE *err);
/* The embedded default (cfg_default_text): loopback listeners, hub domain
 * "localhost", [domain localhost] without a certificate, and the component
 * echo.localhost with secret "secret". */
int cfg_load_default(struct cfg *c, FILE *err);
/* The [route] for a domain (normalised), or NULL: one hash probe. */
const struct cfg_route *cfg_route_find(const struct cfg *c, const char *domain);
/* [component NAME] / [domain NAME] by name, or NULL: one hash probe. */
const struct cfg_component *cfg_component_find(const struct cfg *c, const char *name);
const struct cfg_domain *cfg_domain_find(const struct cfg *c, const char *name);
void cfg_free(struct cfg *c);
/* The backend serving a domain (normalised), or NULL: one hash probe. */
const struct cfg_backend *cfg_backend_of(const struct cfg *c, const char *domain);
/* Is sa one of the sources whose streams are backend b's (allow_from)? */
bool cfg_backend_allows(const struct cfg_backend *b, const struct sockaddr *sa);
/* Do two configurations have the same [backend] sections? (reload.c) */
bool cfg_backend_same(const struct cfg *a, const struct cfg *b);
/* Replace dst's [backend] sections by copies of src's (control plane:
 * aborts when out of memory). */
void cfg_backend_copy(struct cfg *dst, const struct cfg *src);
extern const char cfg_default_text[];

/* Every directive and section name the parser knows, NULL-terminated. */
extern const char *const cfg_directive_names[];
extern const char *const cfg_section_names[];

/* Normalise a domain (lower-case ASCII; IDNA2008 via libidn2 for non-ASCII;
 * strips one trailing dot). Only LDH labels of 1..63 octets, 253 in all, no
 * IPv4 literal. Returns length or -1 if invalid. */
int cfg_domain_normalise(const char *in, size_t n, char *out, size_t cap);

/* "1.2.3.4:P", "[v6]:P" or "localhost:P" (127.0.0.1); no DNS is done. The port
 * may be left out when default_port > 0. Returns 0 or -EINVAL. */
int cfg_parse_addr(const char *s, struct cfg_addr *a, int default_port);
/* The numeric host ("127.0.0.1", "::1") and the port of a parsed address,
 * for libraries that take them apart (libmicrohttpd). */
int cfg_addr_host(const struct cfg_addr *a, char *buf, size_t cap);
int cfg_addr_port(const struct cfg_addr *a);

/* Names for logs: "required", "s2s-tls"... */
const char *cfg_tls_mode_name(enum cfg_tls_mode m);
const char *cfg_auth_mode_name(enum cfg_auth_mode m);
/* "example.org" or "*.example.org" normalised into out; -1 if invalid. */
int cfg_pattern_normalise(const char *in, char *out, size_t cap);
const char *cfg_listen_kind_name(enum cfg_listen_kind k);

#endif
