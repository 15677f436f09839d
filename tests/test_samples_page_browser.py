"""The samples page in a real headless browser (Debian's chromium; the browser tier, `python -m pytest
-m browser`, which .ci/run runs after installing chromium): the page loads,
the grid image is decoded (naturalWidth > 0, written into the page by its own script), and choosing
another label changes the picture. Screenshots are kept under tests/artifacts/ (ignored by git;
CI keeps them as artifacts); the paths are printed."""

from __future__ import annotations

import shutil
import subprocess
from urllib.parse import urlencode

import httpx
import pytest

from tests.conftest import REPO
from tests.onnx_models import write_version
from tests.server_harness import Server

ARTIFACTS = REPO / "tests" / "artifacts"
pytestmark = [pytest.mark.slow, pytest.mark.browser]


def chromium(*args: str, profile) -> subprocess.CompletedProcess:
    """One headless chromium run (as root it needs --no-sandbox); bounded in time."""
    command = [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    assert shutil.which("chromium"), ("chromium is not on PATH: .ci/run installs it "
                                      "(apt-get update && apt-get install -y chromium)")
    base = tmp_path_factory.mktemp("page") / "digits"
    write_version(base, 1, seed=1, num_classes=3)
    srv = Server(["--model-base-path", str(base), "--model-name", "digits"], tmp_path_factory.mktemp("log") / "s.log")
    yield srv
    assert srv.stop() == 0


def page_url(server, **query) -> str:
    return f"{server.url}/samples?{urlencode({'model': 'digits', 'seed': 7, 'count': 9, **query})}"


def test_the_page_loads_and_its_grid_image_is_decoded(server, tmp_path):
    dom = chromium("--dump-dom", page_url(server, label=0), profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<td>digits</td><td>1</td>" in dom.stdout  # the models and versions served
    assert 'data-width="' in dom.stdout, dom.stdout[-2000:]  # set by the page's script once the PNG decodes
    width = int(dom.stdout.split('data-width="', 1)[1].split('"', 1)[0])
    assert width == 3 * 4 + 2 * 2  # naturalWidth: a 3x3 grid of 4-pixel samples, 2-pixel gaps


def test_another_label_draws_another_picture(server, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shots = []
    for label in (0, 2):
        shot = ARTIFACTS / f"samples-page-label-{label}.png"
        done = chromium(f"--screenshot={shot}", "--window-size=700,900", page_url(server, label=label),
                        profile=tmp_path / f"profile-{label}")
        assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
        shots.append(shot.read_bytes())
        print(f"screenshot: {shot}")
    assert shots[0] != shots[1]
    grids = [httpx.get(f"{server.url}/v1/models/digits/samples.png", params={"seed": 7, "count": 9, "label": label},
                       timeout=30).content for label in (0, 2)]
    assert grids[0] != grids[1] and all(g.startswith(b"\x89PNG") for g in grids)
