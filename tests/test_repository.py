"""The repository's habits, held: ruff check and ruff format clean; nothing points outside the repository;
ARCHITECTURE.md's links resolve, its formula table links every implementation to its reference and back, and
its layers are the direction imports really go."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlp_xp import errors

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = (ROOT / "ARCHITECTURE.md").read_text()
LINK = re.compile(r"\[([^\]]+)\]\(([^)#\s]+)\)")


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist): every file
        return [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts and ".venv" not in p.parts[0]]


def _ruff() -> list[str]:
    if shutil.which("ruff"):
        return ["ruff"]
    try:
        import ruff  # noqa: F401
    except ImportError:
        pytest.skip("ruff is not installed (it comes with the test extra: pip install -e '.[test]')")
    return [sys.executable, "-m", "ruff"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_is_clean(command):
    r = subprocess.run([*_ruff(), *command, "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_nothing_points_outside_the_repository():
    # spelled in pieces, so that this file does not match itself
    outside = ["../" + "shared", "shared/" + "reference", "DESIGN" + ".md", "/work/" + "main"]
    hits = []
    for path in _tracked_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        hits += [f"{path.relative_to(ROOT)}: {word}" for word in outside if word in text]
    assert not hits, "\n".join(hits)


def _defines(path: Path, name: str) -> bool:
    text = path.read_text()
    name = name.split(".")[-1].removesuffix("()")
    if path.suffix == ".py":
        pattern = rf"^\s*(def|class)\s+{name}\b|^{name}\s*[:=]"
    else:  # C++ and CUDA: a return type or a keyword before the name, then ( or <
        pattern = rf"((\b\w+|\))[\s*&]+|struct\s+|#define\s+){name}\s*[(<]"
    return re.search(pattern, text, re.M) is not None


def test_every_link_of_the_architecture_resolves():
    links = LINK.findall(ARCHITECTURE)
    assert len(links) > 50
    for text, target in links:
        path = ROOT / target
        assert path.exists(), f"ARCHITECTURE.md links {target}, which does not exist"
        code = re.fullmatch(r"`([\w.]+(?:\(\))?)`", text)
        if code and path.is_file() and not re.search(r"\.(py|cpp|cuh?|md)$", code.group(1)):
            assert _defines(path, code.group(1)), f"{target} does not define {code.group(1)}"


def _formula_rows() -> list[tuple[list, list]]:
    section = ARCHITECTURE.split("## Where each formula lives")[1].split("\n## ")[0]
    rows = []
    for line in section.splitlines():
        cells = line.split("|")[1:-1]
        if len(cells) != 5 or cells[0].strip() in ("formula", "---"):
            continue
        references = [(t, p) for t, p in LINK.findall(cells[1]) if p.startswith("mlp_xp/reference/")]
        implementations = [(t, p) for cell in cells[2:] for t, p in LINK.findall(cell)]
        rows.append((references, implementations))
    return rows


def _docstring(path: Path, name: str) -> str:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return ast.get_docstring(node) or ""
    raise AssertionError(f"{path} has no {name}")


def test_every_formula_links_its_implementations_and_they_link_back():
    rows = [row for row in _formula_rows() if row[0]]
    assert len(rows) >= 14
    for references, implementations in rows:
        assert implementations, references
        for ref_text, ref_path in references:
            doc = _docstring(ROOT / ref_path, ref_text.strip("`"))
            for _, impl_path in implementations:
                assert impl_path in doc.replace("\n", " ") or Path(impl_path).name in doc, (
                    f"the reference {ref_text} does not name its implementation {impl_path}"
                )
                assert ref_path in (ROOT / impl_path).read_text(), f"{impl_path} does not name its reference {ref_path}"


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The mlp_xp modules a file imports at run time (imports under TYPE_CHECKING are hints)."""
    tree = ast.parse(path.read_text())
    hinted = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in hinted or not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.startswith("mlp_xp"):
            found |= {f"{target}.{a.name}" for a in node.names} if not node.module else {target}
    return found


def _layers() -> dict[str, int]:
    """module -> layer number, from ARCHITECTURE.md's numbered list (a folder's link stands for its package)."""
    section = ARCHITECTURE.split("## Layers")[1].split("\n## ")[0]
    layers, number = {}, 0
    for line in section.splitlines():
        item = re.match(r"(\d+)\. ", line)
        number = int(item.group(1)) if item else number
        for _, target in LINK.findall(line):
            if target.startswith("mlp_xp/"):
                layers[_module_of(ROOT / target)] = number
    return layers


def _layer_of(module: str, layers: dict[str, int]) -> int | None:
    while module:
        if module in layers:
            return layers[module]
        module = module.rpartition(".")[0]
    return None


def test_imports_go_one_way_down_the_layers():
    layers = _layers()
    assert len(set(layers.values())) == 12
    wrong = []
    for path in sorted((ROOT / "mlp_xp").rglob("*.py")):
        module = _module_of(path)
        if module in ("mlp_xp", "mlp_xp.__main__"):
            continue  # the package's front doors: it re-exports from every layer, `python -m mlp_xp` runs the CLI
        mine = _layer_of(module, layers)
        assert mine is not None, f"{module} has no layer in ARCHITECTURE.md"
        for target in _imports(path):
            theirs = _layer_of(target, layers)
            same_package = _layer_of(target, layers) == mine and target.split(".")[:2] == module.split(".")[:2]
            if theirs is not None and theirs <= mine and not same_package:
                wrong.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    assert not wrong, "\n".join(wrong)


def test_install_hints_name_the_extras_of_pyproject():
    """Every hint names an extra's packages (mlp_xp itself is not on PyPI): they must be pyproject.toml's."""
    tomllib = pytest.importorskip("tomllib")  # (Python 3.11 on)
    with open(ROOT / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    for name in ("test", "bench"):  # (the developers' extras: no hint names them)
        extras.pop(name)
    assert errors.EXTRAS == extras
    assert (
        errors.install_hint("plot") == "pip install 'matplotlib>=3.5' (or, in mlp_xp's folder, pip install '.[plot]')"
    )
    stale = [
        p.name
        for p in (ROOT / "mlp_xp").rglob("*.py")
        if "mlp-xp[" in p.read_text().replace("``pip install 'mlp-xp[plot]'``", "")
    ]
    assert stale == []  # (the one mention left: errors.install_hint's docstring, saying why not)
