/*
 * router/policy.h — what the hub demands of each remote domain.
 *
 * The effective policy of a remote domain comes from three places in
 * router.conf, most specific first:
 *   [remote NAME] / [remote *.SUFFIX]  tls, auth for that domain (an exact
 *                                      section beats a suffix one; a longer
 *                                      suffix beats a shorter one);
 *   [hub] s2s_tls, s2s_auth            the defaults;
 *   [hub] remote_allow / remote_deny   whether the domain may federate at all
 *                                      (the most specific entry decides; with
 *                                      no entry matching, a domain is allowed
 *                                      unless some remote_allow exists).
 * `auth certificate` implies `tls required`.
 *
 * The table is built once from the parsed configuration (cfg_parse does it,
 * so `fedhub -t` checks it) and read by every worker without locks: it is
 * never written after that. A lookup hashes the name once per label (a
 * name has at most 127), whatever the number of entries.
 */
#ifndef FEDHUB_POLICY_H
#define FEDHUB_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "router/cfg.h"

struct policy_tab;

struct policy {
	uint8_t tls;     /* enum cfg_tls_mode: outbound links, and what inbound pairs need */
	bool tls_set;    /* tls comes from a [remote] section (else s2s_tls) */
	uint8_t auth;    /* enum cfg_auth_mode */
	bool allowed;    /* remote_allow / remote_deny */
	int remote_line; /* the [remote] section that applied, 0 = none */
	int acl_line;    /* the remote_allow / remote_deny line that decided, 0 = none */
};

/* Build the table of c's [remote] sections and allow/deny entries. Returns
 * NULL only for an empty table (the defaults apply to everything). */
struct policy_tab *policy_tab_new(const struct cfg *c);
void policy_tab_free(struct policy_tab *t);

/* The effective policy of `remote` (normalised, n bytes) under c. */
struct policy policy_lookup(const struct cfg *c, const char *remote, size_t n);
/* The same under the running configuration (hub_cfg). */
struct policy policy_for(const char *remote);

/* Inbound: may `remote` be authenticated on a stream that is (not) over
 * TLS and whose certificate does (not) prove it? REFUSED: remote_deny /
 * remote_allow, or its [remote] tls required on a cleartext stream (the
 * stream is closed with <policy-violation/>); NEED_CERT: auth certificate
 * and no proving certificate (dialback is refused, the stream stays). */
enum policy_in { POLICY_IN_OK, POLICY_IN_REFUSED, POLICY_IN_NEED_CERT };
enum policy_in policy_inbound(const char *remote, bool tls_on, bool cert_proves);

/* Does an entry name (exact "a.example" or "*.example") match `d`?
 * "*.example" matches every name below example, not example itself. */
bool policy_name_match(const char *pattern, const char *d, size_t n);

#endif
