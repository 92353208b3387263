/*
 * router/check.h — will this configuration start? The checks behind both
 * `fedhub -t` and start-up, so the two can never disagree.
 *
 * cfg_load() proves the file is well formed and that the files it names can
 * be opened. check_config() goes on to what start-up would trip over later:
 * certificates, keys and the CA bundle that do not parse, a key that is not
 * its certificate's, a certificate that does not name its [domain] (RFC 6125
 * DNS-ID) or is outside its validity period, and listeners that overlap.
 */
#ifndef FEDHUB_CHECK_H
#define FEDHUB_CHECK_H

#include <stdbool.h>
#include <stdio.h>
#include "router/cfg.h"

/* Days before expiry from which a certificate is reported (a warning). */
#define CHECK_EXPIRY_WARN_DAYS 30

/* Every check on a loaded configuration (`file` is its name in messages).
 * Prints "FILE:LINE: message" per error and "FILE:LINE: warning: message"
 * per warning to `err`, and returns the number of errors (0: it can start). */
int check_config(const struct cfg *c, const char *file, FILE *err);

/* Start-up only (not -t, which may run beside the live hub): is another
 * process already listening on one of the configured addresses? A probe bind
 * without SO_REUSEPORT fails where the real listener would silently share
 * the port. Prints one error per address held and returns their count. */
int check_ports_free(const struct cfg *c, FILE *err);

#endif
