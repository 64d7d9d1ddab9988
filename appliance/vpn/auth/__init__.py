"""Authentication back ends (plain, PAM, certificate, RADIUS), run by sec-mod."""
