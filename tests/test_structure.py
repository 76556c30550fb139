"""The package's shape: data flows one way (no import cycle) and only the CLI prints."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "promptopt"
# Modules whose job is to talk to a terminal: the CLI, and the scripted server for tests.
TALKERS = {"cli", "testing"}


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__") or "promptopt"
        found[name] = ast.parse(path.read_text(), filename=str(path))
    return found


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """promptopt modules a module imports, at its top or inside a function alike."""
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "promptopt":
            base = node.module.removeprefix("promptopt").lstrip(".")
            names = [f"{base}.{a.name}".lstrip(".") for a in node.names] + [base]
        elif isinstance(node, ast.Import):
            names = [a.name.removeprefix("promptopt.") for a in node.names if a.name.startswith("promptopt.")]
        out.update(n for n in names if n in known)
    return out


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep, [*path, dep])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_module_of_promptopt_imports_itself_back_through_others():
    trees = modules()
    graph = {name: imports(tree, set(trees)) - {name, "promptopt"} for name, tree in trees.items()}
    assert graph["engine"] and graph["optimizers"]  # the walk sees the package's real imports
    assert cycle(graph) is None, " -> ".join(cycle(graph))


def test_the_estimators_are_pure_and_the_statistics_never_reach_a_model_or_a_judge():
    trees = modules()
    graph = {name: imports(tree, set(trees)) - {name, "promptopt"} for name, tree in trees.items()}
    reached, todo = set(), ["stats"]
    while todo:
        for dep in graph[todo.pop()] - reached:
            reached.add(dep)
            todo.append(dep)
    assert graph["estimators"] == set() and "estimators" in reached  # the walk sees stats' imports
    assert not reached & {"models", "judge", "batch", "session", "server", "scoring", "tasks"}, sorted(reached)


def test_every_store_method_the_package_calls_is_on_the_store_boundary_and_the_sql_store_has_them_all(tmp_path):
    import re

    from promptopt.store import ResultsStore, Store

    called = set()
    for path in PKG.rglob("*.py"):
        if path.name != "store.py":
            called |= set(re.findall(r"\bstore\.([a-z_]+)\(", path.read_text()))
    declared = {name for name in vars(ResultsStore) if not name.startswith("_")}
    assert called and called <= declared, sorted(called - declared)
    assert isinstance(Store(f"sqlite:///{tmp_path}/s.db"), ResultsStore)
    sql = [p.name for p in PKG.rglob("*.py") if p.name != "store.py" and "sqlalchemy" in p.read_text()]
    assert sql == []  # no SQL outside the boundary


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_only_the_cli_prints_library_code_reports_through_callbacks():
    offenders = []
    for name, tree in modules().items():
        if name.split(".")[0] in TALKERS:
            continue
        for node in ast.walk(tree):
            call = node.func if isinstance(node, ast.Call) else None
            printed = isinstance(call, ast.Name) and call.id == "print"
            written = (
                isinstance(call, ast.Attribute)
                and call.attr == "write"
                and isinstance(call.value, ast.Attribute)
                and call.value.attr in ("stdout", "stderr")
            )
            if printed or written:
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def test_every_api_name_stays_a_function_after_every_module_is_imported():
    import importlib

    import promptopt

    for name in modules():
        if name != "promptopt":
            importlib.import_module(f"promptopt.{name}")  # importing a submodule sets it on the package
    shadowed = [
        n
        for n in promptopt.API
        if not callable(getattr(promptopt, n)) or isinstance(getattr(promptopt, n), type(promptopt))
    ]
    assert shadowed == []


def test_bundled_entries_stay_bundled_whichever_registry_is_read_first():
    import subprocess
    import sys

    code = (
        "import promptopt; s = promptopt.available_strategies(); a = promptopt.available_answer_types(); "
        "o = promptopt.available_optimizers(); print(len(s), 'multiple_choice' in a, 'bootstrap' in o)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["11", "True", "True"]


def test_each_report_section_is_one_file_holding_its_rows_computation_and_tables():
    """A section is one file of promptopt/sections: its row model, its computation and its
    rendering are defined there, and the report's JSON fields are the sections' keys, in their
    order, beside the report's own settings, warnings and summary."""
    from promptopt.results import Report
    from promptopt.sections import no_tables, registered

    sections = registered()
    assert len(sections) >= 20  # the walk sees every bundled section
    for section in sections:
        home = section.compute.__module__
        assert home.startswith("promptopt.sections.") and section.row.__module__ == home, section.key
        assert section.render is no_tables or section.render.__module__ == home, section.key
        assert Report.model_fields[section.key].annotation == list[section.row]
    keys = [s.key for s in sections]
    assert list(Report.model_fields)[: keys.index("runs")] == keys[: keys.index("runs")]  # the JSON's order
    own = {"settings", "warnings", "summary"}  # the report's own fields, beside its sections'
    assert set(Report.model_fields) == set(keys) | own
