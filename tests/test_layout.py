"""The layout is the data flow: each step imports only from the steps before it.

Every import of every module under ``src/faceverify`` is checked (those inside functions
and those for type checkers too) against :data:`LAYERS`, the order in which an image
travels: decode, faces (detect, align), preprocess, model, runtime, embed, compare, then the
gallery, photo libraries (clustering), video, evaluation and training, then the HTTP service, with the
CLI on top. A package added later is checked once it has a place in :data:`LAYERS`; until then
only the imports into it are left unchecked.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "faceverify"

#: Each module may import from its own layer and the ones before it.
LAYERS = (
    (
        "faceverify",
        "faceverify.errors",
        "faceverify.onnx_proto",
        "faceverify.checks",
        "faceverify.paths",
        "faceverify.device",
        "faceverify.distributed",
        "faceverify.dlib_format",
        "faceverify.extras",
        "faceverify.vectors",
    ),
    ("faceverify.decode",),
    ("faceverify.faces",),
    ("faceverify.preprocess",),
    ("faceverify.models",),
    ("faceverify.runtime",),
    ("faceverify.photos", "faceverify.embed", "faceverify.embedding_files"),
    ("faceverify.compare",),
    ("faceverify.gallery",),
    ("faceverify.cluster",),
    ("faceverify.video",),
    ("faceverify.evaluate",),
    ("faceverify.data",),
    ("faceverify.train",),
    ("faceverify.service",),
    ("faceverify.cli", "faceverify.__main__", "faceverify.doctor"),
)
#: The one import against the flow: a built model comes with the threshold stored for it,
#: and that store lives beside threshold selection (it stands on paths and compare.roc).
AGAINST_THE_FLOW = {("faceverify.runtime.build", "faceverify.compare.calibration")}
#: The facade names every layer (lazily); it is the top, whatever its place in the tree.
FACADE = "faceverify"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The faceverify modules ``path`` imports, wherever the import statement stands."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; faceverify imports absolutely"
            base = node.module or ""
            # `from faceverify.cli import embed` imports the module faceverify.cli.embed
            imported.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return {name for name in imported if name == "faceverify" or name.startswith("faceverify.")}


def _layer(module: str) -> int | None:
    for position, names in enumerate(LAYERS):
        for name in names:
            if module == name or (name != "faceverify" and module.startswith(f"{name}.")):
                return position
    return None


def test_every_import_follows_the_flow() -> None:
    modules = _modules()
    against = []
    for module, path in modules.items():
        own = _layer(module)
        if module == FACADE or own is None:
            continue
        for imported in sorted(_imports(path, modules)):
            theirs = _layer(imported)
            if theirs is not None and theirs > own and (module, imported) not in AGAINST_THE_FLOW:
                against.append(f"{module} imports {imported}")
    assert against == []


def test_cli_commands_share_common_and_never_import_main() -> None:
    modules = _modules()
    cli = {m: _imports(p, modules) for m, p in modules.items() if m.startswith("faceverify.cli.")}
    assert not any("faceverify.cli.main" in imported for imported in cli.values())
    assert not {m for m in cli["faceverify.cli.common"] if m.startswith("faceverify.cli.")}
    for module, imported in cli.items():
        if module != "faceverify.cli.main":
            siblings = {m for m in imported if m.startswith("faceverify.cli.")}
            assert siblings <= {"faceverify.cli.common"}, module


def test_every_package_says_what_it_may_import() -> None:
    for init in sorted(SRC.glob("*/__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "May import" in docstring, f"{init}: say what lives here and what it may import"


#: The face detector is reached through the photo step only, so every job finds the same faces.
DETECTOR_CALLS = ("detect_faces", "get_detector")
DETECTOR_HOMES = ("faceverify.photos", "faceverify.faces")


def test_only_the_photo_step_calls_the_face_detector() -> None:
    callers = []
    for module, path in _modules().items():
        if module in DETECTOR_HOMES or module.startswith("faceverify.faces."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            named = {a.name for a in node.names} if isinstance(node, ast.ImportFrom) else set()
            called = node.attr if isinstance(node, ast.Attribute) else None
            if named & set(DETECTOR_CALLS) or called in DETECTOR_CALLS:
                callers.append(module)
    assert callers == []


def _runtime_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The faceverify modules ``path`` imports when it runs (type-checking imports aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            imported.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return {name for name in imported if name in modules and name != "faceverify"}


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {module: _runtime_imports(path, modules) - {module} for module, path in modules.items()}
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            cycles.append([*trail[trail.index(module) :], module])
            return
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*trail, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []
