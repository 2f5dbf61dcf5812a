"""The code stays ruff-clean and mypy-clean (disallow_untyped_defs), and its tree stays the pipeline."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_ruff() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "src", "tests", "bench", "scripts"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the tree is the pipeline: which package may import which --------------------------

PACKAGE = REPO / "src" / "connsync"


def imported_modules(source: str, module: str) -> set[str]:
    """Every module ``source`` imports, at the top or inside a function, as absolute names;
    ``from package import name`` counts as importing ``package.name`` too."""
    package = module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def modules() -> dict[str, set[str]]:
    """connsync's modules (dotted name) and what each imports."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = imported_modules(path.read_text(encoding="utf-8"), name if parts[-1] != "__init__"
                                     else name + ".__init__")
    return out


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def import_rule_breaches(imports: dict[str, set[str]]) -> list[str]:
    breaches = []
    for module, imported in sorted(imports.items()):
        for target in sorted(imported):
            if (within(module, "connsync.commands") and within(target, "connsync.commands")
                    and target not in ("connsync.commands", module)):
                breaches.append(f"{module} imports {target}: a command module never imports another")
            if within(module, "connsync.validate") and any(
                    within(target, later) for later in ("connsync.reconcile", "connsync.store",
                                                        "connsync.report", "connsync.commands")):
                breaches.append(f"{module} imports {target}: validation runs before plan, store and report")
            if module == "connsync.validate.schema" and target == "connsync.validate.loader":
                breaches.append(f"{module} imports {target}: findings are located by the Declaration's "
                                "own source map, not by parsing again")
            # sops/editor.py is exempt: it runs as sops's editor in its own process and checks the
            # text just typed, the way the loader reads a file; there is no Declaration to hand over.
            if (within(module, "connsync.sops") and module != "connsync.sops.editor"
                    and within(target, "connsync.validate.loader")):
                breaches.append(f"{module} imports {target}: decryption reads the loader's parse, "
                                "handed over with the Declaration")
    return breaches


def test_the_import_rules_hold() -> None:
    imports = modules()
    assert "connsync.commands.apply" in imports and "connsync.validate.rules" in imports
    assert import_rule_breaches(imports) == []


def test_the_import_rules_catch_a_breach() -> None:
    """The checker above is not vacuous: each rule fires on a module that breaks it."""
    imports = {
        "connsync.commands.plan": imported_modules("from connsync.commands.apply import apply\n",
                                                   "connsync.commands.plan"),
        "connsync.commands.show": imported_modules("def f():\n    from . import audit\n",
                                                   "connsync.commands.show"),
        "connsync.validate.discovery": imported_modules("import connsync.store.sqlite\n",
                                                        "connsync.validate.discovery"),
        "connsync.validate.fields": imported_modules("from connsync.reconcile import plan\n",
                                                     "connsync.validate.fields"),
        "connsync.validate.schema": imported_modules("from connsync.validate import loader\n",
                                                     "connsync.validate.schema"),
        "connsync.sops.native": imported_modules("from ..validate.loader import parse\n",
                                                 "connsync.sops.native"),
    }
    breached = {line.split(" ")[0] for line in import_rule_breaches(imports)}
    assert breached == set(imports)


def names_used_on(module: str, path: Path) -> list[str]:
    """The attributes a module reads on its import ``module`` (``schema.check`` -> ``check``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                   and isinstance(node.value, ast.Name) and node.value.id == module})


def test_rules_read_what_the_stages_before_hand_forward() -> None:
    """rules.py runs the stages in order (it loads the files and hands each to the schema stage),
    and otherwise reads the Declaration the schema stage returns: its secret fields and its
    source map, never the loader's parsing or the schema's secret-field lookup again."""
    rules = PACKAGE / "validate" / "rules.py"
    assert names_used_on("loader", rules) == ["load_all"]
    assert names_used_on("schema", rules) == ["check"]


def test_public_names_stay_importable() -> None:
    """What users and plugins import keeps its place whatever the tree inside does."""
    from importlib.metadata import entry_points

    from connsync import providers, sops
    from connsync.store import Store, open_store
    from connsync.testing.store_contract import StoreContract

    stores = {ep.name: ep.load() for ep in entry_points(group="connsync.stores")}
    assert {"sqlite", "postgresql", "awssm"} <= set(stores)
    assert all(isinstance(backend, type) for backend in stores.values())
    assert callable(open_store) and all(isinstance(t, type) for t in (Store, StoreContract,
                                                                      providers.VerifySettings))
    assert isinstance(providers.get("aws"), providers.Provider)
    assert callable(sops.decrypt) and callable(sops.encrypt) and callable(sops.decrypt_many)
    result = subprocess.run([sys.executable, "-m", "connsync", "--version"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and "connsync" in result.stdout, result.stderr
