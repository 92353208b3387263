#!/bin/sh
# tests/fuzz/mkcorpus-x509.sh — remake the fuzz_x509 seeds: every certificate
# tests/certs/mkcerts.sh makes (CAs and leaves: DNS-IDs with wildcards,
# SRV-ID, XmppAddr in ASCII and UTF-8, CN only, EKU variants), in DER, into
# tests/fuzz/corpus/x509/. Certificates only; the keys stay in the temp dir.
set -eu
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sh tests/certs/mkcerts.sh "$tmp"
out=tests/fuzz/corpus/x509
mkdir -p "$out"
for pem in "$tmp"/*.pem; do
	name=$(basename "$pem" .pem)
	openssl x509 -in "$pem" -outform DER -out "$out/$name.der"
done
