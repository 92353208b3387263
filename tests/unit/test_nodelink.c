/*
 * tests/unit/test_nodelink.c — the node stream's control elements, its
 * authentication MAC, the lease-context table and the connector's ring of
 * unacknowledged stanzas (router/nl_proto.c, protocol in
 * router/nodelink-int.h).
 */
#include <errno.h>
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

static void test_ack_element(void **state)
{
	char a[64];
	assert_true(nl_ctrl_ack(a, sizeof(a), 4294967295u) > 0);
	struct nl_ctrl k = one(a);
	assert_int_equal(k.kind, NL_C_ACK);
	assert_true(k.token == 4294967295u);
	assert_int_equal(one("<a xmlns='urn:fedhub:node' h='0'/>").kind, NL_C_ACK);
	/* h counts modulo 2^32: a wider one is not ours */
	assert_int_equal(one("<a xmlns='urn:fedhub:node' h='4294967296'/>").kind, NL_C_BAD);
	assert_int_equal(one("<a xmlns='urn:fedhub:node'/>").kind, NL_C_BAD);
	assert_int_equal(one("<a xmlns='urn:fedhub:node' h='x'/>").kind, NL_C_BAD);
	assert_int_equal(nl_ctrl_ack(a, 8, 1), -1); /* does not fit */
}

static char bytes[4096];

static struct nl_ua ua(uint32_t i)
{
	/* entry i: bytes[i], i % 7 + 1 long (only p and n are looked at) */
	return (struct nl_ua){.p = bytes + i % 4000, .n = i % 7 + 1, .token = i};
}

static uint64_t ua_bytes(uint32_t from, uint32_t to)
{
	uint64_t b = 0;
	for (uint32_t i = from; i < to; i++)
		b += i % 7 + 1;
	return b;
}

static void test_ring_acks_cumulatively_in_order(void **state)
{
	struct nl_ring r = {0};
	for (uint32_t i = 0; i < 10; i++)
		assert_int_equal(nl_ring_push(&r, &(struct nl_ua[]){ua(i)}[0], 100), 0);
	assert_true(r.pend_bytes == ua_bytes(0, 10) && r.sent_bytes == 0);
	/* nothing sent: nothing can be acknowledged */
	assert_int_equal(nl_ring_ack(&r, 0), 0);
	assert_int_equal(nl_ring_ack(&r, 1), -EPROTO);
	for (uint32_t i = 0; i < 6; i++) {
		struct nl_ua *e = nl_ring_pending(&r);
		assert_non_null(e);
		assert_true(e->token == i); /* in push order */
		nl_ring_mark_sent(&r);
	}
	assert_int_equal(r.nsent, 6);
	assert_true(r.sent_bytes == ua_bytes(0, 6) && r.pend_bytes == ua_bytes(6, 10));
	/* h=4 acknowledges the first four, once */
	assert_int_equal(nl_ring_ack(&r, 4), 4);
	for (uint32_t i = 0; i < 4; i++)
		assert_true(nl_ring_pop(&r).token == i);
	assert_int_equal(r.acked, 4);
	assert_int_equal(nl_ring_ack(&r, 4), 0);
	/* cumulative: h=6 covers 4 and 5 only; h=7 counts one never sent */
	assert_int_equal(nl_ring_ack(&r, 6), 2);
	assert_int_equal(nl_ring_ack(&r, 7), -EPROTO);
	/* going back is as wrong as going too far */
	assert_int_equal(nl_ring_ack(&r, 3), -EPROTO);
	assert_int_equal(r.len, 6);
	assert_true(nl_ring_pending(&r)->token == 6);
	nl_ring_free(&r);
}

