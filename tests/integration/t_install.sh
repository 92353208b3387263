#!/bin/bash
# t_install: `make install DESTDIR=... PREFIX=/usr` gives a tree that runs
# anywhere, without the checkout.
#   - the tree holds bin/fedhub, bin/fedhub-bench, bin/fedhubctl, the example config, the
#     systemd unit (Type=notify, LimitNOFILE, user fedhub, ExecReload sends SIGHUP) and
#     the sysusers.d entry; with the accelerated wolfSSL, lib/fedhub holds it
#   - no RPATH/RUNPATH of any installed ELF file points into the checkout (or
#     its .deps); the check does see the checkout in the development binary
#   - copied elsewhere (the install dir removed), the installed fedhub runs
#     --version (and loads the wolfSSL of the copied tree) and -t -c on the
#     example configuration, and fedhub-bench --help runs
# No ports.
# shellcheck disable=SC2034 # FH_NAME is read by lib/fhit.sh
FH_NAME=install
. "$(dirname "$0")/lib/fhit.sh"
fh_init 400

CASES="make_install_succeeds installed_files_present unit_file_as_specified runpath_not_in_checkout
runpath_check_sees_checkout_binary moved_fedhub_version moved_fedhub_uses_its_own_wolfssl
moved_fedhub_checks_example_config moved_bench_runs"
DEST=$FH_DIR/dest MOVED=$FH_DIR/elsewhere/root
REPO_REAL=$(readlink -f "$FH_REPO")
DEPS_REAL=$(readlink -f "$FH_REPO/.deps" 2>/dev/null || true)
LOCAL_WOLF=0
[ -f "$FH_REPO/.deps/wolfssl/lib/pkgconfig/wolfssl.pc" ] && LOCAL_WOLF=1

if make -C "$FH_REPO" -s install DESTDIR="$DEST" PREFIX=/usr >"$FH_DIR/install.log" 2>&1; then
	fh_ok make_install_succeeds
else
	fh_fail make_install_succeeds "$(tail -5 "$FH_DIR/install.log" | tr '\n' ' ')"
	for c in $CASES; do [ "$c" = make_install_succeeds ] || fh_fail "$c" "no install"; done
	fh_done
fi

missing=""
for f in usr/bin/fedhub usr/bin/fedhub-bench usr/bin/fedhubctl etc/fedhub/router.conf.example usr/lib/systemd/system/fedhub.service \
	usr/lib/sysusers.d/fedhub.conf; do
	[ -s "$DEST/$f" ] || missing="$missing $f"
done
[ -x "$DEST/usr/bin/fedhub" ] || missing="$missing (usr/bin/fedhub not executable)"
if [ "$LOCAL_WOLF" = 1 ] && ! ls "$DEST"/usr/lib/fedhub/libwolfssl.so.* >/dev/null 2>&1; then
	missing="$missing usr/lib/fedhub/libwolfssl.so.*"
fi
if [ -z "$missing" ]; then fh_ok installed_files_present; else fh_fail installed_files_present "missing:$missing"; fi

unit=$DEST/usr/lib/systemd/system/fedhub.service
bad=""
grep -qx "Type=notify" "$unit" || bad="$bad Type=notify"
grep -qx "LimitNOFILE=1048576" "$unit" || bad="$bad LimitNOFILE"
grep -qx "User=fedhub" "$unit" || bad="$bad User"
grep -qx "NoNewPrivileges=yes" "$unit" || bad="$bad NoNewPrivileges"
grep -qx "ProtectSystem=strict" "$unit" || bad="$bad ProtectSystem"
grep -qx "ExecStart=/usr/bin/fedhub -c /etc/fedhub/router.conf" "$unit" || bad="$bad ExecStart"
grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" || bad="$bad ExecReload"
grep -q "/usr/local" "$unit" && bad="$bad /usr/local-left"
grep -q "^u fedhub " "$DEST/usr/lib/sysusers.d/fedhub.conf" || bad="$bad sysusers"
if [ -z "$bad" ]; then fh_ok unit_file_as_specified; else fh_fail unit_file_as_specified "wrong:$bad"; fi

