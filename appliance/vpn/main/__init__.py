"""The main process: listens, forks workers, admits CONNECTs, owns the tun devices, addresses,
routes, bans and the occtl socket (docs/architecture.md).
"""
