"""fhit_dns: a dnsmasq serving the test domains' SRV and A records, and a
one-shot DNS client to check what it answers.

dnsmasq listens on 127.0.0.2:53 with SRV + A records for the test domains under
the made-up TLD .fhtest (not .test: libunbound answers NXDOMAIN for .test
itself), NXDOMAIN for every other .fhtest name (--local=/fhtest/; without it
dnsmasq answers REFUSED and ejabberd takes that as a failed lookup).
"""

import os
import shutil
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fhit_base import DNS_IP, LOOP, TLD  # noqa: E402


QTYPES = {"A": 1, "AAAA": 28, "SRV": 33}


def dns_query(name, qtype, server=DNS_IP, port=53, timeout=1.0):
    """One UDP query. Returns (rcode, answers) with answers a list of
    ("A", "1.2.3.4") or ("SRV", (prio, weight, port, target))."""
    qid = os.getpid() & 0xFFFF
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", QTYPES[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (server, port))
        r, _ = s.recvfrom(4096)
    finally:
        s.close()
    rcode = r[3] & 0x0F
    an = struct.unpack(">H", r[6:8])[0]

    def read_name(off):
        labels = []
        jumped_end = None
        while True:
            n = r[off]
            if n & 0xC0 == 0xC0:
                if jumped_end is None:
                    jumped_end = off + 2
                off = ((n & 0x3F) << 8) | r[off + 1]
                continue
            off += 1
            if n == 0:
                break
            labels.append(r[off:off + n].decode())
            off += n
        return ".".join(labels), (jumped_end if jumped_end is not None else off)

    off = 12
    _, off = read_name(off)
    off += 4
    out = []
    for _ in range(an):
        _, off = read_name(off)
        typ, _cls, _ttl, rdlen = struct.unpack(">HHIH", r[off:off + 10])
        off += 10
        rd = off
        if typ == 1:
            out.append(("A", socket.inet_ntoa(r[rd:rd + 4])))
        elif typ == 33:
            prio, weight, port_ = struct.unpack(">HHH", r[rd:rd + 6])
            target, _ = read_name(rd + 6)
            out.append(("SRV", (prio, weight, port_, target)))
        off = rd + rdlen
    return rcode, out


RCODE_NXDOMAIN = 3


def start_dnsmasq(h, srv, xmpps=None, ip=DNS_IP, name="dnsmasq", tld=TLD, addresses=None):
    """srv: {domain: port} -> _xmpp-server._tcp.DOMAIN SRV DOMAIN:port and
    DOMAIN A 127.0.0.1. xmpps: {domain: port} -> _xmpps-server._tcp.DOMAIN
    SRV DOMAIN:port (XEP-0368 direct TLS), same priority and weight.
    ip, name, tld: a further instance (another loopback address, its own
    NAME.log/.pid/.out, NXDOMAIN below .TLD); its resolv.conf is
    h.path(resolv_conf_name(name)). addresses: {domain: ip} -> every name
    at or below DOMAIN has that A record (and no SRV record: NODATA)."""
    if shutil.which("dnsmasq") is None:
        raise RuntimeError("dnsmasq not installed")
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
            "--no-resolv", "--no-hosts", "--no-poll",
            "--listen-address=%s" % ip, "--bind-interfaces", "--port=53",
            "--local=/%s/" % tld, "--pid-file=%s" % h.path(name + ".pid"),
            "--user=root", "--log-queries", "--log-facility=%s" % h.path(name + ".log")]
    for dom, port in srv.items():
        argv.append("--srv-host=_xmpp-server._tcp.%s,%s,%d,0,0" % (dom, dom, port))
        argv.append("--host-record=%s,%s" % (dom, LOOP))
    for dom, port in (xmpps or {}).items():
        argv.append("--srv-host=_xmpps-server._tcp.%s,%s,%d,0,0" % (dom, dom, port))
        if dom not in srv:
            argv.append("--host-record=%s,%s" % (dom, LOOP))
    for dom, addr in (addresses or {}).items():
        argv.append("--address=/%s/%s" % (dom, addr))
    p = h.spawn(name, argv, name + ".out")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        if p.poll() is not None:
            h.dump_logs([name + ".out"])
            raise RuntimeError("dnsmasq exited with %s (is %s:53 taken?)" % (p.returncode, ip))
        try:
            if srv:
                rcode, ans = dns_query("_xmpp-server._tcp.%s" % next(iter(srv)), "SRV", server=ip, timeout=0.3)
            else:
                rcode, ans = dns_query("x.%s" % next(iter(addresses)), "A", server=ip, timeout=0.3)
            if rcode == 0 and ans:
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        raise RuntimeError("dnsmasq did not answer")
    with open(h.path(resolv_conf_name(name)), "w") as f:
        f.write("nameserver %s\noptions timeout:1 attempts:2\n" % ip)
    return p


def resolv_conf_name(dnsmasq_name="dnsmasq"):
    """The resolv.conf start_dnsmasq() writes for the instance of that name."""
    return "resolv.conf" if dnsmasq_name == "dnsmasq" else dnsmasq_name + ".resolv.conf"
