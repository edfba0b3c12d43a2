"""The README's example: it is example.py verbatim, and it works as the README says."""

from __future__ import annotations

import base64
import re
import types
from pathlib import Path
from typing import Any

import webtest

from singlemalt import Action, Denied, Identity, PasswordHasher, Scope, SingleMalt, Target

PACKAGE = Path(__file__).resolve().parents[2] / "singlemalt"
MARKER = "<!-- example: singlemalt/example.py -->"


def readme_example() -> str:
    readme = (PACKAGE / "README.md").read_text()
    match = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", readme, re.DOTALL)
    assert match, "the README must contain the example block after its marker"
    return match.group(1)


def test_readme_includes_example_py_verbatim() -> None:
    assert readme_example() == (PACKAGE / "example.py").read_text()


def load_readme_example() -> Any:
    module = types.ModuleType("readme_example")
    exec(compile(readme_example(), "README.md", "exec"), module.__dict__)  # noqa: S102
    return module


def auth(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": "Basic " + raw}


def exercise(example: Any, hasher: PasswordHasher) -> None:
    """What the README promises, plus every branch of its authorizer."""
    middleware = example.make_app(hasher)
    assert isinstance(middleware, SingleMalt)
    client = webtest.TestApp(middleware, lint=True)

    assert client.get("/notes/alice/todo").text == "buy milk\n(seen by anonymous)\n"
    client.get("/notes/alice/diary", status=401)
    client.get("/notes/alice/diary", headers=auth("alice", "nope"), status=401)
    seen = client.get("/notes/alice/diary", headers=auth("alice", "wonderland"))
    assert seen.text == "dear diary\n(seen by alice)\n"
    client.put("/notes/alice/todo", params=b"x", status=401)
    client.get("/elsewhere", status=400)
    client.get("/notes/alice/../bob/x", status=400)
    client.get("/notes/alice/todo", headers={"Authorization": "Bearer smt_" + "a" * 12 + "_" + "b" * 43},
               status=401)
    client.put("/notes/alice/todo", params=b"buy bread", headers=auth("alice", "wonderland"))
    assert example.NOTES["alice/todo"] == "buy bread"
    client.head("/notes/alice/todo")

    bob = Identity("bob", "password", Scope.WRITE)
    write = Target("alice/todo", Action.WRITE, "write-note")
    assert example.authorize_notes(bob, write) == Denied(
        "only the owner may change this note", reveal=True)
    assert example.authorize_notes(bob, Target("alice/diary", Action.READ, "read-note")) == Denied(
        "private note")


def test_the_readme_example_runs(hasher: PasswordHasher) -> None:
    exercise(load_readme_example(), hasher)


def test_the_example_module_runs(hasher: PasswordHasher) -> None:
    from singlemalt import example

    saved = dict(example.NOTES)
    try:
        exercise(example, hasher)
    finally:
        example.NOTES.clear()
        example.NOTES.update(saved)
