/*
 * tests/unit/test_router.c — the router's logic without a connection: JID
 * and domain handling (router/sess.c jid_domain, jid_bare), the routing
 * table (router/rt.c, the real cds_lfht under QSBR) and the address checks
 * per kind of source (router/route.c s2s_in_accepts, s2s_out_accepts,
 * comp_accepts, route_accepts), decoded from real stanzas by the real
 * tokenizer.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <urcu-qsbr.h>

#include "router/hub.h"
#include "router/route.h"
#include "router/s2s-t.h"

/* ---- JIDs ---------------------------------------------------------------- */

static int dom(const char *jid, bool escaped, char *out, size_t cap)
{
	struct xml_span s = {jid, (uint32_t)strlen(jid)};
	return jid_domain(s, escaped, out, cap);
}

static void assert_domain(const char *jid, bool escaped, const char *want)
{
	char out[CFG_NAME_MAX];
	int n = dom(jid, escaped, out, sizeof(out));
	if (!want) {
		assert_true(n < 0);
		return;
	}
	assert_int_equal(n, (int)strlen(want));
	assert_string_equal(out, want);
}

static void test_jid_domain_parts(void **state)
{
	(void)state;
	assert_domain("example.org", false, "example.org");
	assert_domain("user@example.org", false, "example.org");
	assert_domain("user@example.org/res", false, "example.org");
	assert_domain("example.org/res", false, "example.org");
	/* RFC 7622 §3.1: the first '/' ends the bare JID, '@' after it is the resource's */
	assert_domain("user@example.org/a@b.example", false, "example.org");
	assert_domain("example.org/a@b.example/c", false, "example.org");
	assert_domain("user@example.org/r/s", false, "example.org");
}

static void test_jid_domain_case_and_trailing_dot(void **state)
{
	(void)state;
	assert_domain("User@EXAMPLE.Org", false, "example.org");
	assert_domain("example.org.", false, "example.org");
	assert_domain("u@Example.Org./r", false, "example.org");
}

static void test_jid_domain_idna(void **state)
{
	(void)state;
	assert_domain("u@b\xc3\xbc"
		      "cher.example",
		      false, "xn--bcher-kva.example");
	assert_domain("B\xc3\x9c"
		      "CHER.example",
		      false, "xn--bcher-kva.example");
	/* an A-label as such is checked too */
	assert_domain("xn--bcher-kva.example", false, "xn--bcher-kva.example");
	assert_domain("xn--zz.example", false, NULL);
}

static void test_jid_domain_escaped_attribute(void **state)
{
	(void)state;
	/* from an attribute value with references: decoded before use */
	assert_domain("u@&#x65;xample.org", true, "example.org");
	assert_domain("u&amp;v@example.org", true, "example.org");
	/* the same bytes unescaped are not a domain */
	assert_domain("u@&#x65;xample.org", false, NULL);
	assert_domain("u@&bogus;.org", true, NULL);
}

static void test_jid_domain_refuses_bad_domains(void **state)
{
	(void)state;
	assert_domain("", false, NULL);
	assert_domain("user@", false, NULL);
	assert_domain("user@/res", false, NULL);
	assert_domain("/res", false, NULL);
	assert_domain("a@b@example.org", false, NULL); /* '@' in a domainpart */
	assert_domain("exa mple.org", false, NULL);
	assert_domain("a..example", false, NULL);
	assert_domain(".example", false, NULL);
	assert_domain("-a.example", false, NULL);
	assert_domain("a-.example", false, NULL);
	assert_domain("..", false, NULL);
	assert_domain(".", false, NULL);
}

static void test_jid_domain_bounded_by_cap(void **state)
{
	(void)state;
	char out[16];
	assert_true(dom("example.org", false, out, 8) < 0);
	assert_int_equal(dom("a.example", false, out, 10), 9);
	assert_true(dom("a.example", false, out, 9) < 0); /* no room for the NUL */
}

