#!/bin/sh
# Build wolfSSL from Debian's source package with AES-NI and the assembly
# speed-ups into .deps/wolfssl (git-ignored). The result is cached in
# ~/.cache/fedhub so a fresh clone on the same machine does not rebuild it.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PREFIX="$ROOT/.deps/wolfssl"
[ -f "$PREFIX/lib/pkgconfig/wolfssl.pc" ] && { echo "wolfssl: $PREFIX is ready"; exit 0; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# Enable deb-src for the configured mirror if no source entry exists.
if ! grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		$SUDO sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
	else
		grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' |
			$SUDO tee /etc/apt/sources.list.d/fedhub-src.list >/dev/null
	fi
	$SUDO apt-get update -q
fi

VER=$(apt-cache showsrc wolfssl 2>/dev/null | awk '/^Version:/{print $2; exit}')
[ -n "$VER" ] || { echo "wolfssl: no source package found" >&2; exit 1; }
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/fedhub/wolfssl-$VER"
FLAGS="--enable-aesni --enable-intelasm --enable-sp-asm --enable-sp --enable-tls13 \
--enable-sni --enable-alpn --enable-session-ticket --enable-opensslextra \
--enable-crl --enable-ocsp --enable-certgen --enable-keygen --enable-altcertchains \
--enable-chacha --enable-poly1305 --enable-aesgcm --enable-ecc --enable-curve25519 \
--enable-supportedcurves --enable-secure-renegotiation-info --enable-certext \
--disable-examples --disable-crypttests --disable-benchmark --disable-oldtls \
--disable-static"

if [ ! -f "$CACHE/.built" ]; then
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	(cd "$work" && apt-get source -q wolfssl >/dev/null 2>&1) || { echo "wolfssl: apt-get source failed" >&2; exit 1; }
	src=$(find "$work" -maxdepth 1 -type d -name 'wolfssl-*' | head -1)
	rm -rf "$CACHE"; mkdir -p "$CACHE"
	echo "wolfssl: building $VER with AES-NI into $CACHE"
	(cd "$src" && { [ -x configure ] || ./autogen.sh >/dev/null 2>&1; } &&
		CFLAGS="-O2 -DWOLFSSL_PUBLIC_MP -DKEEP_PEER_CERT -DWOLFSSL_ALWAYS_VERIFY_CB -DWOLFSSL_VERIFY_CB_ALL_CERTS" \
		./configure -q --prefix="$CACHE" $FLAGS >"$CACHE.log" 2>&1 &&
		make -j"$(nproc)" >>"$CACHE.log" 2>&1 && make install >>"$CACHE.log" 2>&1) ||
		{ echo "wolfssl: build failed, see $CACHE.log" >&2; rm -rf "$CACHE"; exit 1; }
	touch "$CACHE/.built"
fi
mkdir -p "$ROOT/.deps"
rm -rf "$PREFIX"
cp -a "$CACHE" "$PREFIX"
# the .pc file names the cache prefix; point it at the copy
sed -i "s|^prefix=.*|prefix=$PREFIX|" "$PREFIX/lib/pkgconfig/wolfssl.pc"
echo "wolfssl: accelerated build ready in $PREFIX"
