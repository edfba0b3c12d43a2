"""The hostd command line."""
