"""Infrastructure shared by the domain packages: settings, database, templates, sessions."""
