"""The import contracts (.importlinter: one direction pipelines -> export -> kerasnets, no cycles, the
layers inside export and pipelines) and no private names used across the project's modules."""
import ast
import os
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("kerasnets", "pipelines", "export")


def _modules():
    """(dotted module name, path) of every module of the three packages."""
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    yield rel[:-len(".__init__")] if rel.endswith(".__init__") else rel, path


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _project(module):
    return module.split(".")[0] in PACKAGES


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

    def test_no_private_names_across_modules(self):
        found = []
        for module, path in _modules():
            with open(path) as f:
                found += private_uses(module, f.read())
        self.assertEqual(found, [], "private names used across modules (make them public in the right module):\n"
                         + "\n".join(found))

    def test_the_private_name_check_finds_both_forms(self):
        source = ("from export.calibrate import _cpu_name\nfrom export import partition\nimport export.cost as c\n"
                  "partition._build_part(1)\nc._inbound_names\nself._x\n")
        self.assertEqual(private_uses("pipelines.job", source),
                         ["pipelines.job:1: from export.calibrate import _cpu_name",
                          "pipelines.job:4: export.partition._build_part", "pipelines.job:5: export.cost._inbound_names"])


if __name__ == "__main__":
    unittest.main()
