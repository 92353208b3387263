#!/bin/bash
# bench/peers/target.sh — start and stop the targets fedhub-bench compares.
#
#   target.sh start NAME DIR CPUS [NDOMAINS [OPTIONS]]  NAME: fedhub prosody ejabberd haproxy
#                                                  OPTIONS: tls, dns, backend, stall=SECONDS
#                                                  (stall_timeout), comma-separated (fedhub only)
#   target.sh stop NAME DIR
#
# `start` writes the target's config into DIR (a fresh temp dir), starts it on
# loopback pinned to CPUS (taskset list), waits until it listens, and prints
# key=value lines the bench reads:
#   pid=PID            the process whose CPU and RSS are measured
#   s2s=HOST:PORT      where the bench's s2s links connect
#   comp=HOST:PORT     where the bench's components connect
#   relay=HOST:PORT    (haproxy) where the bench listens as the far end
#   tls_dir=DIR        (tls) the CA and the bench's certificate (bench/peers/mkcerts.sh)
#   error=TEXT         why it could not start (exit status non-zero)
# With `tls` (fedhub only), mkcerts.sh writes a test CA and the certificates
# into DIR/certs, and fedhub gets ca_file, a certificate for comp.fhb and
# hub.fhb, `tls required` on its s2s listener and s2s_tls required for the
# links it dials: every s2s link then runs STARTTLS, and SASL EXTERNAL
# (XEP-0178) where the certificate proves the stream's domain.
# With `dns` (fedhub only), fedhub finds the bench's domains through DNS, as
# it would on the Internet, instead of static [route]s: a dnsmasq of ours on
# 127.0.0.1:22353 (fedhub's dns_server) serves an _xmpp-server._tcp SRV
# record per bench domain, naming benchhost.fhb:22270 (A 127.0.0.1).
# FHB_FEDHUB=PATH starts that fedhub binary instead of the repository's (to
# compare two builds back to back with the same bench).
# With `backend` (fedhub only; fedhub-bench s2s-backend), the bench's listener
# is also a backend server behind fedhub: a [backend bench] section gives it
# the domain back.fhb, connect 127.0.0.1:22270 and allow_from 127.0.0.1, so
# fedhub relays the bench's remote links for back.fhb to it and takes its
# streams to the bench's domains (transit) from that address.
# `stop` kills what `start` started, by the PIDs it recorded in DIR, and
# removes DIR. Every target serves the component domain comp.fhb (secret
# s3cret) and must reach the bench's domains bench1.fhb..benchN.fhb at the
# bench's dialback listener 127.0.0.1:22270:
#   fedhub    static [route] sections in its config
#   prosody   lua-unbound pointed (resolvconf) at a dnsmasq of ours on
#             127.0.0.3:53 serving _xmpp-server._tcp SRV records
#   ejabberd  the same dnsmasq through the Erlang VM's inetrc, plus host
#             entries and outgoing_s2s_port (see ejabberd.yml.in)
# Ports (all on 127.0.0.1, in 22000-22999):
#   fedhub 22269 s2s, 22347 component, 22280 http
#   prosody 22469 s2s, 22447 component
#   ejabberd 22569 s2s, 22547 component, 22598 Erlang distribution, 22599 epmd
#   haproxy 22669 front -> 22670 (the bench)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cmd=${1:-}; name=${2:-}; dir=${3:-}
cpus=${4:-0-$(($(nproc) - 1))}; ndom=${5:-16}; opts=${6:-}
tls=""; dns=""; backend=""; stall=""
case ",$opts," in *,tls,*) tls=tls ;; esac
case ",$opts," in *,stall=*) stall=${opts#*stall=}; stall=${stall%%,*} ;; esac
case ",$opts," in *,dns,*) dns=dns ;; esac
case ",$opts," in *,backend,*) backend=backend ;; esac

fail() { echo "error=$*"; exit 1; }

# wait_port PORT SECONDS PID: true once something listens on 127.0.0.1:PORT
wait_port() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$3" 2>/dev/null || return 1
		ss -Hltn "src 127.0.0.1:$1" 2>/dev/null | grep -q . && return 0
		sleep 0.1
	done
	return 1
}

