"""The house's layers: who may import whom, read statically from the source.

popcount_learn (the library and its CLI) knows nothing of boards; firmware_bridge builds on it
in wings: wire/ (bytes) at the bottom, boards/ and rtl/ beside each other, check.py over the
emulator's results, commands.py over all of them, cli.py over commands. The board and RTL
commands reach the popcount-learn CLI through its entry-point hook, never by an import.
"""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# For each part of firmware_bridge, the parts of it that it may import (popcount_learn: always).
ALLOWED = {
    "wire": {"wire", "errors"},
    "boards": {"boards", "wire", "errors"},
    "rtl": {"rtl", "errors"},
    "check": set(),
    "errors": set(),
    "commands": {"wire", "boards", "rtl", "check", "errors"},
    "cli": {"commands", "boards", "wire"},
}


def imported_modules(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (a module of ``package``, by
    default the one its place in the tree says), relative ones resolved;
    ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name included."""
    package = package or ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def test_the_library_never_imports_the_board_package():
    offenders = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in sorted((REPO / "popcount_learn").rglob("*.py"))
        for line, module in imported_modules(path)
        if module == "firmware_bridge" or module.startswith("firmware_bridge.")
    ]
    assert not offenders, offenders


def test_the_import_scan_sees_relative_absolute_and_dynamic_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from .errors import ConfigError\nimport firmware_bridge.wire\n"
        "import importlib\nimportlib.import_module('firmware_bridge.cli')\n"
    )
    modules = {m for _, m in imported_modules(probe, "popcount_learn")}
    assert {"popcount_learn.errors", "firmware_bridge.wire", "firmware_bridge.cli"} <= modules


def _part(path: Path) -> str:
    return path.relative_to(REPO / "firmware_bridge").with_suffix("").parts[0]


def test_the_wings_of_the_board_package_import_only_downward():
    offenders = []
    for path in sorted((REPO / "firmware_bridge").rglob("*.py")):
        if path.name == "__init__.py" and path.parent == REPO / "firmware_bridge":
            continue
        part = _part(path)
        for line, module in imported_modules(path):
            if not module.startswith("firmware_bridge."):
                continue
            target = module.split(".")[1]
            if target != part and target not in ALLOWED[part]:
                offenders.append(f"{path.relative_to(REPO)}:{line} ({part}) imports {module}")
    assert not offenders, offenders
    assert set(ALLOWED) == {
        _part(p)
        for p in (REPO / "firmware_bridge").rglob("*.py")
        if p.name != "__init__.py" or p.parent != REPO / "firmware_bridge"
    }


_WITHOUT_FIRMWARE_BRIDGE = textwrap.dedent("""
    import importlib.abc, json, sys

    class NoBoardPackage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "firmware_bridge" or name.startswith("firmware_bridge."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoBoardPackage())
    import popcount_learn.cli as cli
    parser = cli.build_parser()
    commands = sorted(parser._subparsers._group_actions[0].choices)
    code = cli.main(sys.argv[1:])
    print(json.dumps({"commands": commands, "code": code, "loaded": sorted(m for m in sys.modules
                                                                           if m.startswith("firmware_bridge"))}))
""")


def _run_without_firmware_bridge(*args):
    r = subprocess.run(
        [sys.executable, "-c", _WITHOUT_FIRMWARE_BRIDGE, *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    import json

    return r, json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None


def test_the_cli_works_with_firmware_bridge_absent():
    r, out = _run_without_firmware_bridge("inspect", str(REPO / "datasets" / "pretrained" / "net100-int8.h5"), "--json")
    assert r.returncode == 0, r.stderr
    assert out["commands"] == ["evaluate", "export", "inspect", "sweep", "sweep-report", "train"]
    assert out["code"] == 0 and out["loaded"] == []
    assert '"kind": "weight_image"' in r.stdout


def test_the_board_commands_arrive_through_the_entry_point_hook():
    from importlib.metadata import entry_points

    from popcount_learn import cli

    entries = [e for e in entry_points(group=cli.PLUGIN_GROUP) if e.value.startswith("firmware_bridge.")]
    if not entries:
        pytest.fail("firmware_bridge's popcount_learn.cli entry point is not installed (pip install -e .)")
    commands = set(cli.build_parser()._subparsers._group_actions[0].choices)
    assert {"train", "evaluate", "export", "inspect", "board", "rtl"} <= commands


def test_a_broken_plugin_is_not_mistaken_for_an_absent_one(monkeypatch):
    from popcount_learn import cli

    class Entry:
        value = "firmware_bridge.cli:register"

        def load(self):
            raise ModuleNotFoundError("No module named 'serial'", name="serial")

    monkeypatch.setattr(cli, "entry_points", lambda group: [Entry()])
    with pytest.raises(ModuleNotFoundError, match="serial"):
        cli.build_parser()
