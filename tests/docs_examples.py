"""Run the shell and Python blocks of README.md and docs/*.md as written (Sybil parses them).

Markup a page may use, in HTML comments just before a block (invisible when rendered):

    <!-- skip: next "needs a Docker daemon" -->        Sybil's own: the block is not run, with the reason
    <!-- tiny: {"--epochs 50": "--epochs 1"} -->       run it with these replacements (test-time settings);
                                                      each original text must occur in the block, so a
                                                      replacement cannot go stale unnoticed; shell
                                                      blocks see $TINY_TRAIN (tiny training flags)
    <!-- invisible-code-block: bash                   Sybil's own: a block run but not shown (setup such
    mkdir -p my_images ...                            as the example files a visible block names)
    -->

Blocks tagged bash, sh or shell run in `bash -eo pipefail` and Python blocks in one namespace per
page, all of one page in a sandbox directory whose entries link to the repository's top-level files and
folders: commands read the checkout as written (`deploy/...`, `python -m training.run`) and whatever
they write (`runs/`, `exports/`) lands in the sandbox, never in the checkout. Untagged blocks (directory
trees, output) are not code. Blocks run in page order and may use what an earlier block of the page wrote.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sybil import Example, Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.abstract.lexers import LexerCollection
from sybil.parsers.markdown import CodeBlockParser, SkipParser
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer
from sybil.region import Region

from tests.conftest import has_real_mnist, write_mnist_sample_as_idx

REPO = Path(__file__).resolve().parents[1]
SHELLS = ("bash", "sh", "shell")
BLOCK_TIMEOUT = 1800
REPLACEMENTS = "_tiny_replacements"
# Test-time training settings, $TINY_TRAIN in a block's replacements: seconds, not minutes. Put it
# last on a command line (flags given later win), or replace the page's own --epochs too.
TINY_TRAIN = "--epochs 1 --steps-per-epoch 2 --width 4 --batch-size 16 --verbose 0 --num-samples 16"
SANDBOX = "_sandbox"
PORTS = "_ports"


class TinyParser:
    """`<!-- tiny: {...} -->`: replacements for the next code block (a Python dict literal of str -> str)."""

    def __init__(self):
        self.lexers = LexerCollection([DirectiveInHTMLCommentLexer(directive="tiny", arguments=".+?")])

    def __call__(self, document):
        for lexed in self.lexers(document):
            try:
                replacements = ast.literal_eval(lexed.lexemes["arguments"])
            except (ValueError, SyntaxError) as err:
                raise ValueError(f"{document.path}: a tiny: comment needs a dict literal of str -> str ({err})") from None
            yield Region(lexed.start, lexed.end, replacements, remember_replacements)


def remember_replacements(example: Example) -> None:
    example.namespace[REPLACEMENTS] = example.parsed


def as_run(example: Example) -> str:
    """The block's text with the page's pending replacements applied (and consumed)."""
    source = str(example.parsed)
    for original, replacement in example.namespace.pop(REPLACEMENTS, {}).items():
        if original not in source:
            raise AssertionError(f"tiny: {original!r} does not occur in the block at line {example.line}; "
                                 "update the comment with the block")
        source = source.replace(original, replacement)
    return source


def sandbox(namespace: dict) -> Path:
    """The page's working directory: links to the checkout's top-level entries, writes stay here."""
    if SANDBOX not in namespace:
        root = Path(tempfile.mkdtemp(prefix="docs-")) / "checkout"
        root.mkdir()
        for entry in REPO.iterdir():
            if entry.name not in (".git", "runs", "exports"):
                (root / entry.name).symlink_to(entry)
        if not (root / ".venv-tfx").is_symlink():  # made by a block of the page (docs/tfx.md's setup command)
            (root / ".venv-tfx").symlink_to(REPO / ".venv-tfx")
        if has_real_mnist():  # ../shared/data/mnist-test, as beside the checkout
            (root.parent / "shared").symlink_to(REPO.parent / "shared")
        else:  # a clone with no ../shared: the blocks' held-out set is the shipped sample, as idx files
            held_out = root.parent / "shared" / "data" / "mnist-test"
            held_out.mkdir(parents=True)
            write_mnist_sample_as_idx(held_out)
        namespace[SANDBOX] = root
        namespace[PORTS] = page_ports()
    return namespace[SANDBOX]


def page_ports() -> dict[str, str]:
    """Free loopback ports for the page's servers, as DOCS_REST_PORT/DOCS_GRPC_PORT in its blocks' environment."""
    import socket

    sockets = [socket.socket() for _ in range(2)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        rest, grpc = (str(s.getsockname()[1]) for s in sockets)
    finally:
        for s in sockets:
            s.close()
    return {"DOCS_REST_PORT": rest, "DOCS_GRPC_PORT": grpc}


def block_env(namespace: dict) -> dict:
    """The test's own interpreter first on PATH (so `python` is this venv's), the checkout importable,
    $TINY_TRAIN and the page's ports."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", TINY_TRAIN=TINY_TRAIN,
               **namespace[PORTS])
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


