"""The import contracts (.importlinter: one direction pipelines -> export -> kerasnets core, no cycles, the
layers inside export and pipelines) and no private names used across the project's modules.

The folders export/ and pipelines/ are kerasnets.export and kerasnets.pipelines: installed so by setup.cfg's
``package_dir``, and in the source tree by the symbolic links kerasnets/export and kerasnets/pipelines,
which is also where import-linter finds their modules.
"""
import ast
import configparser
import os
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# folder -> the package name it installs as
PACKAGES = {"kerasnets": "kerasnets", "export": "kerasnets.export", "pipelines": "kerasnets.pipelines"}


def _modules():
    """(dotted module name, path) of every module of the three folders, by their installed names."""
    for folder_name, package in PACKAGES.items():
        base = os.path.join(ROOT, folder_name)
        for folder, _, files in os.walk(base):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, base)[:-3].replace(os.sep, ".")
                    rel = "" if rel == "__init__" else rel[:-len(".__init__")] if rel.endswith(".__init__") else rel
                    yield package + ("." + rel if rel else ""), path


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _project(module):
    return module.split(".")[0] == "kerasnets"


def private_uses(module, source):
    """``module:line: text`` for each private name of another project module that ``source`` uses:
    ``from pkg.mod import _name`` and ``alias._name`` where ``alias`` is an imported project module."""
    tree = ast.parse(source)
    aliases, found = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _project(a.name):
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _project(node.module):
            for a in node.names:
                if _private(a.name) and node.module != module:
                    found.append(f"{module}:{node.lineno}: from {node.module} import {a.name}")
                elif not _private(a.name):
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            parts, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                parts.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in aliases and aliases[value.id] != module:
                target = ".".join([aliases[value.id]] + parts[::-1][:-1])
                found.append(f"{module}:{node.lineno}: {target}.{node.attr}")
    return sorted(found, key=lambda line: int(line.split(":")[1]))


class ImportContractTest(unittest.TestCase):

    def test_import_linter_contracts_are_kept(self):
        lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
        if not os.path.exists(lint):
            self.fail(f"{lint} is missing; install the test extra: pip install -e '.[test]'.")
        proc = subprocess.run([lint, "--config", os.path.join(ROOT, ".importlinter"), "--no-cache"],
                              capture_output=True, text=True, cwd=ROOT, timeout=300,
                              env=dict(os.environ, PYTHONPATH=ROOT))
        self.assertEqual(proc.returncode, 0, f"import contracts broken:\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}")

    def test_the_source_tree_links_the_installed_names(self):
        for folder in ("export", "pipelines"):
            link = os.path.join(ROOT, "kerasnets", folder)
            self.assertTrue(os.path.islink(link), link)
            self.assertEqual(os.path.realpath(link), os.path.realpath(os.path.join(ROOT, folder)))

    def test_the_core_contract_names_every_core_module(self):
        # A new kerasnets module is under the "core imports neither export nor pipelines" contract only
        # when listed there; the package's __init__ (not listable without its sub-packages) is read here.
        config = configparser.ConfigParser()
        config.read(os.path.join(ROOT, ".importlinter"))
        listed = set(config["importlinter:contract:core"]["source_modules"].split())
        core = {m.split(".")[1] for m, _ in _modules() if m.count(".") >= 1 and not m.startswith(
            ("kerasnets.export", "kerasnets.pipelines"))}
        self.assertEqual({f"kerasnets.{m}" for m in core}, listed)
        with open(os.path.join(ROOT, "kerasnets", "__init__.py")) as f:
            tree = ast.parse(f.read())
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module] + [
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        self.assertFalse([m for m in imported if m.startswith(("kerasnets.export", "kerasnets.pipelines"))])

    def test_no_private_names_across_modules(self):
        found = []
        for module, path in _modules():
            with open(path) as f:
                found += private_uses(module, f.read())
        self.assertEqual(found, [], "private names used across modules (make them public in the right module):\n"
                         + "\n".join(found))

    def test_the_private_name_check_finds_both_forms(self):
        source = ("from kerasnets.export.calibrate import _cpu_name\nfrom kerasnets.export import partition\n"
                  "import kerasnets.export.cost as c\npartition._build_part(1)\nc._inbound_names\nself._x\n")
        self.assertEqual(private_uses("kerasnets.pipelines.job", source),
                         ["kerasnets.pipelines.job:1: from kerasnets.export.calibrate import _cpu_name",
                          "kerasnets.pipelines.job:4: kerasnets.export.partition._build_part",
                          "kerasnets.pipelines.job:5: kerasnets.export.cost._inbound_names"])


if __name__ == "__main__":
    unittest.main()
