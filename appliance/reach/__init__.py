"""Reachability from the Internet: port mapping on the home router (UPnP IGD, NAT-PMP, PCP),
where the appliance stands (CGNAT, double NAT, no mapping protocol), dynamic DNS and ACME.

The wire formats of NAT-PMP and PCP are sans-IO codecs here (natpmp.py, pcp.py); sockets,
HTTP and the UPnP library live in thin shells around them.  docs/reachability.md explains
the pieces and what they rely on.
"""