static void test_jid_bare(void **state)
{
	(void)state;
	const char *cases[][2] = {
		{"u@d.example/r", "u@d.example"},
		{"u@d.example", "u@d.example"},
		{"d.example/r@x/y", "d.example"},
		{"d.example", "d.example"},
		{"/r", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct xml_span b = jid_bare((struct xml_span){cases[i][0], (uint32_t)strlen(cases[i][0])});
		assert_int_equal(b.n, strlen(cases[i][1]));
		assert_memory_equal(b.p, cases[i][1], b.n);
	}
}

/* ---- the routing table --------------------------------------------------- */

static const struct rt_route *look(const char *d)
{
	return rt_lookup(d, strlen(d));
}

static struct net_ref ref(uint16_t w, uint32_t slot)
{
	return (struct net_ref){.worker = w, .slot = slot, .gen = 1};
}

static void test_rt_static_entries(void **state)
{
	(void)state;
	assert_null(look("nothing.example"));
	assert_int_equal(rt_set_static("hub.rt.example", RT_HUB), 0);
	assert_int_equal(look("hub.rt.example")->kind, RT_HUB);
	/* lookups are exact: no prefix, no suffix match */
	assert_null(look("rt.example"));
	assert_null(look("x.hub.rt.example"));
	assert_null(rt_lookup("hub.rt.example", 6));
	/* replaced, not duplicated */
	assert_int_equal(rt_set_static("hub.rt.example", RT_HOSTED), 0);
	assert_int_equal(look("hub.rt.example")->kind, RT_HOSTED);
}

static void test_rt_component_pool(void **state)
{
	(void)state;
	assert_int_equal(rt_comp_add("nocomp.rt.example", ref(0, 1)), -ENOENT);
	assert_int_equal(rt_set_static("comp.rt.example", RT_COMPONENT), 0);
	assert_int_equal(look("comp.rt.example")->nconns, 0);
	assert_int_equal(rt_comp_add("comp.rt.example", ref(0, 1)), 1);
	assert_int_equal(rt_comp_add("comp.rt.example", ref(1, 2)), 2);
	assert_int_equal(rt_comp_add("comp.rt.example", ref(0, 3)), 3);
	/* removing one keeps the others in order */
	assert_int_equal(rt_comp_del("comp.rt.example", ref(1, 2)), 2);
	const struct rt_route *r = look("comp.rt.example");
	assert_int_equal(r->nconns, 2);
	assert_int_equal(r->conns[0].slot, 1);
	assert_int_equal(r->conns[1].slot, 3);
	/* an unknown reference (another generation) removes nothing */
	struct net_ref stale = ref(0, 1);
	stale.gen = 2;
	assert_int_equal(rt_comp_del("comp.rt.example", stale), -ENOENT);
	assert_int_equal(look("comp.rt.example")->nconns, 2);
	/* bounded */
	for (int i = 2; i < RT_POOL_MAX; i++)
		assert_int_equal(rt_comp_add("comp.rt.example", ref(0, (uint32_t)(100 + i))), i + 1);
	assert_int_equal(rt_comp_add("comp.rt.example", ref(0, 999)), -ENOSPC);
	/* emptied, the entry stays: the domain is still ours */
	for (int i = 2; i < RT_POOL_MAX; i++)
		assert_true(rt_comp_del("comp.rt.example", ref(0, (uint32_t)(100 + i))) >= 0);
	assert_int_equal(rt_comp_del("comp.rt.example", ref(0, 1)), 1);
	assert_int_equal(rt_comp_del("comp.rt.example", ref(0, 3)), 0);
	assert_non_null(look("comp.rt.example"));
	assert_int_equal(look("comp.rt.example")->kind, RT_COMPONENT);
}

static void test_rt_s2s_claims(void **state)
{
	(void)state;
	const char *d = "remote.rt.example";
	assert_int_equal(rt_s2s_claim(d, strlen(d), 1), 1);
	/* the first claim wins; later ones learn the owner */
	assert_int_equal(rt_s2s_claim(d, strlen(d), 0), 1);
	assert_int_equal(look(d)->kind, RT_S2S_OUT);
	assert_int_equal(look(d)->owner, 1);
	/* only the owner releases it */
	rt_s2s_release(d, 0);
	assert_non_null(look(d));
	rt_s2s_release(d, 1);
	assert_null(look(d));
	assert_int_equal(rt_s2s_claim(d, strlen(d), 0), 0);
	rt_s2s_release(d, 0);
	/* a domain we serve is never claimed for an outbound link */
	assert_int_equal(rt_set_static("served.rt.example", RT_HOSTED), 0);
	assert_int_equal(rt_s2s_claim("served.rt.example", strlen("served.rt.example"), 0), -EEXIST);
	assert_int_equal(look("served.rt.example")->kind, RT_HOSTED);
}

/* ---- address checks per kind --------------------------------------------- */

/* The first stanza of a jabber:server stream, parsed by the real tokenizer. */
static struct xml_tok tok;
static char stz_buf[1024];

static void decode(const char *stanza, struct stanza_addrs *a)
{
	static const char hdr[] = "<stream:stream xmlns='jabber:server' "
				  "xmlns:stream='http://etherx.jabber.org/streams'>";
	struct xml_limits lim;
	xml_limits_default(&lim);
	xml_tok_init(&tok, &lim);
	tok.authenticated = true;
	size_t used;
	assert_int_equal(xml_tok_next(&tok, hdr, sizeof(hdr) - 1, &used), XML_EV_STREAM_OPEN);
	size_t n = strlen(stanza);
	assert_true(n < sizeof(stz_buf));
	memcpy(stz_buf, stanza, n);
	assert_int_equal(xml_tok_next(&tok, stz_buf, n, &used), XML_EV_STANZA);
	stanza_addrs_decode(&tok.st, a);
}

static struct pair pairs[4];
static struct sess in_s = {.kind = SESS_S2S_IN, .pairs = pairs};

static void add_pair(struct sess *s, const char *remote, const char *local, enum pair_state st)
{
	/* few pairs: pair_find() compares each one's hash, no index to keep */
	struct pair *p = &s->pairs[s->npairs++];
	*p = (struct pair){.remote = (char *)remote,
			   .local = (char *)local,
			   .hash = pix_hash2(remote, strlen(remote), local, strlen(local))};
	pair_set(s, p, st); /* the stream counts its pending and valid pairs */
}

static int setup_addr(void **state)
{
	(void)state;
	assert_int_equal(rt_set_static("hub.example", RT_HUB), 0);
	assert_int_equal(rt_set_static("ours.example", RT_HOSTED), 0);
	assert_int_equal(rt_set_static("also.example", RT_HOSTED), 0);
	assert_int_equal(rt_set_static("comp.ours.example", RT_COMPONENT), 0);
	in_s.npairs = 0;
	in_s.npend = in_s.nvalid = 0;
	add_pair(&in_s, "peer.example", "ours.example", PAIR_VALID);
	add_pair(&in_s, "peer.example", "also.example", PAIR_PENDING);
	add_pair(&in_s, "other.example", "also.example", PAIR_INVALID);
	return 0;
}

static void assert_verdict(struct addr_verdict v, enum addr_action act, int err)
{
	assert_int_equal(v.verdict, act);
	if (act == ADDR_STREAM_ERROR)
		assert_int_equal(v.serr, err);
	if (act == ADDR_BOUNCE)
		assert_int_equal(v.sterr, err);
}

static struct addr_verdict check(struct sess *s, const char *stanza)
{
	struct stanza_addrs a;
	decode(stanza, &a);
	return route_accepts(s, &a);
}

static void test_decode_looks_up_to_once(void **state)
{
	(void)state;
	struct stanza_addrs a;
	decode("<message from='u@Peer.Example/r' to='v@OURS.example'/>", &a);
	assert_string_equal(a.to, "ours.example");
	assert_string_equal(a.fr, "peer.example");
	assert_non_null(a.route);
	assert_int_equal(a.route->kind, RT_HOSTED);
	decode("<message from='u@peer.example' to='nowhere.example'/>", &a);
	assert_null(a.route);
	decode("<message from='u@peer.example'/>", &a);
	assert_true(a.tl <= 0);
	assert_null(a.route);
	decode("<iq to='&#x6f;urs.example' from='peer.example' type='get' id='1'/>", &a);
	assert_string_equal(a.to, "ours.example");
	assert_non_null(a.route);
}

static void test_s2s_in_accepts_validated_pairs_only(void **state)
{
	(void)state;
	assert_verdict(check(&in_s, "<message from='u@peer.example' to='v@ours.example'/>"), ADDR_ROUTE, 0);
	assert_verdict(check(&in_s, "<presence from='PEER.example/r' to='ours.example.'/>"), ADDR_ROUTE, 0);
	/* RFC 6120 §8.1.1.1 / §8.1.2.1: both addresses */
	assert_verdict(check(&in_s, "<message to='v@ours.example'/>"), ADDR_STREAM_ERROR, SERR_IMPROPER_ADDRESSING);
	assert_verdict(check(&in_s, "<message from='u@peer.example'/>"), ADDR_STREAM_ERROR, SERR_IMPROPER_ADDRESSING);
	assert_verdict(check(&in_s, "<message from='u@peer..example' to='ours.example'/>"), ADDR_STREAM_ERROR,
		       SERR_IMPROPER_ADDRESSING);
	/* not ours */
	assert_verdict(check(&in_s, "<message from='u@peer.example' to='v@elsewhere.example'/>"), ADDR_STREAM_ERROR,
		       SERR_HOST_UNKNOWN);
	/* ours, but that pair is only pending: the peer is known, our side not */
	assert_verdict(check(&in_s, "<message from='u@peer.example' to='v@also.example'/>"), ADDR_STREAM_ERROR,
		       SERR_HOST_UNKNOWN);
	/* a from domain never validated on this stream (or refused) */
	assert_verdict(check(&in_s, "<message from='u@other.example' to='v@also.example'/>"), ADDR_STREAM_ERROR,
		       SERR_INVALID_FROM);
	assert_verdict(check(&in_s, "<message from='u@third.example' to='v@ours.example'/>"), ADDR_STREAM_ERROR,
		       SERR_INVALID_FROM);
}

static void test_s2s_out_accepts_bidi_from_its_remote(void **state)
{
	(void)state;
	struct lpair lp[2] = {{.local = "ours.example", .hash = pix_hash1("ours.example", 12), .state = PAIR_VALID},
			      {.local = "also.example", .hash = pix_hash1("also.example", 12), .state = PAIR_PENDING}};
	struct s2s_out link = {.remote = "peer.example", .lp = lp, .nlp = 2};
	struct sess out = {.kind = SESS_S2S_OUT, .remote = "peer.example", .link = &link};
	assert_verdict(check(&out, "<message from='u@peer.example' to='v@ours.example'/>"), ADDR_ROUTE, 0);
	assert_verdict(check(&out, "<message from='u@other.example' to='v@ours.example'/>"), ADDR_STREAM_ERROR,
		       SERR_INVALID_FROM);
	assert_verdict(check(&out, "<message from='u@peer.example' to='v@also.example'/>"), ADDR_STREAM_ERROR,
		       SERR_HOST_UNKNOWN);
	assert_verdict(check(&out, "<message from='u@peer.example' to='v@far.example'/>"), ADDR_STREAM_ERROR,
		       SERR_HOST_UNKNOWN);
	assert_verdict(check(&out, "<message from='u@peer.example'/>"), ADDR_STREAM_ERROR, SERR_IMPROPER_ADDRESSING);
	/* a link whose peer domain is not known yet accepts nothing */
	out.remote = NULL;
	assert_verdict(check(&out, "<message from='u@peer.example' to='v@ours.example'/>"), ADDR_STREAM_ERROR,
		       SERR_INVALID_FROM);
	/* no link: nothing is authenticated */
	out.remote = "peer.example";
	out.link = NULL;
	assert_verdict(check(&out, "<message from='u@peer.example' to='v@ours.example'/>"), ADDR_STREAM_ERROR,
		       SERR_HOST_UNKNOWN);
}

static void test_comp_accepts_its_domains(void **state)
{
	(void)state;
	struct sess comp = {.kind = SESS_COMP, .local = "comp.ours.example"};
	assert_verdict(check(&comp, "<message from='bot@comp.ours.example' to='u@peer.example'/>"), ADDR_ROUTE, 0);
	assert_verdict(check(&comp, "<message from='x.comp.ours.example' to='u@peer.example'/>"), ADDR_ROUTE, 0);
	assert_verdict(check(&comp, "<message from='bot@ours.example' to='u@peer.example'/>"), ADDR_STREAM_ERROR,
		       SERR_INVALID_FROM);
	assert_verdict(check(&comp, "<message to='u@peer.example'/>"), ADDR_STREAM_ERROR, SERR_INVALID_FROM);
	/* a good sender without a usable `to` gets a bounce, not a stream error */
	assert_verdict(check(&comp, "<message from='bot@comp.ours.example'/>"), ADDR_BOUNCE, STERR_BAD_REQUEST);
	assert_verdict(check(&comp, "<message from='bot@comp.ours.example' to='a@@b'/>"), ADDR_BOUNCE,
		       STERR_BAD_REQUEST);
}

static void test_generated_and_verify_sources(void **state)
{
	(void)state;
	assert_verdict(check(NULL, "<message from='hub.example' to='u@peer.example'/>"), ADDR_ROUTE, 0);
	assert_verdict(check(NULL, "<message to='u@peer.example'/>"), ADDR_DROP, 0);
	struct sess v = {.kind = SESS_VERIFY};
	assert_verdict(check(&v, "<message from='u@peer.example' to='v@ours.example'/>"), ADDR_STREAM_ERROR,
		       SERR_UNSUPPORTED_STANZA_TYPE);
}

static int setup(void **state)
{
	(void)state;
	rcu_register_thread();
	assert_int_equal(rt_init(), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rcu_unregister_thread();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jid_domain_parts),
		cmocka_unit_test(test_jid_domain_case_and_trailing_dot),
		cmocka_unit_test(test_jid_domain_idna),
		cmocka_unit_test(test_jid_domain_escaped_attribute),
		cmocka_unit_test(test_jid_domain_refuses_bad_domains),
		cmocka_unit_test(test_jid_domain_bounded_by_cap),
		cmocka_unit_test(test_jid_bare),
		cmocka_unit_test(test_rt_static_entries),
		cmocka_unit_test(test_rt_component_pool),
		cmocka_unit_test(test_rt_s2s_claims),
		cmocka_unit_test_setup(test_decode_looks_up_to_once, setup_addr),
		cmocka_unit_test_setup(test_s2s_in_accepts_validated_pairs_only, setup_addr),
		cmocka_unit_test_setup(test_s2s_out_accepts_bidi_from_its_remote, setup_addr),
		cmocka_unit_test_setup(test_comp_accepts_its_domains, setup_addr),
		cmocka_unit_test_setup(test_generated_and_verify_sources, setup_addr),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
