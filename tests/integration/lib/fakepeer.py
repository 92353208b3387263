"""Minimal XMPP peers for driving fedhub in tests: a XEP-0114 component and a
remote server speaking s2s with Server Dialback (authoritative for its own
domain). Plain sockets and a tiny stanza splitter: these are test fixtures,
kept independent of fedhub's own code so they check it from the outside."""
import base64, hashlib, re, socket, threading, time

NS_STREAM = "http://etherx.jabber.org/streams"
NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"


class Reader:
    """Splits an XMPP stream into the header and top-level elements."""

    def __init__(self, sock):
        self.sock, self.buf, self.header = sock, b"", None
        self.eof = False  # the peer closed the TCP connection

    def _fill(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.time()))
        d = self.sock.recv(65536)
        if not d:
            self.eof = True
            raise EOFError("peer closed")
        self.buf += d

    def stream_header(self, timeout=5):
        deadline = time.time() + timeout
        while True:
            m = re.search(rb"<stream:stream[^>]*>", self.buf)
            if m:
                self.header = m.group(0).decode()
                self.buf = self.buf[m.end():]
                return self.header
            self._fill(deadline)

    def element(self, timeout=5):
        deadline = time.time() + timeout
        while True:
            self.buf = self.buf.lstrip()
            if self.buf.startswith(b"</stream:stream>"):
                raise EOFError("stream closed")
            end = self._complete()
            if end:
                raw, self.buf = self.buf[:end], self.buf[end:]
                return raw.decode()
            self._fill(deadline)

    def _complete(self):
        depth, i, b = 0, 0, self.buf
        while True:
            j = b.find(b"<", i)
            if j < 0:
                return 0
            k = b.find(b">", j)
            if k < 0:
                return 0
            tag = b[j:k + 1]
            if tag.startswith(b"</"):
                depth -= 1
            elif not tag.endswith(b"/>"):
                depth += 1
            if depth == 0:
                return k + 1
            i = k + 1


def attr(raw, name):
    m = re.search(r"""\s%s=(['"])(.*?)\1""" % re.escape(name), raw.split(">", 1)[0])
    return m.group(2) if m else None


def stream_id(header):
    return attr(header + ">", "id")


def s2s_header(frm="remote.fake", to="echo.fake", version="1.0", ns="jabber:server", stream_ns=NS_STREAM):
    """An s2s stream header (bytes); frm/to/version None leave the attribute out."""
    a = "".join(" %s='%s'" % (k, v) for k, v in (("from", frm), ("to", to), ("version", version)) if v is not None)
    return ("<stream:stream xmlns='%s' xmlns:stream='%s' xmlns:db='jabber:server:dialback'%s>"
            % (ns, stream_ns, a)).encode()


def comp_header(to="echo.fake"):
    """A XEP-0114 stream header (bytes); to None leaves the attribute out."""
    a = " to='%s'" % to if to is not None else ""
    return ("<stream:stream xmlns='jabber:component:accept' xmlns:stream='%s'%s>" % (NS_STREAM, a)).encode()


def handshake(sid, secret="s3cret"):
    """The XEP-0114 handshake element for stream id sid (bytes)."""
    return ("<handshake>%s</handshake>" % hashlib.sha1((sid + secret).encode()).hexdigest()).encode()


def error_condition(el):
    """The RFC 6120 condition of a <stream:error/> element (text), or None."""
    m = re.search(r"<([a-z-]+)\s+xmlns=(['\"])%s\2" % re.escape(NS_STREAMS), el)
    return m.group(1) if m else None


def stream_error_of(x, timeout=5):
    """The condition of the first <stream:error/> on x (a Reader, or anything
    with one in .r), skipping a stream header and other elements before it:
    e.g. 'policy-violation'; 'closed' when the stream (or the TCP connection)
    ends without one; 'timeout' when nothing comes."""
    r = x.r if hasattr(x, "r") else x
    deadline = time.time() + timeout
    try:
        while True:
            left = deadline - time.time()
            if left <= 0:
                return "timeout"
            r.buf = r.buf.lstrip()
            if r.buf.startswith(b"<?xml"):
                end = r.buf.find(b"?>")
                if end < 0:
                    r._fill(deadline)
                    continue
                r.buf = r.buf[end + 2:]
                continue
            if r.buf.startswith(b"<stream:stream"):
                r.stream_header(left)
                continue
            if not r.buf or len(r.buf) < 14 and b"<stream:stream".startswith(r.buf):
                r._fill(deadline)
                continue
            el = r.element(left)
            if el.startswith("<stream:error"):
                return error_condition(el) or el
    except EOFError:
        return "closed"
    except socket.timeout:
        return "timeout"
    except (ConnectionResetError, BrokenPipeError):
        r.eof = True
        return "closed"
    except OSError as e:
        return "oserror " + str(e)


