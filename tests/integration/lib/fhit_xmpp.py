"""fhit_xmpp: slixmpp actors (c2s users and XEP-0114 echo components; slixmpp
is imported lazily so the shell tests need no slixmpp) and stanza helpers."""

import asyncio
import os
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fhit_base import LOOP, NS_STANZAS, PORTS, SECRET, CaseFailed  # noqa: E402


def bare(j):
    """The bare JID of a JID (anything str() gives one of)."""
    return str(j).split("/", 1)[0]



def _slix():
    import logging
    import slixmpp
    logging.getLogger("slixmpp").setLevel(logging.ERROR)
    return slixmpp


def make_user_class():
    slixmpp = _slix()

    class User(slixmpp.ClientXMPP):
        """A c2s user on a peer, plaintext, that queues every message it gets."""

        def __init__(self, jid, password, port):
            super().__init__(jid, password)
            self.port = port
            self.inbox = asyncio.Queue()
            self.online = asyncio.Event()
            self.failed = None
            self['feature_mechanisms'].unencrypted_plain = True
            self.register_plugin("xep_0030")
            self.register_plugin("xep_0199")
            self.add_event_handler("session_start", self._on_start)
            self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))
            # slixmpp raises 'message' only for messages with a body; a bounce
            # without one (Prosody's, for a failed s2s link) is 'message_error' alone.
            self.add_event_handler("message_error", lambda m: None if m["body"] else self.inbox.put_nowait(m))
            self.add_event_handler("failed_auth", lambda *_: self._fail("auth failed"))
            self.add_event_handler("connection_failed", lambda e: self._fail("connection failed: %s" % e))

        def _fail(self, why):
            self.failed = why
            self.online.set()

        async def _on_start(self, _):
            # Available presence, so messages to the bare JID reach this resource.
            self.send_presence()
            self.online.set()

        async def login(self, timeout=20):
            self.connect((LOOP, self.port), force_starttls=False, disable_starttls=True)
            try:
                await asyncio.wait_for(self.online.wait(), timeout)
            finally:
                self.cancel_connection_attempt()
            if self.failed:
                raise CaseFailed("%s: %s" % (self.boundjid, self.failed))

        async def next_message(self, timeout, pred=lambda m: True):
            t0 = time.monotonic()
            while True:
                left = timeout - (time.monotonic() - t0)
                if left <= 0:
                    raise CaseFailed("%s: no matching message within %d s" % (self.boundjid.bare, timeout))
                try:
                    m = await asyncio.wait_for(self.inbox.get(), left)
                except asyncio.TimeoutError:
                    continue
                if pred(m):
                    return m

        def close(self):
            if self.transport:
                self.abort()

    return User


def make_component_class():
    slixmpp = _slix()
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import StanzaPath

    class EchoComponent(slixmpp.ComponentXMPP):
        """An XEP-0114 component connection. Messages with a body are echoed to
        their sender as 'TAG|body' from the address they were sent to; iq get/set
        to a localpart starting with 'bot' gets an empty result, any other
        address gets item-not-found. Everything received is recorded."""

        def __init__(self, domain, tag, port=PORTS["hub_comp"], secret=SECRET):
            super().__init__(domain, secret, LOOP, port)
            self.tag = tag
            self.received = []      # message bodies echoed, in arrival order: (from, to, body)
            self.errors = asyncio.Queue()   # type='error' messages received
            self.iqs = 0
            self.online = asyncio.Event()
            self.gone = asyncio.Event()
            self.failed = None
            self.dead = False       # set by close(): a crashed process handles nothing more
            self.register_handler(Callback("fhit message", StanzaPath("message"), self._on_message))
            self.register_handler(Callback("fhit iq", StanzaPath("iq"), self._on_iq))
            self.add_event_handler("session_start", lambda _: self.online.set())
            self.add_event_handler("disconnected", self._on_gone)
            self.add_event_handler("stream_error", lambda e: self._fail("stream error %s" % e['condition']))
            self.add_event_handler("connection_failed", lambda e: self._fail("connection failed: %s" % e))

        def _fail(self, why):
            self.failed = self.failed or why
            self.online.set()

        def _on_gone(self, _):
            self.gone.set()
            self._fail("disconnected")

        def _on_message(self, msg):
            if self.dead:
                return
            if msg["type"] == "error":
                self.errors.put_nowait(msg)
                return
            body = msg["body"]
            if not body:
                return
            self.received.append((str(msg["from"]), str(msg["to"]), body))
            self.make_message(mto=msg["from"], mfrom=msg["to"], mbody="%s|%s" % (self.tag, body),
                              mtype=msg["type"] or "normal").send()

        def _on_iq(self, iq):
            if self.dead or iq["type"] not in ("get", "set"):
                return      # results/errors for our own requests go to their waiters
            self.iqs += 1
            if iq["to"].user.startswith("bot"):
                iq.reply(clear=True).send()
            else:
                r = iq.reply(clear=True)
                r["error"]["type"] = "cancel"
                r["error"]["condition"] = "item-not-found"
                r.send()

        async def start(self, timeout=10):
            self.connect()
            try:
                await asyncio.wait_for(self.online.wait(), timeout)
            except asyncio.TimeoutError:
                self._fail("no handshake within %d s" % timeout)
            finally:
                self.cancel_connection_attempt()
            if self.failed:
                self.close()
                raise CaseFailed("component %s/%s: %s" % (self.boundjid, self.tag, self.failed))

        def send_body(self, frm, to, body, mtype="chat"):
            self.make_message(mto=to, mfrom=frm, mbody=body, mtype=mtype).send()

        async def iq_get(self, frm, to, payload, timeout=10):
            """Send an iq get with the given payload element; returns the
            response stanza (result or error; never raises on type='error')."""
            iq = self.Iq()
            iq["type"] = "get"
            iq["to"] = to
            iq["from"] = frm
            iq.append(payload)
            from slixmpp.exceptions import IqError
            try:
                return await iq.send(timeout=timeout)
            except IqError as e:
                return e.iq

        def close(self):
            """Drop the TCP connection at once, like a crashed process."""
            self.dead = True
            self.cancel_connection_attempt()
            if self.transport:
                self.abort()

    return EchoComponent


def error_condition(stanza):
    """The RFC 6120 defined condition of an error stanza, or None."""
    err = stanza.xml.find("{%s}error" % stanza.namespace)
    if err is None:
        return None
    for child in err:
        if child.tag.startswith("{%s}" % NS_STANZAS) and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return None


def el(tag, ns):
    return ET.Element("{%s}%s" % (ns, tag))
