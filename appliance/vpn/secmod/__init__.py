"""The sec-mod process: the only one holding the server key and the user database; it runs logins
and signs cookies (docs/architecture.md).
"""
