/*
 * net/x509.h — who a certificate says it is: the identities of an X.509
 * certificate (RFC 5280) read from its DER bytes, and the RFC 6125 /
 * RFC 6120 §13.7 rules that match them against an XMPP domain.
 *
 * The bytes come from the peer: the reader is a strict, bounds-checked DER
 * walker that allocates nothing, does not recurse, and fails closed: a
 * certificate it cannot read as DER yields no identity at all.
 *
 * Identities are kept as a compact blob, so a connection can store them past
 * the handshake (and a session cache beside a ticket): a sequence of entries
 * [kind][length][bytes], kinds X509_ID_*, each 1..255 bytes. Only names that
 * could match a domain are kept: DNS-IDs and SRV-IDs of printable ASCII,
 * XmppAddrs of printable UTF-8, CNs of printable ASCII, none with a NUL.
 */
#ifndef FEDHUB_X509_H
#define FEDHUB_X509_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum x509_id_kind {
	X509_ID_DNS = 'D',  /* subjectAltName dNSName (DNS-ID), wildcards allowed */
	X509_ID_SRV = 'S',  /* subjectAltName otherName id-on-dnsSRV (SRV-ID, RFC 4985) */
	X509_ID_XMPP = 'X', /* subjectAltName otherName id-on-xmppAddr (RFC 6120 §13.7.1.4) */
	X509_ID_CN = 'C',   /* subject commonName; only when there is no subjectAltName */
};

#define X509_IDS_MAX 4096 /* identities past this many bytes are not kept */

struct x509_ids {
	size_t len;
	uint8_t b[X509_IDS_MAX];
};

struct x509_id {
	enum x509_id_kind kind;
	const char *s; /* not NUL-terminated */
	size_t n;
};

/*
 * Read the identities of one DER certificate (exactly [der, der+n)) into
 * *ids: every dNSName, SRV-ID and XmppAddr of its subjectAltName, or its
 * subject CNs when it has no subjectAltName (RFC 6125 §6.4.4). Returns 0,
 * or -1 when the bytes are not a well-formed certificate (ids->len is then 0).
 */
int x509_cert_ids(const uint8_t *der, size_t n, struct x509_ids *ids);

/* Walk a blob: *pos starts at 0; true and *id filled while entries remain. */
bool x509_ids_next(const uint8_t *ids, size_t len, size_t *pos, struct x509_id *id);

/*
 * Does any identity in the blob name `domain` (an A-label name, any case, one
 * trailing dot ignored)? DNS-ID by x509_dns_id_match, SRV-ID as
 * "_xmpp-server.DOMAIN", XmppAddr equal to the domain (a U-label XmppAddr is
 * converted to its A-label form first, IDNA2008), CN equal to it.
 */
bool x509_ids_match(const uint8_t *ids, size_t len, const char *domain);

/* RFC 6125 §6.4.3: 1 if the presented DNS-ID matches the domain. '*' only as
 * the whole left-most label, standing for exactly one label, and never as
 * "*.tld"; case-insensitive; one trailing dot ignored on either side. */
int x509_dns_id_match(const char *pattern, size_t plen, const char *domain);

/* The length of the DER element at the start of [der, der+n) (tag, length
 * and value), or -1: e.g. the leaf of a concatenated chain. */
long x509_der_len(const uint8_t *der, size_t n);

/*
 * Does the private key (DER) carry the certificate's public key? EC keys
 * (SEC1 / PKCS#8) embed the public point, RSA keys the modulus. Returns 1
 * match, 0 mismatch, -1 cannot tell.
 */
int x509_key_matches_cert(const uint8_t *cert, size_t certn, const uint8_t *key, size_t keyn);

#endif
