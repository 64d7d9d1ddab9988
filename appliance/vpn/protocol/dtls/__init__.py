"""DTLS, sans-IO: records, the handshake (PSK and certificate), and the pre-draft 'legacy' DTLS
that AnyConnect-era clients resume.
"""
