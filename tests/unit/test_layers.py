"""The package's folders are layers and imports run one way: no module imports a higher layer, and no
import loop exists; the Celery worker builds the writer, not the Memory facade; reading settings and
facts loads no torch."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# where each package's source lies (workers/ and adapters/ install as agentmem.workers and agentmem.adapters)
SOURCES = {"agentmem": ROOT / "agentmem", "agentmem.workers": ROOT / "workers", "agentmem.adapters": ROOT / "adapters"}
# lowest first; a module may import its own layer and the ones below
LAYERS = [
    {"facts"},
    {"extract"},
    {"edit"},
    {"storage"},
    {"serving"},
    {"measure"},
    {"writer"},
    {"sleep"},
    {"config", "memory"},
    {"api", "chat", "cli", "client", "logs", "metrics", "workers", "adapters"},
    {"bench"},
    {"__init__", "__main__"},
]


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The agentmem modules `name` imports, anywhere in it (a function's import is a dependency too)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known}
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def upward(g: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, deps in g.items() for b in deps if layer(b) > layer(a))


def loops(g: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles, each as the modules on it (a package imports its __init__'s names, not its submodules)."""
    state, stack, found = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == "open":
                found.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m)
    return found


def reach(g: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for d in g.get(m, ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_every_module_belongs_to_a_layer_and_says_its_job():
    for name, path in modules().items():
        layer(name)  # raises StopIteration for a folder no layer names
        assert ast.get_docstring(ast.parse(path.read_text())), f"{name} has no docstring saying its job"


def test_no_module_imports_a_higher_layer():
    assert upward(graph()) == []


def test_there_is_no_import_loop():
    assert loops(graph()) == []


def test_the_checks_catch_an_upward_import_and_a_loop():
    g = {"agentmem.edit.memit": {"agentmem.writer.editor"}, "agentmem.writer.editor": {"agentmem.edit.memit"}}
    assert upward(g) == ["agentmem.edit.memit -> agentmem.writer.editor"]
    assert loops(g) == [["agentmem.edit.memit", "agentmem.writer.editor", "agentmem.edit.memit"]]


def test_the_celery_worker_builds_the_writer_not_the_facade():
    reached = reach(graph(), "agentmem.workers.app")
    assert "agentmem.writer.service" in reached
    assert "agentmem.memory" not in reached


def test_settings_facts_the_command_line_and_the_http_client_load_no_torch():
    code = ("import sys, agentmem, agentmem.config, agentmem.facts, agentmem.facts.policy, agentmem.cli, "
            "agentmem.storage.ledger, agentmem.client; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
