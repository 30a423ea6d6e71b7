"""The package's layers import downward only (docs/architecture.md), and no code outside
`roadscene.models` decides anything by a model family's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from roadscene.models import list_families

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "roadscene"

# Bottom to top: a module may import its own layer's package and any layer below it.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "paths"),
    ("io",),
    ("schema",),
    ("targets",),
    ("data",),
    ("models",),
    ("train",),
    ("predict",),
    ("metrics",),
    ("report",),
    ("bench", "demo", "serve"),
    ("cli",),
    ("__main__",),
]
LEVEL = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str | None:
    """`roadscene.models.base` -> `models`; the package itself (`roadscene`) -> None."""
    bits = module.split(".")
    return bits[1] if len(bits) > 1 and bits[0] == "roadscene" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute import of `roadscene...` in a file: top level, inside functions and under
    TYPE_CHECKING alike (a hidden import is still a dependency)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] == "roadscene"]


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in _modules()}
    parts.discard("__init__")
    assert parts <= set(LEVEL), f"parts without a layer: {sorted(parts - set(LEVEL))}"


def test_imports_point_down_the_layers() -> None:
    upward = []
    for path in _modules():
        source = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if source == "__init__":
            continue
        for line, module in _imports(path):
            target = _part(module)
            if target is None or target == source:
                continue
            if LEVEL[target] > LEVEL[source] or (
                LEVEL[target] == LEVEL[source] and target != source
            ):
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not upward, "imports that point up (or sideways) the layers:\n" + "\n".join(upward)


def test_the_layer_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "example.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from roadscene.train.config import TrainConfig\n"
        "def f():\n    import roadscene.predict.runner\n",
        encoding="utf-8",
    )
    assert _imports(module) == [(3, "roadscene.train.config"), (5, "roadscene.predict.runner")]


FAMILY_NAMES = set(list_families())


def _family_branches(path: Path, root: Path = PACKAGE) -> list[str]:
    """Comparisons with a family's name (`x == "smolvlm"`, `x in ("flamingo", ...)`) and dicts
    keyed by family names: decisions a family should declare itself."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hits = []
    for node in ast.walk(tree):
        constants: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            constants = [node.left, *node.comparators]
            for operand in node.comparators:
                if isinstance(operand, ast.Tuple | ast.List | ast.Set):
                    constants += operand.elts
        elif isinstance(node, ast.Dict):
            constants = [key for key in node.keys if key is not None]
        names = {c.value for c in constants if isinstance(c, ast.Constant)} & FAMILY_NAMES
        if names:
            hits.append(f"{path.relative_to(root)}:{node.lineno}: {sorted(names)}")
    return hits


def test_no_family_name_branches_outside_models() -> None:
    hits = [
        hit
        for path in _modules()
        if path.relative_to(PACKAGE).parts[0] != "models"
        for hit in _family_branches(path)
    ]
    assert not hits, "decisions by family name outside roadscene.models:\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "code",
    ['if family == "smolvlm":\n    pass\n', 'x = {"flamingo": 1}\n', 'ok = name in ("qwen3vl",)\n'],
)
def test_the_family_branch_check_sees_branches(tmp_path: Path, code: str) -> None:
    module = tmp_path / "probe.py"
    module.write_text(code, encoding="utf-8")
    assert _family_branches(module, root=tmp_path)
