/*
 * tests/unit/test_streams.c — the stream negotiation state machines, driven
 * by byte strings over loopback against the router running in this process
 * (tests/unit/hub_harness.h: the real runtime, one worker): the inbound s2s
 * stream (header, features, dialback with a verification against the peer's
 * authoritative server, stanzas), the component handshake (XEP-0114), the
 * outbound link (features, db:result answers, queued stanzas flushed), and
 * the features parser of outbound streams on its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "tests/unit/hub_harness.h"
#include "router/s2s-t.h"

#define WAIT_MS 3000

static int s2s_port, comp_port, auth_port, remote_port;
static int auth_lfd = -1, remote_lfd = -1;

#define HDR_FROM_PEER                                                                                                \
	"<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' " \
	"xmlns:db='jabber:server:dialback' from='peer.example' to='ours.example' version='1.0'>"

static int group_setup(void **state)
{
	(void)state;
	s2s_port = harness_free_port();
	comp_port = harness_free_port();
	auth_port = harness_free_port();
	remote_port = harness_free_port();
	auth_lfd = harness_listen(auth_port);
	remote_lfd = harness_listen(remote_port);
	if (auth_lfd < 0 || remote_lfd < 0)
		return -1;
	char conf[1024];
	snprintf(conf, sizeof(conf),
		 "[hub]\n"
		 "domain hub.example\n"
		 "listen s2s 127.0.0.1:%d tls off\n"
		 "listen component 127.0.0.1:%d\n"
		 "s2s_tls off\n"
		 "[domain ours.example]\n"
		 "[component comp.ours.example]\n"
		 "secret s3cret\n"
		 "[route peer.example]\n"
		 "connect 127.0.0.1:%d\n"
		 "[route far.example]\n"
		 "connect 127.0.0.1:%d\n"
		 "[route far2.example]\n"
		 "connect 127.0.0.1:%d\n",
		 s2s_port, comp_port, auth_port, remote_port, remote_port);
	return harness_start(conf);
}

static int group_teardown(void **state)
{
	(void)state;
	harness_stop();
	close(auth_lfd);
	close(remote_lfd);
	return 0;
}

/* ---- inbound s2s ---------------------------------------------------------- */

static void test_inbound_header_gets_header_and_dialback_feature(void **state)
{
	(void)state;
	struct harness_rx rx = {0};
	int fd = harness_connect(s2s_port, WAIT_MS);
	assert_true(fd >= 0);
	assert_int_equal(harness_send(fd, HDR_FROM_PEER), 0);
	assert_true(harness_expect(fd, &rx, "</stream:features>"));
	assert_non_null(strstr(rx.buf, "<stream:stream"));
	assert_non_null(strstr(rx.buf, "from='ours.example'"));
	assert_non_null(strstr(rx.buf, "urn:xmpp:features:dialback"));
	assert_null(strstr(rx.buf, "starttls")); /* no certificate: nothing to offer */
	char id[128];
	assert_true(harness_attr(rx.buf, "id", id, sizeof(id)));
	assert_true(strlen(id) >= 16);
	close(fd);
}

static void test_inbound_header_split_at_every_byte(void **state)
{
	(void)state;
	struct harness_rx rx = {0};
	int fd = harness_connect(s2s_port, WAIT_MS);
	assert_true(fd >= 0);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
	for (const char *p = HDR_FROM_PEER; *p; p++) {
		char c[2] = {*p, 0};
		assert_int_equal(harness_send(fd, c), 0);
	}
	assert_true(harness_expect(fd, &rx, "</stream:features>"));
	close(fd);
}

static void expect_stream_error(const char *bytes, const char *condition)
{
	struct harness_rx rx = {0};
	int fd = harness_connect(s2s_port, WAIT_MS);
	assert_true(fd >= 0);
	assert_int_equal(harness_send(fd, bytes), 0);
	char want[128];
	snprintf(want, sizeof(want), "<%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", condition);
	if (!harness_expect(fd, &rx, want))
		fail_msg("wanted %s, got: %s", condition, rx.buf);
	assert_non_null(strstr(rx.buf, "</stream:stream>"));
	assert_true(harness_wait_close(fd, &rx));
	close(fd);
}

static void test_inbound_bad_streams_get_their_stream_error(void **state)
{
	(void)state;
	expect_stream_error("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
			    "to='ours.example' version='1.0'>",
			    "invalid-namespace");
	expect_stream_error("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
			    "to='elsewhere.example' version='1.0'>",
			    "host-unknown");
	expect_stream_error("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
			    "to='ours.example' version='1.0'><a><b></a>",
			    "not-well-formed");
	expect_stream_error("<!DOCTYPE x><stream:stream xmlns='jabber:server'>", "restricted-xml");
}

