"""The worker process: one per client, the HTTP/CSTP dialogue and the data path (TLS and DTLS),
sandboxed after login (docs/architecture.md).
"""
