"""fhit: the integration-test harness for fedhub.

Starts real federation peers on loopback, each under a private temporary
directory, and the fedhub under test:

  dnsmasq   127.0.0.2:53, the test domains' SRV and A records (fhit_dns.py).
  Prosody   host pro.fhtest, plaintext or TLS s2s (fhit_peers.py).
  ejabberd  host ejd.fhtest, in a private mount namespace (fhit_peers.py).
  fedhub    the system under test, on a config written here (fhit_hub.py).
  slixmpp   c2s users and XEP-0114 echo components, in this process's asyncio
            loop (fhit_xmpp.py).

The harness itself (port plan, Harness, check(), run_main()) is fhit_base.py,
the test CA fhit_pki.py. This module re-exports all of them, so a script needs
only `import fhit`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fhit_base import *  # noqa: E402,F401,F403
from fhit_pki import *  # noqa: E402,F401,F403
from fhit_dns import *  # noqa: E402,F401,F403
from fhit_peers import *  # noqa: E402,F401,F403
from fhit_hub import *  # noqa: E402,F401,F403
from fhit_xmpp import *  # noqa: E402,F401,F403
from hubproc import SANITIZER, parse_metrics  # noqa: E402,F401