static void test_inbound_stanza_before_dialback_is_refused(void **state)
{
	(void)state;
	char bytes[1024];
	snprintf(bytes, sizeof(bytes), "%s<message from='u@peer.example' to='bot@comp.ours.example'/>", HDR_FROM_PEER);
	expect_stream_error(bytes, "not-authorized"); /* RFC 6120 §4.9.3.12 */
}

/* The hub dials peer.example's authoritative server (the [route] to
 * auth_port, this test) with <db:verify/>; the answer decides the pair. */
static void answer_verify(const char *local, const char *type, char *key_out, size_t cap)
{
	struct harness_rx rx = {0};
	int fd = harness_accept_one(auth_lfd, WAIT_MS);
	assert_true(fd >= 0);
	assert_true(harness_expect(fd, &rx, "<stream:stream"));
	assert_true(harness_expect(fd, &rx, ">"));
	assert_int_equal(harness_send(fd, "<stream:stream xmlns='jabber:server' "
					  "xmlns:stream='http://etherx.jabber.org/streams' "
					  "xmlns:db='jabber:server:dialback' id='auth1' version='1.0'>"
					  "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
					  "</stream:features>"),
			 0);
	if (!harness_expect(fd, &rx, "</db:verify>"))
		fail_msg("no db:verify: %s", rx.buf);
	const char *v = strstr(rx.buf, "<db:verify");
	char id[128], from[64], to[64];
	assert_true(harness_attr(v, "id", id, sizeof(id)));
	assert_true(harness_attr(v, "from", from, sizeof(from)));
	assert_true(harness_attr(v, "to", to, sizeof(to)));
	assert_string_equal(from, local);
	assert_string_equal(to, "peer.example");
	const char *k = strchr(v, '>') + 1, *e = strstr(k, "</db:verify>");
	snprintf(key_out, cap, "%.*s", (int)(e - k), k);
	char ans[512];
	snprintf(ans, sizeof(ans), "<db:verify from='peer.example' to='%s' id='%s' type='%s'/>", local, id, type);
	assert_int_equal(harness_send(fd, ans), 0);
	close(fd);
}

/* A stream from peer.example to ours.example that asks for the pair
 * (peer.example, local): several pairs may share a stream (XEP-0220 §2.4). */
static int peer_dialback(const char *local, const char *key, const char *verdict, struct harness_rx *rx)
{
	int fd = harness_connect(s2s_port, WAIT_MS);
	assert_true(fd >= 0);
	assert_int_equal(harness_send(fd, HDR_FROM_PEER), 0);
	assert_true(harness_expect(fd, rx, "</stream:features>"));
	char res[256];
	snprintf(res, sizeof(res), "<db:result from='peer.example' to='%s'>%s</db:result>", local, key);
	assert_int_equal(harness_send(fd, res), 0);
	char seen[128];
	answer_verify(local, verdict, seen, sizeof(seen));
	assert_string_equal(seen, key);
	return fd;
}

/* A component on comp.ours.example, authenticated. */
static int component_up(void)
{
	struct harness_rx rx = {0};
	int fd = harness_connect(comp_port, WAIT_MS);
	assert_true(fd >= 0);
	assert_int_equal(harness_send(fd, "<stream:stream xmlns='jabber:component:accept' "
					  "xmlns:stream='http://etherx.jabber.org/streams' to='comp.ours.example'>"),
			 0);
	assert_true(harness_expect(fd, &rx, "from='comp.ours.example'>"));
	char id[128], in[256], hex[2 * WC_SHA_DIGEST_SIZE + 1], hs[128];
	unsigned char d[WC_SHA_DIGEST_SIZE];
	assert_true(harness_attr(rx.buf, "id", id, sizeof(id)));
	snprintf(in, sizeof(in), "%ss3cret", id);
	assert_int_equal(wc_ShaHash((const byte *)in, (word32)strlen(in), d), 0);
	hex_encode(d, sizeof(d), hex);
	snprintf(hs, sizeof(hs), "<handshake>%s</handshake>", hex);
	assert_int_equal(harness_send(fd, hs), 0);
	assert_true(harness_expect(fd, &rx, "<handshake/>"));
	return fd;
}

