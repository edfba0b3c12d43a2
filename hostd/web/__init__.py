"""The web pool: the repository pages people browse."""
