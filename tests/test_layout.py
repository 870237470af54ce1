"""The tree shows the architecture: the core imports no transport, and no module imports another in a cycle."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "django_realtime"
#: The transports: each may use the core, neither the other.
TRANSPORTS = {"sse", "websocket"}
#: What wires the transports to a project: the package's public names (``event_stream`` is an SSE view
#: decorator) and its URLconf.  Everything else is the core, which imports no transport.
WIRING = {"", "urls"}


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path):
    """Return the django_realtime modules *path* imports, at any depth of its code (lazy imports too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t.startswith("django_realtime") and t != "django_realtime")
    return found


def graph():
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}
    edges = {}
    for name, path in modules.items():
        # "from . import protocol" names a module; "from .eventlog import Item" names a module and a symbol.
        edges[name] = {target for target in imports(path) if target in modules and target != name}
    return edges


def _part(name):
    """Return the top-level part of the package that *name* belongs to (``hub``, ``sse``...)."""
    return name.split(".")[1] if "." in name else ""


def test_core_modules_import_no_transport():
    edges = graph()
    core = {name for name in edges if _part(name) not in TRANSPORTS | WIRING}
    assert {"publishing", "hub", "streams", "protocol", "client_publish", "backends"} <= {_part(n) for n in core}
    for name in sorted(core):
        transports = {t for t in edges[name] if _part(t) in TRANSPORTS}
        assert not transports, f"{name}, a core module, imports {sorted(transports)}"


def test_a_transport_imports_no_other_transport():
    for name, targets in graph().items():
        if _part(name) in TRANSPORTS:
            others = {t for t in targets if _part(t) in TRANSPORTS - {_part(name)}}
            assert not others, f"{name} imports {sorted(others)}"


def test_no_module_imports_another_in_a_cycle():
    edges = graph()
    state = {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycle = path[path.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def _closure(edges, start):
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges[name])
    return seen


def test_the_hub_and_what_it_imports_hold_no_transport_machinery():
    # The fan-out serves both transports: a transport's setting (SSE_SEND_TIMEOUT) or its encoded form of
    # an event (item.sse) belongs in sse/ or websocket/, which hook into the hub (Hub.on_tick, Item.encoded).
    edges = graph()
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}
    named = re.compile(r"(?i)(sse|websocket)(_|$)")
    found = []
    for name in sorted(_closure(edges, "django_realtime.hub")):
        for node in ast.walk(ast.parse(modules[name].read_text())):
            if isinstance(node, ast.Attribute) and named.match(node.attr):
                found.append(f"{name}:{node.lineno} .{node.attr}")
            elif isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "__slots__" for target in node.targets
            ):
                slots = [elt.value for elt in ast.walk(node.value) if isinstance(elt, ast.Constant)]
                found.extend(f"{name}:{node.lineno} slot {slot}" for slot in slots if named.match(str(slot)))
    assert not found, found