static void test_inbound_dialback_valid_then_stanzas_reach_the_component(void **state)
{
	(void)state;
	int comp = component_up();
	struct harness_rx rx = {0}, crx = {0};
	int fd = peer_dialback("comp.ours.example", "0123456789abcdef", "valid", &rx);
	if (!harness_expect(fd, &rx, "type='valid'"))
		fail_msg("no valid db:result: %s", rx.buf);
	assert_non_null(strstr(rx.buf, "<db:result"));
	assert_int_equal(harness_send(fd, "<message from='u@peer.example/r' to='bot@comp.ours.example' id='m1'>"
					  "<body>hi</body></message>"),
			 0);
	/* the stanza's own bytes, unchanged */
	bool got = harness_expect(comp, &crx,
				  "<message from='u@peer.example/r' to='bot@comp.ours.example' id='m1'>"
				  "<body>hi</body></message>");
	if (!got)
		fail_msg("component got: %s\npeer got: %s", crx.buf, rx.buf);
	/* a pair of ours that is not validated on this stream: ours.example
	 * (the header's) and the hub's own domain */
	assert_int_equal(harness_send(fd, "<message from='u@peer.example' to='ours.example'/>"), 0);
	assert_true(harness_expect(fd, &rx, "<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"));
	close(fd);
	struct harness_rx rx2 = {0};
	fd = peer_dialback("comp.ours.example", "0123456789abcdef", "valid", &rx2);
	assert_true(harness_expect(fd, &rx2, "type='valid'"));
	assert_int_equal(harness_send(fd, "<message from='u@peer.example' to='hub.example'/>"), 0);
	assert_true(harness_expect(fd, &rx2, "<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"));
	close(fd);
	close(comp);
}

static void test_inbound_dialback_invalid_routes_nothing(void **state)
{
	(void)state;
	struct harness_rx rx = {0};
	int fd = peer_dialback("ours.example", "fedcba9876543210", "invalid", &rx);
	if (!harness_expect(fd, &rx, "type='invalid'"))
		fail_msg("no invalid db:result: %s", rx.buf);
	assert_int_equal(harness_send(fd, "<message from='u@peer.example' to='v@ours.example'/>"), 0);
	/* its only pair refused, nothing is authenticated on the stream */
	assert_true(harness_expect(fd, &rx, "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"));
	assert_true(harness_wait_close(fd, &rx));
	close(fd);
}

/* ---- components ----------------------------------------------------------- */

static void test_component_handshake_and_bad_secret(void **state)
{
	(void)state;
	close(component_up());
	struct harness_rx rx = {0};
	int fd = harness_connect(comp_port, WAIT_MS);
	assert_true(fd >= 0);
	assert_int_equal(harness_send(fd, "<stream:stream xmlns='jabber:component:accept' "
					  "xmlns:stream='http://etherx.jabber.org/streams' to='comp.ours.example'>"
					  "<handshake>0000000000000000000000000000000000000000</handshake>"),
			 0);
	assert_true(harness_expect(fd, &rx, "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"));
	assert_true(harness_wait_close(fd, &rx));
	close(fd);
	/* a domain that is not a [component] */
	struct harness_rx rx2 = {0};
	fd = harness_connect(comp_port, WAIT_MS);
	assert_int_equal(harness_send(fd, "<stream:stream xmlns='jabber:component:accept' "
					  "xmlns:stream='http://etherx.jabber.org/streams' to='ours.example'>"),
			 0);
	assert_true(harness_expect(fd, &rx2, "<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"));
	close(fd);
}

static void test_component_stanza_from_a_foreign_domain(void **state)
{
	(void)state;
	int fd = component_up();
	struct harness_rx rx = {0};
	assert_int_equal(harness_send(fd, "<message from='bot@ours.example' to='u@peer.example'/>"), 0);
	assert_true(harness_expect(fd, &rx, "<invalid-from xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"));
	close(fd);
}

/* ---- outbound s2s --------------------------------------------------------- */

/* A component stanza for `remote` makes the hub dial its [route] (this
 * test); the test answers as the remote server, up to the hub's db:result. */
static int outbound_to_dialback(int comp, const char *remote, const char *id, struct harness_rx *rx)
{
	char m[256], hdr[512];
	snprintf(m, sizeof(m), "<message from='bot@comp.ours.example' to='u@%s' id='%s'><body>out</body></message>",
		 remote, id);
	assert_int_equal(harness_send(comp, m), 0);
	int fd = harness_accept_one(remote_lfd, WAIT_MS);
	assert_true(fd >= 0);
	char to[96];
	snprintf(to, sizeof(to), "to='%s'", remote);
	assert_true(harness_expect(fd, rx, "<stream:stream"));
	assert_true(harness_expect(fd, rx, to));
	snprintf(hdr, sizeof(hdr),
		 "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
		 "xmlns:db='jabber:server:dialback' id='%s-s' from='%s' version='1.0'>"
		 "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>",
		 id, remote);
	assert_int_equal(harness_send(fd, hdr), 0);
	/* XEP-0220: the component's domain asks to be authenticated */
	if (!harness_expect(fd, rx, "</db:result>"))
		fail_msg("no db:result: %s", rx->buf);
	const char *r = strstr(rx->buf, "<db:result");
	char from[64];
	assert_true(harness_attr(r, "from", from, sizeof(from)));
	assert_string_equal(from, "comp.ours.example");
	assert_null(strstr(rx->buf, "<message")); /* nothing before the answer */
	return fd;
}

