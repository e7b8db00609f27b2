"""The layers, checked from the source: dependencies point down only and no two packages import each other."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "pretrain", "sandbox", "tasks", "checkpoint_hub", "common")
# what each package may import, besides itself (the layer diagram of DESIGN.md)
ALLOWED = {
    "harness": {"pretrain", "sandbox", "tasks", "checkpoint_hub", "common"},
    # pretrain reads the suites (decontamination against the harness's own registry): tasks never imports pretrain
    "pretrain": {"tasks", "checkpoint_hub", "common"},
    "sandbox": {"common"},
    "tasks": {"common"},
    "checkpoint_hub": {"common"},
    "common": set(),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


def package_graph() -> dict[str, dict[str, set[str]]]:
    """package -> {module path: project packages it imports (lazily or not)}"""
    return {pkg: {str(p.relative_to(ROOT)): imports_of(p) - {pkg} for p in (ROOT / pkg).rglob("*.py")}
            for pkg in PACKAGES}


def test_every_import_points_down():
    bad = [f"{module} imports {dep}" for pkg, modules in package_graph().items()
           for module, deps in modules.items() for dep in deps if dep not in ALLOWED[pkg]]
    assert not bad, "\n".join(bad)


def test_no_two_packages_import_each_other():
    uses = {pkg: set().union(*modules.values()) for pkg, modules in package_graph().items()}
    cycles = [(a, b) for a in PACKAGES for b in uses[a] if a in uses[b]]
    assert not cycles, cycles


def test_nothing_below_harness_imports_it():
    offenders = [m for pkg in ("pretrain", "sandbox", "tasks", "checkpoint_hub", "common")
                 for m, deps in package_graph()[pkg].items() if "harness" in deps]
    assert offenders == []


def test_the_worker_stays_standard_library_only():
    """sandbox/worker/ is copied whole into the image: its modules import each other (relatively, or as `worker`
    where the package is started as a directory) and the standard library, nothing else."""
    import sys

    modules = sorted((ROOT / "sandbox" / "worker").glob("*.py"))
    assert len(modules) >= 5
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}
        assert names - set(sys.stdlib_module_names) <= {"worker"}, (path.name, names - set(sys.stdlib_module_names))
