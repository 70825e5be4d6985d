"""Users, password log-in, sessions and roles."""