static void test_outbound_link_dialback_then_flush(void **state)
{
	(void)state;
	int comp = component_up();
	struct harness_rx rx = {0};
	int fd = outbound_to_dialback(comp, "far.example", "o1", &rx);
	assert_int_equal(harness_send(fd, "<db:result from='far.example' to='comp.ours.example' type='valid'/>"), 0);
	assert_true(harness_expect(fd, &rx,
				   "<message from='bot@comp.ours.example' to='u@far.example' id='o1'>"
				   "<body>out</body></message>"));
	close(fd);
	close(comp);
}

static void test_outbound_dialback_invalid_bounces_the_queue(void **state)
{
	(void)state;
	int comp = component_up();
	struct harness_rx rx = {0}, crx = {0};
	int fd = outbound_to_dialback(comp, "far2.example", "o2", &rx);
	assert_int_equal(harness_send(fd, "<db:result from='far2.example' to='comp.ours.example' type='invalid'/>"), 0);
	/* RFC 6120 §8.3.3.15: the queued stanza comes back to its sender */
	if (!harness_expect(comp, &crx, "<remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"))
		fail_msg("component got: %s", crx.buf);
	assert_non_null(strstr(crx.buf, "from='u@far2.example'"));
	assert_non_null(strstr(crx.buf, "id='o2'"));
	assert_non_null(strstr(crx.buf, "type='error'"));
	/* and the stanza never goes out on the link: a short look */
	struct timeval tv = {0, 300 * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	rx.buf[rx.n = 0] = 0;
	harness_expect(fd, &rx, "<message");
	assert_null(strstr(rx.buf, "<message"));
	close(fd);
	close(comp);
}

static int feats(const char *xml, struct feats *f)
{
	return s2s_features_parse((struct xml_span){xml, (uint32_t)strlen(xml)}, f);
}

static void test_outbound_features_parsed_from_elements(void **state)
{
	(void)state;
	struct feats f;
	assert_int_equal(feats("<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
			       "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
			       "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
			       "<mechanism>EXTERNAL</mechanism></mechanisms>"
			       "<dialback xmlns='urn:xmpp:features:dialback'/>"
			       "<bidi xmlns='urn:xmpp:features:bidi'/>"
			       "<limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>10000</max-bytes></limits>"
			       "</stream:features>",
			       &f),
			 0);
	assert_true(f.starttls && f.starttls_required && f.sasl_external && f.dialback && f.bidi);
	assert_int_equal(f.max_bytes, 10000);
	/* what only looks like a feature offers nothing */
	assert_int_equal(feats("<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
			       "<starttls xmlns='urn:example:other'/>"
			       "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl' from='EXTERNAL'>"
			       "<mechanism>EXTERNALX</mechanism></mechanisms>"
			       "<x xmlns='urn:xmpp:features:dialback'/>"
			       "<limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>-1</max-bytes></limits>"
			       "</stream:features>",
			       &f),
			 0);
	assert_false(f.starttls || f.sasl_external || f.dialback || f.bidi);
	assert_int_equal(f.max_bytes, 0);
	assert_int_equal(feats("<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>", &f), 0);
	assert_false(f.starttls || f.dialback);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inbound_header_gets_header_and_dialback_feature),
		cmocka_unit_test(test_inbound_header_split_at_every_byte),
		cmocka_unit_test(test_inbound_bad_streams_get_their_stream_error),
		cmocka_unit_test(test_inbound_stanza_before_dialback_is_refused),
		cmocka_unit_test(test_inbound_dialback_valid_then_stanzas_reach_the_component),
		cmocka_unit_test(test_inbound_dialback_invalid_routes_nothing),
		cmocka_unit_test(test_component_handshake_and_bad_secret),
		cmocka_unit_test(test_component_stanza_from_a_foreign_domain),
		cmocka_unit_test(test_outbound_link_dialback_then_flush),
		cmocka_unit_test(test_outbound_dialback_invalid_bounces_the_queue),
		cmocka_unit_test(test_outbound_features_parsed_from_elements),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
