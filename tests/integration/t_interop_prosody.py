#!/usr/bin/python3
"""t_interop_prosody: fedhub federating with Prosody 0.12 (see lib/interop.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import interop  # noqa: E402

interop.main("prosody")
