#!/usr/bin/python3
"""t_tls_ejabberd: fedhub federating with ejabberd 23.01 over TLS only, certificates and
SASL EXTERNAL (see lib/tls_interop.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import tls_interop  # noqa: E402

tls_interop.main("ejabberd")
