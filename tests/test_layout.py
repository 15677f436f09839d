"""The layering rule of docs/development.md "How the code is laid out": no package imports from a layer above it.

common < metrics < training ; common < serving ; export above them ; pipelines (TFX) on top. Checked statically over every import
statement (module level and inside functions), so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What each package may import from the project (besides itself).
ALLOWED = {
    "common": set(),
    "metrics": {"common"},
    "serving": {"common"},
    "training": {"common", "metrics"},
    "export": {"common", "metrics", "serving", "training"},
    "pipelines": {"common", "metrics", "serving", "training", "export"},  # orchestration (TFX) over everything
    "deploy": {"common", "serving"},  # deployment tooling: TF Serving's config files from serving's protos
}

# serving's own floors (docs/development.md): a module imports from its floor and those below, never above;
# the two protocols never import each other, and the client needs only the messages.
SERVING_FLOORS = [
    ("serving", "serving.protos", "serving.log_throttle"),                     # shared: messages, rate-limited logs
    ("serving.engine",),                                                       # core, models, batcher, generator
    ("serving.model_control", "serving.transports"),                           # control plane; HTTP and gRPC plumbing
    ("serving.protocols",),                                                    # TF Serving, Open Inference Protocol
    ("serving.samples_page", "serving.metrics"),                               # the page; what the server records
    ("serving.app", "serving.config", "serving.server"),                       # mounting, configuration, the Server
]


def _project_imports(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in ALLOWED:
                found.add((top, node.lineno))
    return found


def test_no_package_imports_from_a_layer_above_it():
    violations = []
    for package, allowed in ALLOWED.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for top, line in _project_imports(path):
                if top != package and top not in allowed:
                    violations.append(f"{path.relative_to(REPO)}:{line} imports {top}")
    assert not violations, "upward imports:\n" + "\n".join(violations)


def _serving_floor(module: str) -> int:
    """The floor of a serving module: its longest matching prefix in SERVING_FLOORS."""
    best, floor = "", None
    for index, prefixes in enumerate(SERVING_FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, floor = prefix, index
    return floor


def _serving_imports(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "serving":
            names = [node.module + "." + alias.name for alias in node.names]  # `from serving import x` names x
            found.update((name, node.lineno) for name in names)
        elif isinstance(node, ast.Import):
            found.update((alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "serving")
    return found


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def test_serving_modules_import_only_from_their_floor_and_below():
    violations = []
    for path in sorted((REPO / "serving").rglob("*.py")):
        module = _module_name(path)
        if module.startswith("serving.client"):
            continue  # checked below
        here = _serving_floor(module)
        assert here is not None, f"{module} sits on no floor of SERVING_FLOORS: add it there"
        for name, line in _serving_imports(path):
            floor = _serving_floor(name)
            if floor is not None and floor > here:
                violations.append(f"{path.relative_to(REPO)}:{line} imports {name} (floor {floor} > {here})")
    assert not violations, "serving modules importing from a floor above them:\n" + "\n".join(violations)


def test_the_two_protocols_and_the_client_stay_apart():
    violations = []
    for path in sorted((REPO / "serving").rglob("*.py")):
        module = _module_name(path)
        for name, line in _serving_imports(path):
            for one, other in (("tfserving", "open_inference"), ("open_inference", "tfserving")):
                if module.startswith(f"serving.protocols.{one}") and name.startswith(f"serving.protocols.{other}"):
                    violations.append(f"{path.relative_to(REPO)}:{line} imports {name}")
            if module.startswith("serving.client") and not name.startswith(("serving.client", "serving.protos")):
                violations.append(f"{path.relative_to(REPO)}:{line} imports {name} (the client needs only messages)")
    assert not violations, "\n".join(violations)


def test_the_serving_floor_rule_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from serving.protocols.tfserving import rest_api\n")
    (name, _), = _serving_imports(bad)
    assert _serving_floor(name) > _serving_floor("serving.engine.core")


def test_benchmarks_import_nothing_from_the_tests():
    """The benchmarks ship with the package; the tests do not (their helpers live in common/)."""
    offenders = []
    for path in sorted((REPO / "benchmarks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            module = node.module if isinstance(node, ast.ImportFrom) and node.level == 0 else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [module or ""]
            offenders += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "tests"]
    assert not offenders, "benchmarks importing tests: " + ", ".join(offenders)


def test_the_rule_itself_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from training.models import build_generator\n")
    assert ("training", 2) in _project_imports(bad)


@pytest.mark.parametrize("module", ["common.atomic", "common.grid", "common.ports", "common.signature"])
def test_the_bottom_layer_imports_no_tensorflow(module):
    code = f"import sys, {module}; sys.exit(int(any(m in sys.modules for m in ('tensorflow', 'keras'))))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{module} pulled in TensorFlow or Keras\n{result.stderr}"


@pytest.mark.parametrize("module", ["training.run", "export.run", "export.evaluate"])
def test_help_answers_without_importing_tensorflow(module):
    """--help and flag errors come before the TensorFlow import (seconds, and its log lines)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", module, "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "argparse" in imported, "no -X importtime lines to read"
    assert "tensorflow" not in imported, f"python -m {module} --help imported TensorFlow"


def test_the_gan_train_entry_point_answers_help_without_importing_tensorflow():
    """The installed `gan-train` script imports `training.run` by name, not through `python -m`."""
    code = ("import sys\nsys.argv = ['gan-train', '--help']\nfrom training.run import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "sys.exit(int(any(m in sys.modules for m in ('tensorflow', 'keras'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "usage:" in result.stdout, result.stderr[-2000:]
    assert result.returncode == 0, "gan-train --help imported TensorFlow or Keras"


def test_the_package_decides_no_imports_by_the_command_line():
    assert "orig_argv" not in (REPO / "training" / "__init__.py").read_text()


def test_the_domain_classifier_is_one_module():
    assert not (REPO / "metrics" / "classifier_net.py").exists()
    from metrics.classifier import build_classifier, get_classifier, train_and_convert  # noqa: F401
