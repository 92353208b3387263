/*
 * router/clu_lease.c — one remote domain's lease, as this node sees it: a
 * small state machine with no I/O and no clock of its own (the caller
 * passes `now`), so tests drive it through every timing case.
 *
 * The fencing argument. Redis sets the lease's expiry (PX lease_time) when
 * it executes our SET or PEXPIRE, which is after we sent the command: by
 * Redis's clock the lease lasts at least until sent_at + lease_time. We
 * stop using it at sent_at + lease_time - margin by our monotonic clock.
 * As long as the two clocks' rates differ by less than margin over one
 * lease_time (margin = max(lease_time/5, 500 ms): a 20% rate error, far
 * beyond any real clock; the 500 ms floor covers scheduling pauses of the
 * control thread on short leases), we have stopped before the key can have
 * expired in Redis, so before any other node can acquire it (SET NX only
 * succeeds on an absent key). A renewal that times out or fails changes
 * nothing: the deadline of the last one that succeeded stands. Only an
 * answer from Redis can extend it, and only the deadline computed from the
 * send time of that very command.
 *
 * Tokens. Every acquisition INCRs fh:token:<remote>; the acquire script
 * also lifts the counter above the highest token the node ever saw, so a
 * Redis that lost its data (restart without persistence) cannot hand out a
 * token older than one already in use.
 */
#include "router/clu-int.h"

uint32_t clu_margin_ms(uint32_t lease_ms)
{
	uint32_t m = lease_ms / 5;
	return m < 500 ? 500 : m;
}

static void see_token(struct clu_lease *l, uint64_t token)
{
	if (token > l->max_token)
		l->max_token = token;
}

void clu_ls_acquired(struct clu_lease *l, uint64_t sent_at, uint64_t token, uint32_t lease_ms)
{
	l->st = LS_OURS;
	l->token = token;
	l->owner = -1;
	see_token(l, token);
	l->valid_until = sent_at + lease_ms - clu_margin_ms(lease_ms);
}

void clu_ls_held(struct clu_lease *l, int owner, bool owner_alive, uint64_t token, int64_t pttl, uint64_t now,
		 uint32_t lease_ms)
{
	bool usable = owner >= 0 && owner_alive;
	l->st = usable ? LS_OTHER : LS_NONE;
	l->owner = usable ? owner : -1;
	l->token = token;
	l->valid_until = 0;
	see_token(l, token);
	if (usable) {
		/* a live owner renews it: what wakes us is its node key
		 * expiring, a release, or the periodic resync */
		l->next_try = now + 10 * (uint64_t)lease_ms;
		return;
	}
	/* a dead (or unknown) owner: look again when it would expire
	 * unrenewed, so it is taken within about lease_time */
	if (pttl < 0 || pttl > (int64_t)lease_ms)
		pttl = lease_ms;
	l->next_try = now + (uint64_t)pttl + 20;
}

bool clu_ls_renewed(struct clu_lease *l, uint64_t sent_at, bool ok, uint64_t now, uint32_t lease_ms)
{
	if (l->st != LS_OURS)
		return false;
	if (ok) {
		uint64_t v = sent_at + lease_ms - clu_margin_ms(lease_ms);
		if (v > l->valid_until)
			l->valid_until = v;
		return false;
	}
	/* gone (expired, or Redis lost it) or someone else's now */
	l->st = LS_NONE;
	l->valid_until = 0;
	l->next_try = now;
	return true;
}

bool clu_ls_announced(struct clu_lease *l, int owner, uint64_t token, uint64_t now)
{
	see_token(l, token);
	if (l->st == LS_OURS && token <= l->token)
		return false; /* an old announcement: ours is newer */
	if (l->st == LS_OTHER && l->owner == owner && l->token == token)
		return false;
	if (l->st == LS_OTHER && token < l->token)
		return false; /* late: we know a newer owner */
	l->st = owner >= 0 ? LS_OTHER : LS_NONE;
	l->owner = owner;
	l->token = token;
	l->valid_until = 0;
	l->next_try = now + 1000; /* the new owner renews it; the resync checks */
	return true;
}

void clu_ls_vacated(struct clu_lease *l, uint64_t now)
{
	if (l->st == LS_OURS)
		return;
	l->st = LS_NONE;
	l->next_try = now;
}

bool clu_ls_usable(const struct clu_lease *l, uint64_t now)
{
	return l->st == LS_OURS && now < l->valid_until;
}

bool clu_ls_due(const struct clu_lease *l, uint64_t now)
{
	return l->worker >= 0 && l->st != LS_OURS && !l->inflight && now >= l->next_try;
}

enum clu_lease_st clu_ls_view(const struct clu_lease *l, uint64_t now, int *owner, uint64_t *token)
{
	*owner = -1;
	*token = 0;
	if (clu_ls_usable(l, now)) {
		*token = l->token;
		return CLU_LEASE_OURS;
	}
	if (l->st == LS_OTHER && l->owner >= 0) {
		*owner = l->owner;
		*token = l->token;
		return CLU_LEASE_OTHER;
	}
	return CLU_LEASE_WAIT;
}
