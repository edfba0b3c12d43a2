"""The hg pool: Mercurial's hgweb, checked and hooked for the push log."""
