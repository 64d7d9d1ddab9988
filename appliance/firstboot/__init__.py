"""First-boot captive wizard: from a fresh device to a working VPN in a browser.

See docs/firstboot.md.  Entry point: ``python3 -m appliance.firstboot``; building blocks:
:mod:`.setupcode`, :mod:`.network`, :mod:`.subnets`, :mod:`.plan`, :mod:`.certs`,
:mod:`.apply`, :mod:`.app` (Flask), :mod:`.service` (waitress, mDNS, hand-over).
"""
