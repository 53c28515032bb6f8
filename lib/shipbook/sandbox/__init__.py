"""The local twin of production. Imported by the CLI and tests only, never by the release path."""
