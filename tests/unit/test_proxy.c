/* tests/unit/test_proxy.c — PROXY protocol v1/v2 headers (net/proxy.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "net/proxy.h"

static void test_v1_tcp4_gives_the_client_address(void **state)
{
	const char h[] = "PROXY TCP4 192.0.2.7 198.51.100.1 40000 5269\r\n<stream";
	struct sockaddr_in6 src;
	assert_int_equal(proxy_parse(h, sizeof(h) - 1, &src), (int)strlen(h) - 7);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&src;
	assert_int_equal(s4->sin_family, AF_INET);
	assert_int_equal(ntohs(s4->sin_port), 40000);
	assert_int_equal(s4->sin_addr.s_addr, inet_addr("192.0.2.7"));
}

static void test_v1_tcp6_and_unknown(void **state)
{
	const char h6[] = "PROXY TCP6 2001:db8::7 2001:db8::1 1234 5269\r\n";
	struct sockaddr_in6 src;
	assert_int_equal(proxy_parse(h6, sizeof(h6) - 1, &src), (int)sizeof(h6) - 1);
	assert_int_equal(src.sin6_family, AF_INET6);
	assert_int_equal(ntohs(src.sin6_port), 1234);
	const char hu[] = "PROXY UNKNOWN\r\n";
	assert_int_equal(proxy_parse(hu, sizeof(hu) - 1, &src), (int)sizeof(hu) - 1);
	assert_int_equal(src.sin6_family, AF_UNSPEC);
}

static void test_v1_incomplete_then_bad(void **state)
{
	struct sockaddr_in6 src;
	assert_int_equal(proxy_parse("PROXY TCP4 1.2.3.4", 18, &src), 0);
	assert_int_equal(proxy_parse("PRO", 3, &src), 0);
	assert_int_equal(proxy_parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31, &src), -1); /* no CR */
	assert_int_equal(proxy_parse("PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n", 34, &src), -1);
	assert_int_equal(proxy_parse("PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n", 36, &src), -1);
	assert_int_equal(proxy_parse("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 32, &src), -1);
	assert_int_equal(proxy_parse("<stream:stream>", 15, &src), -1);
	char longline[200];
	memset(longline, 'A', sizeof(longline));
	memcpy(longline, "PROXY ", 6);
	assert_int_equal(proxy_parse(longline, sizeof(longline), &src), -1);
}

static void test_v2_tcp4_local_and_tlvs(void **state)
{
	unsigned char h[16 + 12 + 5] = "\r\n\r\n\0\r\nQUIT\n";
	h[12] = 0x21; /* v2, PROXY */
	h[13] = 0x11; /* TCP over IPv4 */
	h[14] = 0;
	h[15] = 12 + 5; /* addresses and one TLV */
	uint32_t a = inet_addr("203.0.113.9");
	memcpy(h + 16, &a, 4);
	h[24] = 0x1f;
	h[25] = 0x90; /* port 8080 */
	struct sockaddr_in6 src;
	assert_int_equal(proxy_parse((char *)h, sizeof(h), &src), (int)sizeof(h));
	struct sockaddr_in *s4 = (struct sockaddr_in *)&src;
	assert_int_equal(s4->sin_family, AF_INET);
	assert_int_equal(ntohs(s4->sin_port), 8080);
	assert_int_equal(s4->sin_addr.s_addr, a);
	assert_int_equal(proxy_parse((char *)h, 20, &src), 0); /* incomplete */
	h[12] = 0x20;                                          /* LOCAL: a health check */
	assert_int_equal(proxy_parse((char *)h, sizeof(h), &src), (int)sizeof(h));
	assert_int_equal(src.sin6_family, AF_UNSPEC);
	h[12] = 0x11; /* version 1 in binary form: invalid */
	assert_int_equal(proxy_parse((char *)h, sizeof(h), &src), -1);
	h[12] = 0x21;
	h[13] = 0x12; /* UDP */
	assert_int_equal(proxy_parse((char *)h, sizeof(h), &src), -1);
}

static int match(const char *block, const char *addr)
{
	struct proxy_cidr c;
	if (proxy_cidr_parse(block, &c) < 0)
		return -1;
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
	struct sockaddr_in s4 = {.sin_family = AF_INET};
	if (inet_pton(AF_INET, addr, &s4.sin_addr) == 1)
		return proxy_cidr_match(&c, (struct sockaddr *)&s4);
	assert_int_equal(inet_pton(AF_INET6, addr, &s6.sin6_addr), 1);
	return proxy_cidr_match(&c, (struct sockaddr *)&s6);
}

static void test_cidr_blocks_match_their_addresses(void **state)
{
	assert_int_equal(match("10.0.0.0/8", "10.255.1.2"), 1);
	assert_int_equal(match("10.0.0.0/8", "11.0.0.1"), 0);
	assert_int_equal(match("192.0.2.7", "192.0.2.7"), 1); /* a host: /32 */
	assert_int_equal(match("192.0.2.7", "192.0.2.8"), 0);
	assert_int_equal(match("192.0.2.0/25", "192.0.2.127"), 1);
	assert_int_equal(match("192.0.2.0/25", "192.0.2.128"), 0);
	assert_int_equal(match("0.0.0.0/0", "203.0.113.1"), 1);
	assert_int_equal(match("0.0.0.0/0", "2001:db8::1"), 0); /* families apart */
	assert_int_equal(match("2001:db8::/32", "2001:db8:ffff::1"), 1);
	assert_int_equal(match("2001:db8::/32", "2001:db9::1"), 0);
	assert_int_equal(match("::1", "::1"), 1);
	assert_int_equal(match("10.0.0.0/8", "::ffff:10.1.2.3"), 1); /* IPv4-mapped */
	assert_int_equal(match("2001:db8::/33", "2001:db8:8000::1"), 0);
}

static void test_cidr_refuses_typos(void **state)
{
	struct proxy_cidr c;
	assert_int_equal(proxy_cidr_parse("10.0.0.1/8", &c), -1); /* host bits set */
	assert_int_equal(proxy_cidr_parse("10.0.0.0/33", &c), -1);
	assert_int_equal(proxy_cidr_parse("10.0.0.0/", &c), -1);
	assert_int_equal(proxy_cidr_parse("10.0.0.0/-1", &c), -1);
	assert_int_equal(proxy_cidr_parse("10.0.0/8", &c), -1);
	assert_int_equal(proxy_cidr_parse("lb.example/8", &c), -1); /* no names */
	assert_int_equal(proxy_cidr_parse("[::1]", &c), -1);
	assert_int_equal(proxy_cidr_parse("::/129", &c), -1);
	assert_int_equal(proxy_cidr_parse("", &c), -1);
}

static void test_trusted_list_defaults_to_loopback(void **state)
{
	struct sockaddr_in lo = {.sin_family = AF_INET}, lb = {.sin_family = AF_INET};
	inet_pton(AF_INET, "127.0.0.1", &lo.sin_addr);
	inet_pton(AF_INET, "10.1.2.3", &lb.sin_addr);
	assert_true(proxy_trusted((struct sockaddr *)&lo));
	assert_false(proxy_trusted((struct sockaddr *)&lb));
	struct proxy_cidr list[1];
	assert_int_equal(proxy_cidr_parse("10.0.0.0/8", &list[0]), 0);
	proxy_set_trusted(list, 1);
	assert_false(proxy_trusted((struct sockaddr *)&lo)); /* the list replaces the default */
	assert_true(proxy_trusted((struct sockaddr *)&lb));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_tcp4_gives_the_client_address),
		cmocka_unit_test(test_v1_tcp6_and_unknown),
		cmocka_unit_test(test_v1_incomplete_then_bad),
		cmocka_unit_test(test_v2_tcp4_local_and_tlvs),
		cmocka_unit_test(test_cidr_blocks_match_their_addresses),
		cmocka_unit_test(test_cidr_refuses_typos),
		cmocka_unit_test(test_trusted_list_defaults_to_loopback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