# The dnsmasq serving the bench's domains (Prosody, ejabberd, fedhub with dns; see above).
# With `cname` each bench domain's SRV name is a CNAME of one SRV record
# (_xmpp-server._tcp.srv.fhb): dnsmasq keeps CNAMEs in its hashed cache but
# scans its srv-host list for every query (10,000 srv-host lines answered
# 10,000 SRV queries in 5.5 s, the CNAMEs in 0.36 s). dnsmasq then takes a
# few seconds to load them (about 4 s for 10,000): start_dns waits until it
# listens.
start_dns() { # start_dns SRV_TARGET [ADDRESS PORT [cname]]
	local conf="$dir/dnsmasq.conf" i srv_target=${1:-benchhost.fhb} addr=${2:-127.0.0.3} port=${3:-53}
	local form=${4:-srv}
	{
		echo "no-resolv"
		echo "no-hosts"
		echo "bind-interfaces"
		echo "listen-address=$addr"
		echo "port=$port"
		echo "local=/fhb/"
		echo "address=/benchhost.fhb/127.0.0.1"
		echo "cache-size=10000"
		if [ "$form" = cname ]; then
			echo "srv-host=_xmpp-server._tcp.srv.fhb,$srv_target,22270"
			seq 1 "$ndom" | awk '{ printf "cname=_xmpp-server._tcp.bench%d.fhb,_xmpp-server._tcp.srv.fhb\n", $1 }'
		else
			seq 1 "$ndom" | awk -v t="$srv_target" '{ printf "srv-host=_xmpp-server._tcp.bench%d.fhb,%s,22270\n", $1, t }'
		fi
	} >"$conf"
	# a previous run's dnsmasq may still be letting go of the port: retry
	for ((i = 0; i < 10; i++)); do
		dnsmasq --keep-in-foreground --conf-file="$conf" --user=root --pid-file= \
			--log-facility="$dir/dnsmasq.log" >"$dir/dnsmasq.out" 2>&1 &
		echo $! >"$dir/dns.pid"
		sleep 0.3
		kill -0 "$(cat "$dir/dns.pid")" 2>/dev/null && break
		sleep 0.5
	done
	kill -0 "$(cat "$dir/dns.pid")" 2>/dev/null ||
		fail "dnsmasq did not start on $addr:$port: $(tail -n 2 "$dir/dnsmasq.out" | tr '\n' ' ')"
	# it binds its socket once the configuration is loaded
	for ((i = 0; i < 300; i++)); do
		ss -Hlun "sport = :$port" 2>/dev/null | grep -qF "$addr:$port" && break
		kill -0 "$(cat "$dir/dns.pid")" 2>/dev/null || break
		sleep 0.1
	done
	ss -Hlun "sport = :$port" 2>/dev/null | grep -qF "$addr:$port" ||
		fail "dnsmasq does not listen on $addr:$port: $(tail -n 2 "$dir/dnsmasq.out" | tr '\n' ' ')"
	echo "nameserver $addr" >"$dir/resolv.conf"
}

subst() { # subst IN OUT: @DIR@ @NDOM@ replaced
	sed -e "s|@DIR@|$dir|g" -e "s|@REPO@|$REPO|g" "$1" >"$2"
}

start_fedhub() {
	local bin=${FHB_FEDHUB:-}
	for b in "$REPO/fedhub" "$REPO/build/release/fedhub"; do [ -z "$bin" ] && [ -x "$b" ] && bin=$b; done
	[ -n "$bin" ] || fail "fedhub is not built"
	subst "$HERE/fedhub.conf.in" "$dir/router.conf"
	if [ "$tls" = tls ]; then
		"$HERE/mkcerts.sh" "$dir/certs" "$ndom" >"$dir/mkcerts.out" 2>&1 ||
			fail "mkcerts.sh: $(tail -n 2 "$dir/mkcerts.out" | tr '\n' ' ')"
		sed -i -e "s|^listen s2s \(.*\) tls optional|listen s2s \1 tls required|" \
			-e "s|^\[hub\]\$|[hub]\nca_file $dir/certs/ca.pem\ns2s_tls required|" "$dir/router.conf"
		printf '[domain comp.fhb]\ncert %s\nkey %s\n' "$dir/certs/target.pem" "$dir/certs/target.key" \
			>>"$dir/router.conf"
		printf '[domain hub.fhb]\ncert %s\nkey %s\n' "$dir/certs/target.pem" "$dir/certs/target.key" \
			>>"$dir/router.conf"
	fi
	if [ -n "$stall" ]; then
		sed -i -e "s|^\[hub\]\$|[hub]\nstall_timeout ${stall}s|" "$dir/router.conf"
	fi
	if [ "$backend" = backend ]; then
		printf '[backend bench]\ndomain back.fhb\nconnect 127.0.0.1:22270\nallow_from 127.0.0.1\n' \
			>>"$dir/router.conf"
	fi
	if [ "$dns" = dns ]; then
		start_dns benchhost.fhb 127.0.0.1 22353 cname
		# the bench's domains resolve to loopback, which fedhub drops from
		# DNS answers unless told otherwise
		sed -i -e "s|^\[hub\]\$|[hub]\ndns_server 127.0.0.1:22353\ndns_allow_private yes|" "$dir/router.conf"
	else
		seq 1 "$ndom" | awk '{ printf "[route bench%d.fhb]\nconnect 127.0.0.1:22270\n", $1 }' >>"$dir/router.conf"
	fi
	(ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec taskset -c "$cpus" "$bin" -c "$dir/router.conf") \
		>"$dir/fedhub.log" 2>&1 &
	local pid=$!
	echo "$pid" >"$dir/target.pid"
	wait_port 22269 10 "$pid" && wait_port 22347 5 "$pid" ||
		fail "fedhub did not start: $(tail -n 3 "$dir/fedhub.log" | tr '\n' ' ')"
	echo "pid=$pid"
	echo "s2s=127.0.0.1:22269"
	echo "comp=127.0.0.1:22347"
	echo "http=127.0.0.1:22280"
	[ "$tls" = tls ] && echo "tls_dir=$dir/certs"
	return 0
}

