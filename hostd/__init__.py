"""hostd: git and Mercurial hosting behind HAProxy, guarded by singlemalt.

The packages are floors that only look down: ``cli`` over ``serve`` (what
gunicorn runs) and ``ops`` (running a stack), over the pool apps ``git``,
``hg`` and ``web``, over ``guard``, over ``store``, over the leaves
(``settings``, ``names``, ``logsetup``, ``responses``). README.md has the map.
"""
