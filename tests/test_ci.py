"""CI's script and the lock file: the tested versions satisfy pyproject.toml, and CI fails on what it should."""

import re
import tomllib

from packaging.requirements import Requirement

from tests.conftest import REPO

LOCK = REPO / "requirements" / "lock.txt"


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.split()[0]
    return pins


def test_the_lock_pins_every_dependency_of_the_dev_install_within_pyprojects_bounds():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = locked()
    for text in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name.lower())
        assert name in pins, f"{name} is not in {LOCK.name}: regenerate it (README, Development)"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"{LOCK.name} pins {name}=={pins[name]}, outside pyproject.toml's {requirement.specifier}"


def test_ci_installs_the_lock_fails_on_conflicts_and_runs_both_tiers():
    script = (REPO / ".ci" / "run").read_text()
    commands = [line.split("#")[0].strip() for line in script.splitlines() if line.strip() and not line.startswith("#")]
    assert "python -m pip install --quiet -r requirements/lock.txt" in commands
    assert "python -m pip install --quiet --no-deps -e ." in commands
    assert "python -m pip check" in commands and "|| true" not in script
    assert commands.index("python -m pytest -n auto") < commands.index("python -m pytest -m tier2")
    browser = commands.index("python -m pytest -m browser")  # after chromium is there, not in the README's tier
    assert any("apt-get install -y chromium" in c for c in commands[:browser])
    assert not any("chromium" in c for c in commands[:commands.index("python -m pytest -n auto")])
