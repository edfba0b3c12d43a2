"""The files hostd renders for HAProxy into the run directory: templates in, atomic writes out.

``shards.cfg`` (:mod:`hostd.ops.routes`) and ``peers.cfg``
(:mod:`hostd.ops.peers`) are rendered from templates in ``haproxy/``, whose
``##`` lines explain the template and are not copied; ``repos.map`` too is
written here. HAProxy reads them at start and at every reload, so a reader
must never see half of one::

    text = template(TEMPLATE).replace("@SHARD@", name)
    write_atomically(settings.run_dir / "shards.cfg", text)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def template(path: Path) -> str:
    """A template of ``haproxy/`` without its ``##`` lines, and without blank lines at either end."""
    return "".join(line for line in path.read_text().splitlines(keepends=True)
                   if not line.startswith("##")).strip("\n")


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