def serve(port, handle, backlog=64, stopped=lambda: False):
    """Listens on 127.0.0.1:port; each accepted connection goes to
    handle(conn) in a thread of its own, until the listening socket (the
    return value) is closed or stopped() is true."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(backlog)

    def accept():
        while not stopped():
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return ls


class Stream:
    """One XML stream on socket .s read by Reader .r."""

    def send(self, x):
        self.s.sendall(x.encode() if isinstance(x, str) else x)

    def recv(self, timeout=5):
        return self.r.element(timeout)

    def close(self):
        try:
            self.s.sendall(b"</stream:stream>")
        except OSError:
            pass
        self.s.close()


class Component(Stream):
    """A XEP-0114 component, connected and past its handshake (RuntimeError
    when the hub refuses it)."""

    def __init__(self, port, domain, secret, host="127.0.0.1"):
        self.s = socket.create_connection((host, port), timeout=5)
        self.r = Reader(self.s)
        self.domain = domain
        self.s.sendall(comp_header(domain))
        sid = stream_id(self.r.stream_header())
        self.s.sendall(handshake(sid, secret))
        el = self.r.element()
        if not el.startswith("<handshake"):
            raise RuntimeError("handshake refused: " + el)


def db_key(secret, receiving, originating, sid):
    import hmac
    k = hashlib.sha256(secret.encode()).hexdigest().encode()
    return hmac.new(k, ("%s %s %s" % (receiving, originating, sid)).encode(), hashlib.sha256).hexdigest()


class RemoteServer:
    """A remote XMPP server `domain`: dials the hub to send, and listens on
    `port` for the hub's dialback verification and the hub's own outbound
    streams (it accepts every db:result the hub sends: it is the receiving
    server there, and trusts the hub for the test)."""

    def __init__(self, domain, port, secret="fake-secret", tls_server=None, bidi=False):
        self.domain, self.secret = domain, secret
        self.bidi = bidi              # offer XEP-0288 on inbound streams
        self.bidi_socks = []          # inbound streams whose initiator asked for it
        self.tls_server = tls_server  # ssl.SSLContext: offer STARTTLS and SASL EXTERNAL
        self.sasl_ok = []             # domains authenticated by SASL EXTERNAL on inbound streams
        self.inbox, self.lock, self.stop = [], threading.Lock(), False
        self.carriers = []            # per inbox element: the id of the stream it came on
        self.inbound_conns = 0
        self.tls_streams = 0  # inbound streams that did STARTTLS
        self.db_results = []
        self.lsock = serve(port, self._serve, stopped=lambda: self.stop)

    def _serve(self, c):
        r = Reader(c)
        tls = False
        try:
            r.stream_header(30)
            with self.lock:
                self.inbound_conns += 1
            sid = "fake%d" % id(c)

            def features():
                f = ""
                if self.tls_server and not tls:
                    f = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
                elif tls and c.getpeercert():
                    f = ("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism>"
                         "</mechanisms>")
                if self.bidi and not (self.tls_server and not tls):
                    f += "<bidi xmlns='urn:xmpp:features:bidi'/>"
                c.sendall(("<stream:stream xmlns='jabber:server' xmlns:stream='%s' xmlns:db='jabber:server:dialback'"
                           " id='%s' from='%s' version='1.0'><stream:features>%s</stream:features>"
                           % (NS_STREAM, sid, self.domain, f)).encode())
            features()
            while True:
                el = r.element(60)
                if el.startswith("<bidi"):
                    with self.lock:
                        self.bidi_socks.append(c)
                    continue
                if el.startswith("<starttls"):
                    c.sendall(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                    c = self.tls_server.wrap_socket(c, server_side=True)
                    tls = True
                    with self.lock:
                        self.tls_streams += 1
                    r = Reader(c)
                    r.stream_header(10)
                    features()
                    continue
                if el.startswith("<auth"):
                    authz = base64.b64decode(re.search(r">([^<]*)<", el).group(1)).decode()
                    names = [v for k, v in c.getpeercert().get("subjectAltName", ()) if k == "DNS"]
                    if authz in names:
                        with self.lock:
                            self.sasl_ok.append(authz)
                        c.sendall(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
                        r = Reader(c)
                        r.buf = b""
                        r.stream_header(10)
                        sid = sid + "x"
                        c.sendall(("<stream:stream xmlns='jabber:server' xmlns:stream='%s' "
                                   "xmlns:db='jabber:server:dialback' id='%s' from='%s' version='1.0'>"
                                   "<stream:features/>" % (NS_STREAM, sid, self.domain)).encode())
                    else:
                        c.sendall(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
                    continue
                if el.startswith("<db:verify"):
                    frm, to, vid = attr(el, "from"), attr(el, "to"), attr(el, "id")
                    key = re.search(r">([^<]*)<", el).group(1)
                    ok = key == db_key(self.secret, frm, to, vid)
                    c.sendall(("<db:verify from='%s' to='%s' id='%s' type='%s'/>"
                               % (to, frm, vid, "valid" if ok else "invalid")).encode())
                elif el.startswith("<db:result"):
                    frm, to = attr(el, "from"), attr(el, "to")
                    with self.lock:
                        self.db_results.append((frm, to))
                    m = re.search(r">([^<]*)<", el)
                    typ = self.on_db_result(c, frm, to, m.group(1) if m else "", sid, r.header)
                    c.sendall(("<db:result from='%s' to='%s' type='%s'/>" % (to, frm, typ)).encode())
                else:
                    with self.lock:
                        self.inbox.append(el)
                        self.carriers.append(sid)
        except (EOFError, OSError):
            pass
        finally:
            c.close()

    def on_db_result(self, c, frm, to, key, sid, header):
        """The answer to a db:result on an inbound stream (whose header
        was `header`): 'valid' (this fixture trusts the hub as receiving
        server)."""
        return "valid"

    def connect_out(self, port, to_domain, from_domain=None, host="127.0.0.1", tls=None, direct=False, source=None):
        """An s2s stream to the hub. tls: an ssl.SSLContext for STARTTLS (or
        direct TLS when direct=True); source: the local address to bind (a
        loopback address other than 127.0.0.1 stands for another machine).
        The features last seen are in .features."""
        frm = from_domain or self.domain
        s = socket.create_connection((host, port), timeout=5, source_address=(source, 0) if source else None)
        if direct:
            s = tls.wrap_socket(s, server_hostname=to_domain)
        r = Reader(s)
        hdr = s2s_header(frm, to_domain)
        s.sendall(hdr)
        sid = stream_id(r.stream_header())
        feats = r.element()
        if tls is not None and not direct:
            s.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            el = r.element()
            if not el.startswith("<proceed"):
                raise RuntimeError("no proceed: " + el)
            s = tls.wrap_socket(s, server_hostname=to_domain)
            r = Reader(s)
            s.sendall(hdr)
            sid = stream_id(r.stream_header())
            feats = r.element()
        o = S2SOut(self, s, r, sid, frm)
        o.features, o.hdr = feats, hdr
        return o

    def messages(self):
        with self.lock:
            return list(self.inbox)

    def messages_with_stream(self):
        """[(element, id of the stream it came on)] in arrival order."""
        with self.lock:
            return list(zip(self.inbox, self.carriers))

    def close(self):
        self.stop = True
        self.lsock.close()


class S2SOut(Stream):
    def __init__(self, server, s, r, sid, frm):
        self.server, self.s, self.r, self.sid, self.frm = server, s, r, sid, frm

    def auth(self, to_domain, timeout=10):
        key = db_key(self.server.secret, to_domain, self.frm, self.sid)
        self.s.sendall(("<db:result from='%s' to='%s'>%s</db:result>" % (self.frm, to_domain, key)).encode())
        el = self.r.element(timeout)
        return attr(el, "type")

    def sasl_external(self, authzid):
        self.s.sendall(("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>%s</auth>"
                        % base64.b64encode(authzid.encode()).decode()).encode())
        el = self.r.element()
        if not el.startswith("<success"):
            return el
        self.r = Reader(self.s)
        self.s.sendall(self.hdr)
        self.sid = stream_id(self.r.stream_header())
        self.features = self.r.element()
        return "success"


class Backend(RemoteServer):
    """A server behind the hub (a fedhub [backend]) serving `domains`, as an
    unmodified server pointed at the hub would behave: it listens on `port`
    for the hub's internal links (streams from a remote domain R to one of
    its domains) and verification streams; it checks each <db:result/> the
    hub sends by dialback toward "R", which it reaches at the hub
    (hub_port), like a server whose resolver answers every domain with the
    hub; and it sends through the hub with connect_out(). .verified lists
    (R, D, answer, connection) for every key it checked."""

    def __init__(self, domains, port, hub_port, secret="backend-secret", host="127.0.0.1", piggyback=True,
                 tls_server=None):
        self.domains, self.hub_port, self.hub_host = list(domains), hub_port, host
        self.piggyback = piggyback  # False: a db:result for another domain than the stream's gets an error
        self.verified = []
        self.conns = []
        super().__init__(self.domains[0], port, secret, tls_server=tls_server)

    def _serve(self, c):
        with self.lock:
            self.conns.append(c)
        RemoteServer._serve(self, c)

    def on_db_result(self, c, frm, to, key, sid, header):
        if not self.piggyback and attr(header + ">", "to") != to:
            with self.lock:
                self.verified.append((frm, to, "no-piggyback", id(c)))
            return "error"
        typ = "invalid"
        try:
            s = socket.create_connection((self.hub_host, self.hub_port), timeout=5)
            r = Reader(s)
            s.sendall(s2s_header(to, frm))
            r.stream_header(10)
            r.element(10)  # features
            s.sendall(("<db:verify from='%s' to='%s' id='%s'>%s</db:verify>" % (to, frm, sid, key)).encode())
            el = r.element(10)
            typ = attr(el, "type") or "invalid"
            s.close()
        except (EOFError, OSError) as e:
            typ = "error"
        with self.lock:
            self.verified.append((frm, to, typ, id(c)))
        return "valid" if typ == "valid" else "invalid"

    def kill(self):
        """Stop listening and cut every connection (a backend going down)."""
        self.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


# ---- counting what a destination receives, and flooding a link (flow and
# node-link tests)

MSG_RE = re.compile(rb"<message\b[^>]*>.*?</message>", re.S)


class Counter:
    """Reads a socket (after its stream header) on a thread and records every
    <message/>: (time, id, is_error, raw). pace: seconds to sleep between reads
    of chunk bytes (a slow reader); hold: an Event that stops reading while
    set; closed = True ends the thread."""

    def __init__(self, sock, buf=b"", chunk=65536, pace=0.0, hold=None):
        self.s, self.buf, self.chunk, self.pace, self.hold = sock, buf, chunk, pace, hold
        self.got, self.lock, self.closed = [], threading.Lock(), False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        self.s.settimeout(0.2)
        while not self.closed:
            if self.hold is not None and self.hold.is_set():
                time.sleep(0.02)
                continue
            try:
                d = self.s.recv(self.chunk)
            except socket.timeout:
                continue
            except OSError:
                return
            if not d:
                return
            self.buf += d
            now = time.time()
            last = 0
            for m in MSG_RE.finditer(self.buf):
                raw = m.group(0)
                mid = re.search(rb"id='([^']*)'", raw)
                with self.lock:
                    self.got.append((now, mid.group(1).decode() if mid else "", b"type='error'" in raw, raw))
                last = m.end()
            self.buf = self.buf[last:]
            if self.pace:
                time.sleep(self.pace)

    def items(self):
        with self.lock:
            return list(self.got)

    def ids(self):
        """The ids of the messages received that are not errors, in order."""
        return [i for _, i, err, _ in self.items() if not err]

    def wait(self, want, timeout):
        """Until want holds: a number of ids(), or a predicate on items()."""
        pred = want if callable(want) else (lambda _items: len(self.ids()) >= want)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred(self.items()):
                return True
            time.sleep(0.05)
        return pred(self.items())


def counted_component(port, domain, secret="s3cret", rcvbuf=None, **kw):
    """A component connection (SO_RCVBUF rcvbuf if given) whose received
    stanzas a Counter(**kw) records; returns (socket, counter)."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    r = Reader(s)
    s.sendall(comp_header(domain))
    sid = attr(r.stream_header() + ">", "id") or ""
    s.sendall(handshake(sid, secret))
    el = r.element()
    if not el.startswith("<handshake"):
        raise RuntimeError("handshake refused: " + el)
    return s, Counter(s, r.buf, **kw)


def sender(sock, stanzas):
    """Writes stanzas from a thread (it blocks while the hub does not read);
    returns an Event set when all is written or the socket failed."""
    done = threading.Event()

    def run():
        sock.settimeout(60)
        try:
            data = "".join(stanzas).encode()
            for i in range(0, len(data), 16384):
                sock.sendall(data[i:i + 16384])
        except OSError:
            pass
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done


def in_order(ids, prefix):
    """The ids with that prefix (PREFIX + a number) came in increasing order."""
    nums = [int(i[len(prefix):]) for i in ids if i.startswith(prefix)]
    return nums == sorted(nums)
