/*
 * bench/traffic.c — what the load generator sends and how it counts what
 * arrives: flows, stanzas, open and closed loop pacing, --fault, and the
 * final receiver's accounting (bench/stream.c calls it for each stanza).
 *
 * Accounting. A sender "flow" is one (from, to) pair with its own sequence.
 * Each stanza's id is "fhb-FLOW-SEQ-TS" (hex; TS = CLOCK_MONOTONIC ns of the
 * intended send time). The final receiver parses it back: latency = now - TS,
 * order per flow (a sequence number below the highest seen so far counts as
 * out of order), type='error' counts as bounced. Lost = sent - delivered -
 * bounced after the drain. In open loop, TS is the time the stanza was due,
 * not the time it was written, so a stalled target shows up in the latency
 * (no coordinated omission). The --fault option changes only what the bench
 * sends (one stanza never written, or two written swapped), so the receive
 * side accounting is exercised exactly as in a real run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench/engine-int.h"
#include "bench/bx.h"

/* ---- traffic ---------------------------------------------------------------- */

uint64_t be_rand(struct eng *e)
{
	e->rng ^= e->rng << 13;
	e->rng ^= e->rng >> 7;
	e->rng ^= e->rng << 17;
	return e->rng;
}

static void be_flow_jids(struct eng *e, struct bflow *f, char *from, char *to, size_t cap)
{
	char d[256];
	be_domain(e, f->from_dom, d, sizeof d);
	if (f->from_comp) {
		snprintf(from, cap, "svc%d@%s", f->user, e->o->comp_domains[f->to_dom]);
		snprintf(to, cap, "u%d@%s", f->user, d);
	} else if (f->from_backend) {
		snprintf(from, cap, "u%d@%s", f->user, e->o->backend_domain);
		snprintf(to, cap, "u%d@%s", f->user, d);
	} else {
		snprintf(from, cap, "u%d@%s", f->user, d);
		snprintf(to, cap, "%s", e->o->comp_domains[f->to_dom]);
	}
}

/* Build one stanza of flow fi into out; returns its length. */
static size_t be_make_stanza(struct eng *e, int fi, uint32_t seq, uint64_t ts, const char *to_over, char *out,
			     size_t cap)
{
	struct bflow *f = &e->f[fi];
	char from[300], to[300], id[64];
	be_flow_jids(e, f, from, to, sizeof from);
	if (to_over)
		snprintf(to, sizeof to, "%s", to_over);
	snprintf(id, sizeof id, "fhb-%x-%x-%llx", fi, seq, (unsigned long long)ts);
	int tot = e->o->mix_msg + e->o->mix_presence + e->o->mix_iq;
	int pick = tot > 0 ? (int)(be_rand(e) % (uint64_t)tot) : 0;
	int n;
	if (pick < e->o->mix_msg || tot == 0) {
		n = snprintf(out, cap, "<message from='%s' to='%s' id='%s' type='chat'><body>", from, to, id);
		/* pad the body so the whole stanza is about --size bytes */
		int pad = e->o->size - n - (int)strlen("</body></message>");
		if (pad < 1)
			pad = 1;
		if (pad > e->body_len)
			pad = e->body_len;
		memcpy(out + n, e->body, (size_t)pad);
		n += pad;
		n += snprintf(out + n, cap - (size_t)n, "</body></message>");
	} else if (pick < e->o->mix_msg + e->o->mix_presence) {
		n = snprintf(out, cap, "<presence from='%s' to='%s' id='%s'/>", from, to, id);
	} else {
		n = snprintf(out, cap, "<iq from='%s' to='%s' id='%s' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
			     from, to, id);
	}
	return (size_t)n;
}

void be_send_one(struct eng *e, struct bconn *c, uint64_t ts)
{
	int fi = c->flow_first + c->next_flow;
	c->next_flow = (c->next_flow + 1) % c->nflows;
	struct bflow *f = &e->f[fi];
	char buf[2048];
	uint32_t seq = f->next_seq++;
	/* --fault bounce-one: one stanza to a domain the target serves with
	 * nothing attached, which it must bounce (service-unavailable) */
	bool bounce = e->o->fault == BF_BOUNCE_ONE && !e->fault_done && e->measuring && seq >= 3 && !f->from_comp &&
		      f->from_dom == c->dom_first;
	size_t n = be_make_stanza(e, fi, seq, ts, bounce ? e->o->bounce_domain : NULL, buf, sizeof buf);
	if (bounce)
		e->fault_done = true;
	f->sent++;
	e->r->sent++;
	c->inflight++;
	/* Faults act on the sending side only, after warm-up so that the stanza
	 * concerned is one the receiver accounts like any other. */
	if (e->o->fault != BF_NONE && !e->fault_done && e->measuring && seq >= 3) {
		if (e->o->fault == BF_DROP_ONE) {
			e->fault_done = true;
			return; /* counted as sent, never written */
		}
		if (e->o->fault == BF_REORDER && !f->held) {
			f->held = true;
			memcpy(f->held_buf, buf, n);
			f->held_len = n;
			return;
		}
	}
	be_write(e, c, buf, n);
	if (f->held && !e->fault_done) {
		be_write(e, c, f->held_buf, f->held_len); /* the earlier one, after the later */
		e->fault_done = true;
	}
}

