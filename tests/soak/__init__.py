"""Long-running reliability checks (issue #11): the soak driver behind ``make soak``."""