start_prosody() {
	command -v prosody >/dev/null || fail "prosody is not installed"
	mkdir -p "$dir/data"
	start_dns
	subst "$HERE/prosody.cfg.lua.in" "$dir/prosody.cfg.lua"
	(ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec taskset -c "$cpus" prosody -F --config "$dir/prosody.cfg.lua") \
		>"$dir/prosody.out" 2>&1 &
	local pid=$!
	echo "$pid" >"$dir/target.pid"
	wait_port 22469 20 "$pid" && wait_port 22447 5 "$pid" ||
		fail "prosody did not start: $(tail -n 3 "$dir/prosody.out" "$dir/prosody.log" 2>/dev/null | tr '\n' ' ')"
	echo "pid=$pid"
	echo "s2s=127.0.0.1:22469"
	echo "comp=127.0.0.1:22447"
}

ejabberd_env() {
	export ERL_EPMD_PORT=22599 # our own epmd, not the system one
	EJ=(ejabberdctl --config-dir "$dir/etc" --config "$dir/etc/ejabberd.yml" --spool "$dir/spool"
		--logs "$dir/log" --node fhbench1@localhost)
}

start_ejabberd() {
	command -v ejabberdctl >/dev/null || fail "ejabberd is not installed"
	mkdir -p "$dir/etc" "$dir/spool" "$dir/log"
	subst "$HERE/ejabberd.yml.in" "$dir/etc/ejabberd.yml"
	# ejabberd (p1_xmpp) takes SRV records from the VM's resolver (inetrc) but
	# resolves the SRV target with the OS's getaddrinfo (net:getaddrinfo/2),
	# which knows nothing of our dnsmasq: the SRV target is therefore the
	# address literal 127.0.0.1, which getaddrinfo parses without a lookup.
	start_dns 127.0.0.1
	{
		echo '{lookup, ["file", "dns"]}.'
		echo "{resolv_conf, \"$dir/resolv.conf\"}."
		echo '{host, {127,0,0,1}, ["localhost", "benchhost.fhb"]}.'
		for ((i = 1; i <= ndom; i++)); do echo "{host, {127,0,0,1}, [\"bench$i.fhb\"]}."; done
	} >"$dir/etc/inetrc"
	: >"$dir/etc/ejabberdctl.cfg"
	echo 'ERL_DIST_PORT=22598' >>"$dir/etc/ejabberdctl.cfg"
	echo 'INET_DIST_INTERFACE=127.0.0.1' >>"$dir/etc/ejabberdctl.cfg"
	echo 'ERL_MAX_PORTS=65536' >>"$dir/etc/ejabberdctl.cfg"
	chown -R ejabberd: "$dir" 2>/dev/null
	chmod 755 "$dir"
	ejabberd_env
	# When an SRV lookup fails, p1_xmpp falls back to the OS's getaddrinfo for
	# the bench domain itself (port outgoing_s2s_port). Under many concurrent
	# dialbacks some SRV lookups do fail, so ejabberd runs in a private mount
	# namespace whose /etc/hosts also names the bench domains: the fallback
	# then stays on this machine and lands on the bench's listener too.
	{
		cat /etc/hosts
		for ((i = 1; i <= ndom; i++)); do echo "127.0.0.1 bench$i.fhb"; done
	} >"$dir/etc/hosts"
	chmod 644 "$dir/etc/hosts"
	local ns=()
	unshare -m true 2>/dev/null && ns=(unshare -m sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$dir/etc/hosts")
	# Become the ejabberd user with setpriv rather than letting ejabberdctl
	# `su`: su applies the PAM default fd limit (1024), too few for idle-links.
	local as_ej=()
	[ "$(id -u)" = 0 ] && as_ej=(setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME=/var/lib/ejabberd)
	(ulimit -n "$(ulimit -Hn)" 2>/dev/null; ERL_INETRC="$dir/etc/inetrc" "${ns[@]}" "${as_ej[@]}" \
		taskset -c "$cpus" "${EJ[@]}" start) \
		>"$dir/ejabberd.out" 2>&1 ||
		fail "ejabberdctl start failed: $(tail -n 3 "$dir/ejabberd.out" | tr '\n' ' ')"
	local i pid=""
	for ((i = 0; i < 300; i++)); do
		"${EJ[@]}" status >/dev/null 2>&1 && break
		sleep 0.1
	done
	# the VM's PID: the beam process whose command line names our node
	pid=$(pgrep -f -- "-sname fhbench1@localhost|-name fhbench1@localhost|fhbench1@localhost" | head -n 1)
	[ -n "$pid" ] || fail "ejabberd did not start: $(tail -n 5 "$dir/log/ejabberd.log" 2>/dev/null | tr '\n' ' ')"
	echo "$pid" >"$dir/target.pid"
	wait_port 22569 20 "$pid" && wait_port 22547 5 "$pid" ||
		fail "ejabberd does not listen: $(tail -n 3 "$dir/log/ejabberd.log" 2>/dev/null | tr '\n' ' ')"
	echo "pid=$pid"
	echo "s2s=127.0.0.1:22569"
	echo "comp=127.0.0.1:22547"
}

start_haproxy() {
	command -v haproxy >/dev/null || fail "haproxy is not installed"
	subst "$HERE/haproxy.cfg.in" "$dir/haproxy.cfg"
	(ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec taskset -c "$cpus" haproxy -db -f "$dir/haproxy.cfg") \
		>"$dir/haproxy.out" 2>&1 &
	local pid=$!
	echo "$pid" >"$dir/target.pid"
	wait_port 22669 10 "$pid" || fail "haproxy did not start: $(tail -n 3 "$dir/haproxy.out" | tr '\n' ' ')"
	echo "pid=$pid"
	echo "s2s=127.0.0.1:22669"
	echo "relay=127.0.0.1:22670"
}

kill_pidfile() { # kill_pidfile FILE: TERM, then KILL after 5 s
	local pid i
	[ -f "$1" ] || return 0
	pid=$(cat "$1")
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null
}

stop_target() {
	[ -n "$dir" ] && [ -d "$dir" ] || return 0
	if [ "$name" = ejabberd ]; then
		ejabberd_env
		"${EJ[@]}" stop >/dev/null 2>&1
		for ((i = 0; i < 50; i++)); do
			[ -f "$dir/target.pid" ] && kill -0 "$(cat "$dir/target.pid")" 2>/dev/null || break
			sleep 0.1
		done
		kill_pidfile "$dir/target.pid"
		# the epmd our node started on its own port
		epmd -port 22599 -kill >/dev/null 2>&1
	else
		kill_pidfile "$dir/target.pid"
	fi
	kill_pidfile "$dir/dns.pid"
	case "$dir" in /tmp/fhb-*) rm -rf "$dir" ;; esac
}

case "$cmd" in
start)
	[ -n "$dir" ] && mkdir -p "$dir" || fail "usage: target.sh start NAME DIR CPUS [NDOMAINS [OPTIONS]]"
	for opt in ${opts//,/ }; do
		case "$opt" in tls | dns | backend | stall=[0-9]*) ;; *) fail "unknown options '$opts' (tls, dns, backend, stall=SECONDS)" ;; esac
	done
	[ -z "$tls" ] || [ "$name" = fedhub ] || fail "TLS runs are set up for fedhub only"
	[ -z "$dns" ] || [ "$name" = fedhub ] || fail "prosody and ejabberd always resolve by DNS: no dns option"
	[ -z "$backend" ] || [ "$name" = fedhub ] || fail "the backend option is set up for fedhub only"
	case "$name" in
	fedhub) start_fedhub ;;
	prosody) start_prosody ;;
	ejabberd) start_ejabberd ;;
	haproxy) start_haproxy ;;
	*) fail "unknown target '$name'" ;;
	esac
	;;
stop) stop_target ;;
*) echo "usage: target.sh start|stop NAME DIR [CPUS NDOMAINS [tls|dns|tls,dns]]" >&2; exit 2 ;;
esac
