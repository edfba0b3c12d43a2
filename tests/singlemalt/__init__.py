"""Tests of the singlemalt middleware package, one module per source module."""
