#!/usr/bin/python3
"""t_interop_ejabberd: fedhub federating with ejabberd 23.01 (see lib/interop.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import interop  # noqa: E402

interop.main("ejabberd")