# runpaths FILE...: every RPATH/RUNPATH entry of the ELF files given
runpaths() {
	local f
	for f in "$@"; do
		readelf -d "$f" 2>/dev/null | sed -nE 's/.*\((RPATH|RUNPATH)\).*\[(.*)\]/\2/p' | tr ':' '\n'
	done
}
# points_into_checkout: reads runpath entries, prints those in the checkout
points_into_checkout() {
	local p
	while read -r p; do
		[ -n "$p" ] || continue
		case "$p" in
		"$FH_REPO"* | "$REPO_REAL"*) echo "$p" ;;
		*) [ -n "$DEPS_REAL" ] && case "$p" in "$DEPS_REAL"*) echo "$p" ;; esac ;;
		esac
	done
}
elves=$(find "$DEST" -type f \( -perm -u+x -o -name '*.so*' \) -exec sh -c 'head -c4 "$1" | grep -q ELF' _ {} \; -print)
found=$(runpaths $elves | points_into_checkout)
if [ -n "$elves" ] && [ -z "$found" ]; then
	fh_ok runpath_not_in_checkout
else
	fh_fail runpath_not_in_checkout "files: $(tr '\n' ' ' <<<"$elves"); into the checkout: $found"
fi
if [ "$LOCAL_WOLF" = 1 ]; then
	if [ -n "$(runpaths "$FH_REPO/build/release/fedhub" | points_into_checkout)" ]; then
		fh_ok runpath_check_sees_checkout_binary
	else
		fh_fail runpath_check_sees_checkout_binary "the check finds nothing in $FH_REPO/build/release/fedhub"
	fi
else
	fh_ok "runpath_check_sees_checkout_binary # SKIP built with the system wolfSSL (no runpath)"
fi

# ---- copy the tree elsewhere, drop the original, run from the copy
mkdir -p "$MOVED"
cp -a "$DEST/." "$MOVED/"
rm -rf "$DEST"
out=$(cd / && env -u LD_LIBRARY_PATH timeout 10 "$MOVED/usr/bin/fedhub" --version 2>&1); rc=$?
if [ "$rc" -eq 0 ] && grep -qE "^fedhub [0-9]" <<<"$out" && grep -qE "^wolfSSL [0-9.]+, AES-NI: " <<<"$out" &&
	{ [ "$LOCAL_WOLF" = 0 ] || grep -q "(accelerated build)" <<<"$out"; }; then
	fh_ok moved_fedhub_version
else
	fh_fail moved_fedhub_version "exit $rc: $(tr '\n' '|' <<<"$out")"
fi
if [ "$LOCAL_WOLF" = 1 ]; then
	lib=$(env -u LD_LIBRARY_PATH ldd "$MOVED/usr/bin/fedhub" | sed -nE 's/.*libwolfssl\.so[^ ]* => ([^ ]+).*/\1/p')
	if [ -n "$lib" ] && [ "$(dirname "$(readlink -f "$lib")")" = "$(readlink -f "$MOVED/usr/lib/fedhub")" ]; then
		fh_ok moved_fedhub_uses_its_own_wolfssl
	else
		fh_fail moved_fedhub_uses_its_own_wolfssl "libwolfssl from '$lib'"
	fi
else
	fh_ok "moved_fedhub_uses_its_own_wolfssl # SKIP built with the system wolfSSL"
fi
out=$(cd / && env -u LD_LIBRARY_PATH timeout 10 "$MOVED/usr/bin/fedhub" -t -c "$MOVED/etc/fedhub/router.conf.example" 2>&1); rc=$?
if [ "$rc" -eq 0 ] && grep -qx "configuration ok" <<<"$out"; then
	fh_ok moved_fedhub_checks_example_config
else
	fh_fail moved_fedhub_checks_example_config "exit $rc: $(head -c 300 <<<"$out" | tr '\n' '|')"
fi
out=$(cd / && env -u LD_LIBRARY_PATH timeout 10 "$MOVED/usr/bin/fedhub-bench" --help 2>&1); rc=$?
if [ "$rc" -eq 0 ] && [ -n "$out" ]; then fh_ok moved_bench_runs; else fh_fail moved_bench_runs "exit $rc: $(head -c 200 <<<"$out")"; fi
fh_done
