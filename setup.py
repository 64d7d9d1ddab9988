"""The one compiled part: the worker's per-packet core (appliance/vpn/native/_fastpath.c),
built against the system OpenSSL (libssl-dev) at ``pip install -e .`` time. ``optional``:
where it cannot be built the install goes on and the pure-Python data path runs instead.
OCGATE_NATIVE_BUILD=0 leaves it out: a pure wheel, as the image build needs for a target
whose architecture is not the host's (image/mkimage.py)."""

import os

from setuptools import Extension, setup

NATIVE = os.environ.get("OCGATE_NATIVE_BUILD", "1") != "0"

setup(ext_modules=[] if not NATIVE else [Extension(
    "appliance.vpn.native._fastpath",
    sources=["appliance/vpn/native/_fastpath.c"],
    libraries=["crypto"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers"],
    optional=True,
)])
