"""RADIUS: the radiusclient configuration, authentication and accounting."""
