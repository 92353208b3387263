/*
 * tests/unit/test_nodelink.c — the node stream's control elements, its
 * authentication MAC and the lease-context table (router/nl_proto.c,
 * protocol in router/nodelink-int.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "router/nodelink-int.h"
#include "router/rt.h"

static const char hdr[] = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
			  "xmlns:stream='http://etherx.jabber.org/streams' from='a' to='b' id='IA' version='1.0'>";

/* What a node stream's elements were classified as, in order. */
struct seen {
	int n;
	enum nl_ctrl_kind kind[16];
	char remote[16][64];
	uint64_t token[16];
	char text[16][80];
};

/* Feed data to a tokenizer in two pieces split at `at`, presenting what was
 * not consumed again with the next piece (as net/ does), and classify every
 * element. Returns the number of stream headers seen. */
static int drive(const char *data, size_t n, size_t at, struct seen *out)
{
	struct xml_tok t;
	struct xml_limits lim;
	xml_limits_default(&lim);
	xml_tok_init(&t, &lim);
	t.authenticated = true;
	char *buf = malloc(n + 1);
	size_t have = 0, fed = 0;
	int headers = 0;
	memset(out, 0, sizeof(*out));
	for (int piece = 0; piece < 2; piece++) {
		size_t upto = piece ? n : at;
		memcpy(buf + have, data + fed, upto - fed);
		have += upto - fed;
		fed = upto;
		size_t off = 0;
		for (;;) {
			size_t used = 0;
			int ev = xml_tok_next(&t, buf + off, have - off, &used);
			if (ev == XML_EV_MORE)
				break;
			assert_int_not_equal(ev, XML_EV_ERROR);
			off += used;
			if (ev == XML_EV_STREAM_OPEN)
				headers++;
			if (ev == XML_EV_STANZA) {
				struct nl_ctrl k;
				nl_ctrl_parse(&t.st, &k);
				int i = out->n++;
				out->kind[i] = k.kind;
				snprintf(out->remote[i], 64, "%.*s", k.rn > 0 ? k.rn : 0, k.remote);
				out->token[i] = k.token;
				snprintf(out->text[i], 80, "%.*s", (int)k.text.n, k.text.p ? k.text.p : "");
			}
			if (off == have)
				break;
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
	free(buf);
	return headers;
}

static void test_node_stream_split_at_every_byte(void **state)
{
	char lease[200], refused[200], auth[200], mac[NL_MAC_HEX + 1];
	nl_mac((const unsigned char *)"k3y", 3, "connector", "IA", "IB", "a", "b", mac);
	assert_true(nl_ctrl_auth(auth, sizeof(auth), mac) > 0);
	assert_true(nl_ctrl_lease(lease, sizeof(lease), "remote.example", 14, 42) > 0);
	assert_true(nl_ctrl_refused(refused, sizeof(refused), "remote.example", 14, 18446744073709551615ull) > 0);
	char data[2048];
	int n = snprintf(data, sizeof(data), "%s%s%s%s<message from='u@x.example' to='v@remote.example'><body>1</body>"
			 "</message> <iq type='get' id='q' from='x.example' to='remote.example'/>%s",
			 hdr, auth, nl_ctrl_ok, lease, refused);
	for (size_t at = 0; at <= (size_t)n; at++) {
		struct seen s;
		assert_int_equal(drive(data, (size_t)n, at, &s), 1);
		assert_int_equal(s.n, 6);
		assert_int_equal(s.kind[0], NL_C_AUTH);
		assert_string_equal(s.text[0], mac);
		assert_int_equal(s.kind[1], NL_C_OK);
		assert_int_equal(s.kind[2], NL_C_LEASE);
		assert_string_equal(s.remote[2], "remote.example");
		assert_true(s.token[2] == 42);
		assert_int_equal(s.kind[3], NL_C_STANZA);
		assert_int_equal(s.kind[4], NL_C_STANZA);
		assert_int_equal(s.kind[5], NL_C_REFUSED);
		assert_true(s.token[5] == UINT64_MAX);
	}
}

/* One element after the header, classified. */
static struct nl_ctrl one(const char *el)
{
	char data[1024];
	int n = snprintf(data, sizeof(data), "%s%s", hdr, el);
	struct seen s;
	drive(data, (size_t)n, (size_t)n, &s);
	assert_int_equal(s.n, 1);
	struct nl_ctrl k = {.kind = s.kind[0], .token = s.token[0], .rn = (int)strlen(s.remote[0])};
	snprintf(k.remote, sizeof(k.remote), "%s", s.remote[0]);
	return k;
}

static void test_ctrl_elements_refused_when_malformed(void **state)
{
	/* the remote is normalised as a domain */
	struct nl_ctrl k = one("<lease xmlns='urn:fedhub:node' r='Remote.Example.' t='7'/>");
	assert_int_equal(k.kind, NL_C_LEASE);
	assert_string_equal(k.remote, "remote.example");
	assert_true(k.token == 7);
	assert_int_equal(one("<lease xmlns='urn:fedhub:node' t='7'/>").kind, NL_C_BAD);
	assert_int_equal(one("<lease xmlns='urn:fedhub:node' r='a.example'/>").kind, NL_C_BAD);
	assert_int_equal(one("<lease xmlns='urn:fedhub:node' r='a.example' t='-1'/>").kind, NL_C_BAD);
	assert_int_equal(one("<lease xmlns='urn:fedhub:node' r='a.example' t='18446744073709551616'/>").kind, NL_C_BAD);
	assert_int_equal(one("<lease xmlns='urn:fedhub:node' r='a..example' t='1'/>").kind, NL_C_BAD);
	assert_int_equal(one("<refused xmlns='urn:fedhub:node' r='' t='1'/>").kind, NL_C_BAD);
	assert_int_equal(one("<auth xmlns='urn:fedhub:node'/>").kind, NL_C_BAD);
	assert_int_equal(one("<auth xmlns='urn:fedhub:node'></auth>").kind, NL_C_BAD);
	assert_int_equal(one("<hello xmlns='urn:fedhub:node'/>").kind, NL_C_BAD);
	/* another namespace is not ours: a stanza (the link decides) */
	assert_int_equal(one("<lease xmlns='urn:fedhub:other' r='a.example' t='1'/>").kind, NL_C_STANZA);
	assert_int_equal(one("<message to='a@b.example'/>").kind, NL_C_STANZA);
}

static void test_mac_binds_role_ids_and_secret(void **state)
{
	char m[NL_MAC_HEX + 1], x[NL_MAC_HEX + 1];
	const unsigned char *k = (const unsigned char *)"k3y";
	nl_mac(k, 3, "connector", "IA", "IB", "a", "b", m);
	/* HMAC-SHA256("k3y", "fedhub-node connector\0IA\0IB\0a\0b"), computed with Python's hmac */
	assert_string_equal(m, "b07472b4537b8ab0c23f26345f321da3e1fb7cd8cae0f76141b94ae1bd4f92a4");
	assert_true(nl_mac_ok((struct xml_span){m, NL_MAC_HEX}, m));
	nl_mac(k, 3, "acceptor", "IA", "IB", "a", "b", x);
	assert_string_not_equal(m, x);
	nl_mac(k, 3, "connector", "IB", "IA", "a", "b", x);
	assert_string_not_equal(m, x);
	nl_mac(k, 3, "connector", "IA", "IB", "b", "a", x);
	assert_string_not_equal(m, x);
	/* the separators count: moving a byte between two fields changes it */
	nl_mac(k, 3, "connector", "IAI", "B", "a", "b", x);
	assert_string_not_equal(m, x);
	nl_mac((const unsigned char *)"k3z", 3, "connector", "IA", "IB", "a", "b", x);
	assert_string_not_equal(m, x);
	assert_false(nl_mac_ok((struct xml_span){x, NL_MAC_HEX}, m));
	assert_false(nl_mac_ok((struct xml_span){m, NL_MAC_HEX - 1}, m));
	char flip[NL_MAC_HEX + 1];
	memcpy(flip, m, sizeof(flip));
	flip[NL_MAC_HEX - 1] ^= 1;
	assert_false(nl_mac_ok((struct xml_span){flip, NL_MAC_HEX}, m));
}

static void test_ctx_table_grows_and_updates(void **state)
{
	struct nl_ctx t = {0};
	char d[64];
	for (int i = 0; i < 5000; i++) {
		int n = snprintf(d, sizeof(d), "r%d.example", i);
		assert_int_equal(nl_ctx_put(&t, d, (size_t)n, rt_hash(d, (size_t)n), (uint64_t)i), 0);
	}
	assert_int_equal(t.n, 5000);
	for (int i = 0; i < 5000; i++) {
		int n = snprintf(d, sizeof(d), "r%d.example", i);
		struct nl_ctx_ent *e = nl_ctx_find(&t, d, (size_t)n, rt_hash(d, (size_t)n));
		assert_non_null(e);
		assert_true(e->token == (uint64_t)i);
	}
	/* a new token replaces the old, no second entry */
	assert_int_equal(nl_ctx_put(&t, "r7.example", 10, rt_hash("r7.example", 10), 99), 0);
	assert_int_equal(t.n, 5000);
	assert_true(nl_ctx_find(&t, "r7.example", 10, rt_hash("r7.example", 10))->token == 99);
	/* the same hash, another name: not found */
	assert_null(nl_ctx_find(&t, "r7.exampl", 9, rt_hash("r7.example", 10)));
	assert_null(nl_ctx_find(&t, "zz.example", 10, rt_hash("zz.example", 10)));
	nl_ctx_clear(&t);
	assert_int_equal(t.n, 0);
	assert_null(nl_ctx_find(&t, "r7.example", 10, rt_hash("r7.example", 10)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node_stream_split_at_every_byte),
		cmocka_unit_test(test_ctrl_elements_refused_when_malformed),
		cmocka_unit_test(test_mac_binds_role_ids_and_secret),
		cmocka_unit_test(test_ctx_table_grows_and_updates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
