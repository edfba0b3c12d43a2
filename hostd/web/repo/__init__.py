"""The repository pages: readers of git and Mercurial repositories, their pages and templates."""