# Shell helpers a page's replacements may use. serve_briefly: a model server command as a page writes
# it runs until it is stopped; run it, wait until /ready answers on $DOCS_REST_PORT (a free port chosen
# for the page, as is $DOCS_GRPC_PORT), stop it with SIGTERM, and pass on its exit status (0 after a
# clean drain).
HELPERS = r"""
serve_briefly() {
  "$@" > serve_briefly.log 2>&1 &
  local pid=$! ready="import urllib.request; urllib.request.urlopen('http://127.0.0.1:$DOCS_REST_PORT/ready', timeout=1)"
  for _ in $(seq 600); do
    if python -c "$ready" 2>/dev/null; then kill -TERM $pid; wait $pid; return $?; fi
    if ! kill -0 $pid 2>/dev/null; then cat serve_briefly.log; wait $pid; return $?; fi
    sleep 0.2
  done
  kill -KILL $pid; cat serve_briefly.log; return 1
}
"""


def run_shell(example: Example) -> None:
    source = as_run(example)
    cwd = sandbox(example.namespace)
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", HELPERS + source], cwd=cwd,
                            env=block_env(example.namespace), capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    if result.returncode != 0:
        raise AssertionError(f"{Path(example.path).name} line {example.line}: exit {result.returncode}\n$ {source}\n"
                             f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-5000:]}")


class PythonInSandbox:
    """Sybil's Python evaluator, run from the page's sandbox with its replacements applied."""

    def __init__(self):
        self.evaluate = PythonEvaluator()

    def __call__(self, example: Example):
        from sybil.region import Lexeme

        example.parsed = Lexeme(as_run(example), example.parsed.offset, example.parsed.line_offset)
        here = os.getcwd()
        os.chdir(sandbox(example.namespace))
        saved = {key: os.environ.get(key) for key in example.namespace[PORTS]}
        os.environ.update(example.namespace[PORTS])  # a replacement may read the page's ports
        try:
            return self.evaluate(example)
        finally:
            os.chdir(here)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def teardown(namespace: dict) -> None:
    """Stop what a page left running (a hidden block's background server writes its pid to *.pid)."""
    if SANDBOX in namespace:
        for pid_file in namespace[SANDBOX].glob("*.pid"):
            subprocess.run(["kill", "-TERM", pid_file.read_text().strip()], capture_output=True)
        shutil.rmtree(namespace[SANDBOX].parent, ignore_errors=True)


def documentation() -> Sybil:
    parsers = [SkipParser(), TinyParser(), CodeBlockParser("python", PythonInSandbox())]
    parsers += [CodeBlockParser(shell, run_shell) for shell in SHELLS]
    return Sybil(parsers=parsers, teardown=teardown)


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
