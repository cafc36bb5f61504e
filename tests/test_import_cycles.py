"""The project's modules import one way: no import cycle, and a fast-path launch validates without RLlib.

The import graph is read from the source (ast), not by importing: every ``import marl_net...`` and
``from marl_net... import ...`` (absolute or relative), at module level or inside a function, is an
arrow; ``if TYPE_CHECKING:`` blocks are not (they never run). ``envs/`` and ``policies/`` are
installed as ``marl_net.envs`` and ``marl_net.policies`` (setup.cfg's ``package_dir``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"marl_net": ROOT / "marl_net", "marl_net.envs": ROOT / "envs", "marl_net.policies": ROOT / "policies"}


def project_modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (its file, whether it is a package's ``__init__``)."""
    modules: dict[str, tuple[Path, bool]] = {}
    for package, folder in PACKAGES.items():
        for file in sorted(folder.rglob("*.py")):
            parts = list(file.relative_to(folder).with_suffix("").parts)
            is_init = parts[-1] == "__init__"
            if is_init:
                parts = parts[:-1]
            modules[".".join([package, *parts])] = (file, is_init)
    return modules


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_block(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a ``from package import name`` names the submodule
    ``package.name`` where that is a module, else the package itself)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (file, is_init) in modules.items():
        here = name if is_init else name.rpartition(".")[0]
        for node in _imports(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:  # import a.b.c of a non-module name: its module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) per strongly connected
    component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_loop(graph, component) for component in components]


def _loop(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest import loop through the alphabetically first module of ``component``."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth first, inside the component, until an arrow leads back to start
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    loop = [v]
                    while loop[-1] != start:
                        loop.append(parents[loop[-1]])
                    return loop[::-1] + [start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no loop through {start} in {sorted(component)}")


def test_the_graph_sees_the_imports_that_matter():
    """The reader finds module-level, function-level and ``from package import module`` imports
    (else a cycle could hide from the test below)."""
    graph = import_graph()
    assert "marl_net.features" in graph["marl_net.observations"]  # module level
    assert "marl_net.fast.ppo" in graph["marl_net.experiment"]  # inside a function
    assert "marl_net.accumulators" in graph["marl_net.core"]  # from marl_net import accumulators
    assert "marl_net.policies.fused_actor_critic" in graph["marl_net.fast.ppo"]  # a package_dir package
    assert len(graph) > 60


def test_cycle_finder_names_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_the_projects_modules():
    found = cycles(import_graph())
    assert not found, "import cycles (break each with a leaf module both sides import): " + "; ".join(
        " -> ".join(c) for c in found)


def test_validating_a_fast_path_launch_does_not_import_rllib():
    """``validate_launch`` of a fast-path config (with an RLlib-only ppo key, which it must
    recognise and ignore) leaves RLlib unimported: the RLlib setting names are a leaf's list."""
    code = (
        "import sys, json\n"
        "from marl_net.experiment import validate_launch\n"
        "out = validate_launch({'path': 'fast', 'env': {'layers': [4, 8, 2]},\n"
        "                       'ppo': {'lr': {'grid_search': [1e-3, 3e-4]}, 'num_env_runners': 2}})\n"
        "print(json.dumps([out['path'], sorted(m for m in sys.modules if m.startswith('ray'))]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    path, ray_modules = json.loads(proc.stdout.strip().splitlines()[-1])
    assert path == "fast"
    assert not [m for m in ray_modules if m.startswith("ray.rllib")], ray_modules


def test_rllib_setting_names_match_rllib():
    """The leaf's written-out list of PPOConfig settings is what RLlib's own setters accept."""
    from ray.rllib.algorithms.ppo import PPOConfig

    from marl_net.launch_keys import RLLIB_PPO_SETTINGS
    from marl_net.rllib.algo import _setters

    assert set(_setters(PPOConfig())) == RLLIB_PPO_SETTINGS
