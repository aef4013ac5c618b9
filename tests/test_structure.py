"""The tree is the architecture: imports point one way, modules and functions stay small,
the method core needs torch only, and every command-line error exits non-zero."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "toplib"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50  # docstring excluded
MAX_PARAMETERS = 7  # self/cls excluded, *args and **kwargs included
# Each sub-package may import only from itself and from lower ranks.
RANKS = {"core": 0, "hf": 1, "data": 1, "train": 2, "infer": 2, "export": 3, "viz": 3, "search": 3, "bench": 4, "cli": 5,
         "__main__": 6, "__init__": 6}


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def subpackage(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def toplib_imports(path: Path) -> set[str]:
    """Sub-packages of toplib that a module imports (absolute or relative)."""
    tree, found = ast.parse(path.read_text()), set()
    depth = len(path.relative_to(PACKAGE).parts) - 1  # folders below toplib/
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("toplib."):
                found.add(node.module.split(".")[1])
            elif node.level > 0:
                parts = list(path.relative_to(PACKAGE).parts[:-1])[:depth - node.level + 1]
                target = parts + (node.module.split(".") if node.module else [])
                found.add(target[0] if target else (node.names[0].name))
    return found


def test_imports_point_one_way():
    bad = []
    for path in modules():
        own = subpackage(path)
        for other in toplib_imports(path) - {own}:
            if RANKS.get(other, 99) >= RANKS[own]:
                bad.append(f"{path.relative_to(ROOT)} imports toplib.{other}")
    assert not bad, "\n".join(bad)


def test_no_module_over_the_limit():
    long = {str(p.relative_to(ROOT)): n for p in modules()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def _functions():
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path, node


def _body_lines(node) -> int:
    first = node.body[0]
    is_doc = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant)
    start = node.body[1].lineno if is_doc and len(node.body) > 1 else first.lineno
    return node.end_lineno - start + 1


def _parameters(node) -> int:
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    names = names[1:] if names and names[0] in ("self", "cls") else names
    return len(names) + (a.vararg is not None) + (a.kwarg is not None)


def test_functions_are_short_with_few_parameters():
    bad = [f"{p.relative_to(ROOT)}:{n.lineno} {n.name}: {_body_lines(n)} lines, "
           f"{_parameters(n)} parameters" for p, n in _functions()
           if _body_lines(n) > MAX_FUNCTION_LINES or _parameters(n) > MAX_PARAMETERS]
    assert not bad, "\n".join(bad)


DUPLICATE_WINDOW = 6  # significant lines: code with whitespace folded, no docs or imports


def _significant_lines(path: Path) -> list[tuple[str, int]]:
    src = path.read_text()
    docs = set()
    for node in ast.walk(ast.parse(src)):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)):
            docs.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = [(" ".join(line.split()), i) for i, line in enumerate(src.splitlines(), 1)]
    skipped = ("#", "import ", "from ")
    return [(s, i) for s, i in lines
            if s.strip("()[]{}:,") and i not in docs and not s.startswith(skipped)]


def test_no_block_of_code_stands_twice():
    """One home for each piece of logic: no six significant lines stand twice in toplib/."""
    seen: dict[tuple, list[str]] = {}
    for path in modules():
        lines = _significant_lines(path)
        for k in range(len(lines) - DUPLICATE_WINDOW + 1):
            block = tuple(s for s, _ in lines[k:k + DUPLICATE_WINDOW])
            seen.setdefault(block, []).append(f"{path.relative_to(ROOT)}:{lines[k][1]}")
    twice = [places for places in seen.values() if len(places) > 1]
    assert not twice, twice[:5]


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"transformers", "pandas", "matplotlib", "seaborn", "sklearn"}:
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
import pkgutil, importlib, toplib.core
for m in pkgutil.iter_modules(toplib.core.__path__):
    importlib.import_module("toplib.core." + m.name)
assert "transformers" not in sys.modules and "pandas" not in sys.modules
print("ok")
"""


def test_core_imports_with_torch_only():
    out = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


TOPLIB = Path(sys.executable).with_name("toplib")


PYTHON_M = [sys.executable, "-m", "toplib"]


@pytest.mark.parametrize("command, argv, status", [
    (PYTHON_M, ["finetune", "--task", "nope", "--output-dir", "x"], 2),  # a ValueError
    (PYTHON_M, ["evaluate", "no/such/checkpoint"], 2),
    (PYTHON_M, ["prune", "--task", "cola"], 2),  # argparse: --teacher, --output-dir missing
    (PYTHON_M, ["--help"], 0),
    ([str(TOPLIB)], ["evaluate", "no/such/checkpoint"], 2),
    ([str(TOPLIB)], ["no-such-command"], 2),
], ids=["python -m: bad task", "python -m: no checkpoint", "python -m: missing flags",
        "python -m: help", "toplib: no checkpoint", "toplib: unknown command"])
def test_command_line_exit_status(command, argv, status, tmp_path):
    if not os.path.exists(command[0]):
        pytest.skip(f"{command[0]} is not installed")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run(command + argv, capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert out.returncode == status, out.stderr
    if status:
        assert "error" in out.stderr
