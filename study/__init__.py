"""The preference study (paper section 5.1): prepare stimuli, serve the forced-choice page, export votes."""

# Here rather than in study.db so that the CLI can show it without importing SQLAlchemy.
DEFAULT_DB_URL = "sqlite:///votes.db"
