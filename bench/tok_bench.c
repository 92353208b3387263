/*
 * bench/tok_bench.c — `fedhub-bench tokenizer [--json FILE] [--seconds N]`.
 *
 * Measures the XML tokenizer alone, against expat, on the same bytes in the
 * same run. The input is a realistic s2s stream built in memory: a stream
 * header, then a mix of messages (chat bodies, some with non-ASCII text,
 * chat states, receipts), presences (with caps) and iq (ping, disco,
 * vCard-sized results) from about 100 B to 4 KiB, some attribute values
 * carrying escapes, a few whitespace keepalives. About 16 MiB, so the run
 * measures the parser and not the caches' good luck with one stanza.
 *
 * Both parsers get the stream the way a connection would: 16 KiB "reads"
 * appended to a window over one contiguous buffer. fedhub reports each
 * stanza (with its to/from/type/id spans); expat runs with namespace
 * processing and element handlers that track the depth, which is what any
 * expat-based router does at the least. Each side runs for half of
 * --seconds (default 4); the figure is bytes parsed / time.
 */
#include <expat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "xml/xml.h"

#define TB_READ (16 * 1024)

struct tb_buf {
	char *p;
	size_t n, cap;
};

static void tb_put(struct tb_buf *b, const char *s, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p) {
			perror("tokenizer");
			exit(2);
		}
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

