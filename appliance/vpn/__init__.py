"""The OpenConnect server: a drop-in for ocserv, split the way ocserv splits its processes.

Process map (which process runs a file; docs/architecture.md draws the data path):

* ``main/``    the privileged main process: listeners, has a worker forked per client
  (by the zygote, ``zygote.py``: a copy of main that runs nothing else), admits
  CONNECTs, owns TUN devices, leases, routes, bans, scripts and the occtl socket
  (``server.py`` is the event loop; ``management.py`` what occtl and the web UI see).
* ``secmod/``  the security module: the only holder of the server key and the user
  database; runs TLS handshakes for the workers, logins (``auth/``) and cookies.
* ``auth/``    authentication back ends run by sec-mod: ``base`` (shared shapes),
  ``plain``, ``pam``, ``cert``, ``groups``, ``registry`` (the factory), ``radius/``.
* ``worker/``  one unprivileged, sandboxed process per client: the HTTP/XML dialogue,
  CSTP and DTLS data path (``dialogue.py``, ``datapath.py``, ``dtlschannel.py``).
* ``control/`` the occtl control protocol: ``schema`` (records), ``protocol`` (sans-IO
  core), ``server`` (main's socket shell); ``occtl/`` is the command-line client.
* shared by every process: ``config/`` (ocserv.conf), ``ipc.py`` (messages between the
  processes), ``passwd.py`` (the ocpasswd file); ``ocpasswd.py`` is its command line.

Layer rule: ``protocol/`` (with ``protocol/tls/`` and ``protocol/dtls/``) is sans-IO -
bytes in, events and bytes out - and imports nothing but itself; ``config``, ``ipc`` and
``passwd`` import only ``protocol``; process packages import those layers and, where a
process hands work to its child, the child's entry point (main starts sec-mod and workers).
No import cycles anywhere (tests/unit/test_layout.py checks every import as AST).

Entry points: ``python3 -m appliance.vpn`` (the server), ``python3 -m appliance.vpn.occtl``
and ``python3 -m appliance.vpn.ocpasswd``.
"""
