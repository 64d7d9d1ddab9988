"""TLS, sans-IO: our own record layer, the handshake over memory BIOs, priority strings and the
CPU's AES question.
"""
