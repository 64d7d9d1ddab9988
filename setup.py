"""The one compiled part: the worker's per-packet core (appliance/vpn/native/_fastpath.c),
built against the system OpenSSL (libssl-dev) at ``pip install -e .`` time. ``optional``:
where it cannot be built the install goes on and the pure-Python data path runs instead."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "appliance.vpn.native._fastpath",
    sources=["appliance/vpn/native/_fastpath.c"],
    libraries=["crypto"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers"],
    optional=True,
)])