static void test_ring_is_bounded_and_grows_in_order(void **state)
{
	struct nl_ring r = {0};
	/* wrap the head around before growing: order must survive */
	for (uint32_t i = 0; i < 50; i++)
		assert_int_equal(nl_ring_push(&r, &(struct nl_ua[]){ua(i)}[0], 1000), 0);
	for (uint32_t i = 0; i < 50; i++)
		nl_ring_mark_sent(&r);
	assert_int_equal(nl_ring_ack(&r, 40), 40);
	for (uint32_t i = 0; i < 40; i++)
		nl_ring_pop(&r);
	for (uint32_t i = 50; i < 300; i++)
		assert_int_equal(nl_ring_push(&r, &(struct nl_ua[]){ua(i)}[0], 260), i - 40 < 260 ? 0 : -ENOBUFS);
	assert_int_equal(r.len, 260);
	assert_int_equal(nl_ring_push(&r, &(struct nl_ua[]){ua(999)}[0], 260), -ENOBUFS);
	for (uint32_t i = 40; i < 300; i++) {
		if (i >= 50)
			nl_ring_mark_sent(&r);
	}
	assert_int_equal(nl_ring_ack(&r, 300), 260);
	for (uint32_t i = 40; i < 300; i++)
		assert_true(nl_ring_pop(&r).token == i);
	assert_int_equal(r.len, 0);
	assert_true(r.sent_bytes == 0 && r.pend_bytes == 0);
	nl_ring_free(&r);
}

static void test_ring_counter_wraps(void **state)
{
	/* a long-lived link passes 2^32 stanzas: h wraps with the count */
	struct nl_ring r = {.acked = UINT32_MAX - 2};
	for (uint32_t i = 0; i < 6; i++) {
		assert_int_equal(nl_ring_push(&r, &(struct nl_ua[]){ua(i)}[0], 100), 0);
		nl_ring_mark_sent(&r);
	}
	assert_int_equal(nl_ring_ack(&r, UINT32_MAX), 2);
	assert_int_equal(nl_ring_ack(&r, 2), 5); /* UINT32_MAX - 2 + 5 == 2 mod 2^32 */
	assert_int_equal(nl_ring_ack(&r, 4), -EPROTO);
	for (int i = 0; i < 5; i++)
		nl_ring_pop(&r);
	assert_int_equal(r.acked, 2);
	assert_int_equal(nl_ring_ack(&r, 3), 1);
	nl_ring_free(&r);
	assert_int_equal(r.acked, 2); /* the count belongs to the stream, not the array */
}

/* A sender and a receiver over a stream that fails: the receiver counts what
 * it took and acknowledges now and then; whatever the ring still holds when
 * the link fails is exactly what the receiver did not take, in order. */
static void test_ring_holds_exactly_the_unacknowledged_suffix(void **state)
{
	for (uint32_t fail_at = 0; fail_at < 300; fail_at += 7) {
		struct nl_ring r = {0};
		uint32_t next = 0, taken = 0, told = 0, seed = fail_at * 2654435761u + 1;
		while (taken < fail_at || next < fail_at) {
			seed = seed * 1103515245u + 12345u;
			uint32_t act = (seed >> 16) % 3;
			if (act == 0 && next < 400) { /* a source routes a stanza here */
				assert_int_equal(nl_ring_push(&r, &(struct nl_ua[]){ua(next)}[0], 4096), 0);
				next++;
			} else if (act == 1 && nl_ring_pending(&r)) { /* it goes on the stream */
				nl_ring_mark_sent(&r);
			} else if (taken < r.acked + r.nsent && taken < fail_at) { /* the receiver takes one */
				taken++;
				if ((seed >> 8) % 4 == 0) { /* and acknowledges its batch */
					int k = nl_ring_ack(&r, taken);
					assert_int_equal(k, (int)(taken - r.acked));
					while (k--)
						nl_ring_pop(&r);
					told = taken;
				}
			}
			if (next >= 400 && !nl_ring_pending(&r) && taken == r.acked + r.nsent)
				break;
		}
		/* the link fails: the last acknowledgement may never have left */
		assert_int_equal(r.acked, told);
		assert_true(r.acked <= taken);
		for (uint32_t i = told; i < next; i++)
			assert_true(nl_ring_pop(&r).token == i);
		assert_int_equal(r.len, 0);
		nl_ring_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node_stream_split_at_every_byte),
		cmocka_unit_test(test_ctrl_elements_refused_when_malformed),
		cmocka_unit_test(test_mac_binds_role_ids_and_secret),
		cmocka_unit_test(test_ctx_table_grows_and_updates),
		cmocka_unit_test(test_ack_element),
		cmocka_unit_test(test_ring_acks_cumulatively_in_order),
		cmocka_unit_test(test_ring_is_bounded_and_grows_in_order),
		cmocka_unit_test(test_ring_counter_wraps),
		cmocka_unit_test(test_ring_holds_exactly_the_unacknowledged_suffix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