static void tb_printf(struct tb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(struct tb_buf *b, const char *fmt, ...)
{
	char tmp[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	tb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static uint64_t tb_rng = 0x9E3779B97F4A7C15ull;
static uint32_t tb_rand(uint32_t n)
{
	tb_rng ^= tb_rng << 13;
	tb_rng ^= tb_rng >> 7;
	tb_rng ^= tb_rng << 17;
	return (uint32_t)(tb_rng % n);
}

static const char *const tb_words[] = {"hello",
				       "the",
				       "server",
				       "federation",
				       "is",
				       "up",
				       "again",
				       "see",
				       "you",
				       "tomorrow",
				       "at",
				       "the",
				       "meeting",
				       "about",
				       "routing",
				       "and",
				       "dialback",
				       "keys",
				       "ok",
				       "thanks",
				       "caf\xc3\xa9",
				       "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
				       "\xe4\xbd\xa0\xe5\xa5\xbd",
				       "\xf0\x9f\x91\x8d",
				       "na\xc3\xafve",
				       "&lt;3",
				       "&amp;",
				       "Tsch\xc3\xbc\xc3\x9f"};

static void tb_text(struct tb_buf *b, size_t bytes, bool ascii)
{
	size_t start = b->n;
	while (b->n - start < bytes) {
		const char *w = tb_words[tb_rand(ascii ? 20 : sizeof tb_words / sizeof tb_words[0])];
		tb_put(b, w, strlen(w));
		tb_put(b, " ", 1);
	}
}

static void tb_jid(char *out, size_t cap, bool full)
{
	static const char *const users[] = {"juliet", "romeo", "benvolio", "mercutio", "nurse"};
	static const char *const doms[] = {"capulet.example", "montague.example", "verona.example"};
	const char *u = users[tb_rand(5)], *d = doms[tb_rand(3)];
	if (full)
		snprintf(out, cap, "%s@%s/res-%u", u, d, tb_rand(1000));
	else
		snprintf(out, cap, "%s@%s", u, d);
}

static void tb_stanza(struct tb_buf *b)
{
	char to[96], from[96];
	tb_jid(to, sizeof to, tb_rand(2));
	tb_jid(from, sizeof from, true);
	unsigned id = tb_rand(1u << 30);
	uint32_t kind = tb_rand(100);
	if (kind < 55) { /* message, 100 B .. 4 KiB */
		size_t body = tb_rand(8) == 0 ? 1000 + tb_rand(3000) : 20 + tb_rand(300);
		tb_printf(b, "<message from='%s' to='%s' type='chat' id='%s%u' xml:lang='en'><body>", from, to,
			  tb_rand(10) == 0 ? "a&amp;b-" : "m-", id);
		tb_text(b, body, tb_rand(3) != 0);
		tb_printf(b, "</body>");
		if (tb_rand(2))
			tb_printf(b, "<active xmlns='http://jabber.org/protocol/chatstates'/>");
		if (tb_rand(3) == 0)
			tb_printf(b,
				  "<request xmlns='urn:xmpp:receipts'/><origin-id "
				  "xmlns='urn:xmpp:sid:0' id='%08x-75b4-431b-adb2-eb6b9e546014'/>",
				  id);
		tb_printf(b, "</message>");
	} else if (kind < 85) { /* presence */
		tb_printf(b, "<presence from='%s' to='%s'%s>", from, to, tb_rand(5) == 0 ? " type='unavailable'" : "");
		if (tb_rand(2))
			tb_printf(b, "<show>%s</show><status>", tb_rand(2) ? "away" : "dnd");
		else
			tb_printf(b, "<status>");
		tb_text(b, 10 + tb_rand(60), tb_rand(2));
		tb_printf(b,
			  "</status><priority>%u</priority><c xmlns='http://jabber.org/protocol/caps' "
			  "hash='sha-1' node='https://conversations.im' "
			  "ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/>",
			  tb_rand(50));
		if (tb_rand(3) == 0)
			tb_printf(b, "<x xmlns='vcard-temp:x:update'><photo>"
				     "01b87fcd030b72895ff8e88db57ec525450f000d</photo></x>");
		tb_printf(b, "</presence>");
	} else if (kind < 95) { /* iq ping / disco */
		if (tb_rand(2)) {
			tb_printf(b,
				  "<iq type='get' from='%s' to='%s' id='ping-%u'><ping "
				  "xmlns='urn:xmpp:ping'/></iq>",
				  from, to, id);
		} else {
			tb_printf(b,
				  "<iq type='result' from='%s' to='%s' id='disco-%u'><query "
				  "xmlns='http://jabber.org/protocol/disco#info'><identity "
				  "category='server' type='im' name='Prosody &amp; friends'/>",
				  from, to, id);
			static const char *const feats[] = {
				"urn:xmpp:ping",      "jabber:iq:version",
				"urn:xmpp:time",      "http://jabber.org/protocol/disco#items",
				"urn:xmpp:carbons:2", "urn:xmpp:mam:2",
				"vcard-temp",         "urn:xmpp:blocking"};
			for (unsigned k = 0; k < 8; k++)
				tb_printf(b, "<feature var='%s'/>", feats[k]);
			tb_printf(b, "</query></iq>");
		}
	} else { /* iq vCard result, 1-4 KiB */
		tb_printf(b,
			  "<iq type='result' from='%s' to='%s' id='vc-%u'><vCard "
			  "xmlns='vcard-temp'><FN>Juliet Capulet</FN><N><FAMILY>Capulet</FAMILY>"
			  "<GIVEN>Juliet</GIVEN></N><NICKNAME>J\xc3\xbcliet</NICKNAME><DESC>",
			  from, to, id);
		tb_text(b, 200 + tb_rand(600), tb_rand(2));
		tb_printf(b, "</DESC><PHOTO><TYPE>image/png</TYPE><BINVAL>");
		size_t n = 600 + tb_rand(2400);
		for (size_t k = 0; k < n; k++)
			tb_put(b, &"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[tb_rand(64)], 1);
		tb_printf(b, "</BINVAL></PHOTO></vCard></iq>");
	}
	if (tb_rand(50) == 0)
		tb_put(b, "\n", 1); /* keepalive */
}

static double tb_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One pass of fedhub over the stream; returns stanzas seen or -1. */
static long tb_fedhub_pass(struct xml_tok *t, const char *p, size_t n)
{
	size_t off = 0, avail = 0;
	long stanzas = 0;
	uint64_t sink = 0;
	xml_tok_reset(t);
	t->authenticated = true;
	while (off < n) {
		size_t used;
		int ev = xml_tok_next(t, p + off, avail - off, &used);
		if (ev > 0) {
			if (ev == XML_EV_STANZA) {
				stanzas++;
				sink += t->st.to.n + t->st.from.n + t->st.id.n + (uint64_t)t->st.nsid;
			}
			off += used;
		} else if (ev == XML_EV_MORE) {
			if (avail == n)
				break;
			avail = avail + TB_READ < n ? avail + TB_READ : n;
		} else {
			fprintf(stderr, "tokenizer: fedhub: %s at byte %llu\n", xml_err_name(t->err),
				(unsigned long long)t->err_offset);
			return -1;
		}
	}
	__asm__ volatile("" : : "r"(sink));
	return stanzas;
}

struct tb_ex {
	int depth;
	long stanzas;
};
static void XMLCALL tb_ex_start(void *u, const XML_Char *name, const XML_Char **atts)
{
	(void)name, (void)atts;
	((struct tb_ex *)u)->depth++;
}
static void XMLCALL tb_ex_end(void *u, const XML_Char *name)
{
	struct tb_ex *c = u;
	(void)name;
	if (--c->depth == 1)
		c->stanzas++;
}

static long tb_expat_pass(XML_Parser xp, const char *p, size_t n)
{
	struct tb_ex c = {0};
	XML_ParserReset(xp, NULL);
	XML_SetUserData(xp, &c);
	XML_SetElementHandler(xp, tb_ex_start, tb_ex_end);
	for (size_t off = 0; off < n; off += TB_READ) {
		size_t k = n - off < TB_READ ? n - off : TB_READ;
		if (XML_Parse(xp, p + off, (int)k, 0) != XML_STATUS_OK) {
			fprintf(stderr, "tokenizer: expat: %s\n", XML_ErrorString(XML_GetErrorCode(xp)));
			return -1;
		}
	}
	return c.stanzas;
}

int bench_tokenizer(int argc, char **argv)
{
	const char *json = NULL;
	double seconds = 4;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
	}
	if (seconds <= 0)
		seconds = 4;

	struct tb_buf b = {0};
	tb_printf(&b, "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
		      "xmlns:stream='http://etherx.jabber.org/streams' "
		      "xmlns:db='jabber:server:dialback' from='capulet.example' "
		      "to='montague.example' id='D60000229F' version='1.0' xml:lang='en'>");
	long want = 0;
	while (b.n < 16u << 20) {
		tb_stanza(&b);
		want++;
	}

	struct xml_tok *t = malloc(sizeof *t);
	XML_Parser xp = XML_ParserCreateNS(NULL, '\x01');
	if (!t || !xp) {
		fprintf(stderr, "tokenizer: out of memory\n");
		return 2;
	}
	xml_tok_init(t, NULL);

	/* warm up, and check both parse the whole stream */
	long fs = tb_fedhub_pass(t, b.p, b.n), es = tb_expat_pass(xp, b.p, b.n);
	if (fs != want || es != want) {
		fprintf(stderr, "tokenizer: stanza count mismatch: built %ld, fedhub %ld, expat %ld\n", want, fs, es);
		return 2;
	}

	double half = seconds / 2, t0, el;
	uint64_t fb = 0, eb = 0;
	t0 = tb_now();
	do {
		tb_fedhub_pass(t, b.p, b.n);
		fb += b.n;
	} while ((el = tb_now() - t0) < half);
	double fedhub_gbps = (double)fb / el / 1e9;
	t0 = tb_now();
	do {
		tb_expat_pass(xp, b.p, b.n);
		eb += b.n;
	} while ((el = tb_now() - t0) < half);
	double expat_gbps = (double)eb / el / 1e9;

	printf("tokenizer: %.1f MiB stream, %ld stanzas (avg %zu B)\n", (double)b.n / (1 << 20), want,
	       b.n / (size_t)want);
	printf("tokenizer: fedhub %.2f GB/s, expat %.3f GB/s, ratio %.1fx\n", fedhub_gbps, expat_gbps,
	       fedhub_gbps / expat_gbps);
	if (json) {
		FILE *f = fopen(json, "w");
		if (!f) {
			perror(json);
			return 2;
		}
		fprintf(f,
			"{\"fedhub_gbps\": %.3f, \"expat_gbps\": %.3f, \"ratio\": %.2f, "
			"\"stream_bytes\": %zu, \"stanzas\": %ld}\n",
			fedhub_gbps, expat_gbps, fedhub_gbps / expat_gbps, b.n, want);
		fclose(f);
	}
	XML_ParserFree(xp);
	free(t);
	free(b.p);
	return 0;
}