void be_generate(struct eng *e)
{
	if (!e->generating || e->o->scenario == BS_IDLE_LINKS)
		return;
	for (int i = 0; i < e->nc; i++) {
		struct bconn *c = &e->c[i];
		if (c->state != BC_READY || c->nflows == 0)
			continue;
		if (e->o->rate > 0) {
			/* open loop: every stanza that is due goes now, stamped with when it was due */
			int burst = 0;
			while (c->next_ns <= e->now && burst < 4096) {
				be_send_one(e, c, c->next_ns);
				c->due_count++;
				c->next_ns = c->base_ns + (uint64_t)((double)c->due_count * c->interval_ns);
				burst++;
			}
		} else {
			while (c->inflight < (uint32_t)e->o->window)
				be_send_one(e, c, e->now);
		}
	}
}

/* The condition of a bounce: the child of <error/> in the stanzas namespace
 * (RFC 6120 §8.3.2), counted by name. */
static void be_count_cond(struct eng *e, const char *el, size_t n)
{
	static const char ns[] = "urn:ietf:params:xml:ns:xmpp-stanzas";
	const char *x = memmem(el, n, ns, sizeof ns - 1), *lt = x;
	char name[40] = "(none)";
	while (lt && lt > el && *lt != '<')
		lt--;
	if (lt && *lt == '<') {
		size_t k = 0;
		for (const char *q = lt + 1; q < x && *q != ' ' && *q != '/' && *q != '>' && k < sizeof name - 1; q++)
			name[k++] = *q;
		name[k] = 0;
	}
	struct bench_result *r = e->r;
	for (int i = 0; i < r->ncond; i++)
		if (!strcmp(r->cond[i].name, name)) {
			r->cond[i].n++;
			return;
		}
	/* the table is full: the rest share its last row */
	int i = r->ncond < BENCH_NCOND ? r->ncond++ : BENCH_NCOND - 1;
	if (r->cond[i].name[0])
		snprintf(name, sizeof name, "(other)");
	snprintf(r->cond[i].name, sizeof r->cond[i].name, "%s", name);
	r->cond[i].n++;
}

/* A stanza reached its final receiver. */
void be_account(struct eng *e, const char *el, size_t n, size_t tl)
{
	struct bx_span id, type;
	if (!bx_attr(el, tl, "id", &id) || id.n < 5 || memcmp(id.p, "fhb-", 4) != 0)
		return;
	char *end;
	unsigned long fi = strtoul(id.p + 4, &end, 16);
	if (*end != '-' || fi >= (unsigned long)e->nf)
		return;
	unsigned long seq = strtoul(end + 1, &end, 16);
	if (*end != '-')
		return;
	unsigned long long ts = strtoull(end + 1, &end, 16);
	struct bflow *f = &e->f[fi];
	struct bconn *sc = &e->c[f->conn];
	if (sc->inflight)
		sc->inflight--;
	bool err = bx_attr(el, tl, "type", &type) && bx_eq(type, "error");
	e->last_acct = e->now;
	if (err) {
		f->bounced++;
		e->r->bounced++;
		if (!e->first_bounce)
			e->first_bounce = e->now;
		e->last_bounce = e->now;
		be_count_cond(e, el, n);
		return;
	}
	f->delivered++;
	if (f->delivered > f->sent) {
		e->r->dup++;
		return;
	}
	e->r->delivered++;
	if ((uint32_t)seq + 1 <= f->max_seen)
		e->r->out_of_order++;
	else
		f->max_seen = (uint32_t)seq + 1;
	uint64_t lat = e->now > ts ? e->now - ts : 0;
	if (e->measuring) {
		bench_hist_add(&e->r->hist, lat);
		e->r->measured_delivered++;
	}
	if (e->stall_t0 && e->now >= e->stall_t0 && e->now < e->stall_t1 && f->to_dom != 0)
		bench_hist_add(&e->r->other_hist, lat);
	bench_hist_add(&e->sec_hist, lat);
	e->sec_delivered++;
}
