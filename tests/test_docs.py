"""README.md and docs/*.md run as written: every bash/sh/shell and Python block is executed (long ones
on tiny settings through `<!-- tiny: ... -->` replacements), or skipped by a `<!-- skip: next "why" -->`
that says why it cannot run here (Docker, kubectl, a GPU, the network). See tests/docs_examples.py."""

from __future__ import annotations

import ast
import re
import unittest

import pytest

from tests.docs_examples import REPO, documentation, pages, teardown

# Pages whose blocks train, export or score: one process per command as written, a minute or more
# each on 2 cores, so they run in the second tier (pytest -m tier2); the checks below stay fast.
SLOW_PAGES = {"docs/training.md", "docs/evaluation.md", "docs/export.md", "docs/serving-onnxruntime.md",
              "docs/serving-tfserving.md"}
# Fenced-block languages that are not run: data, config and output. Anything else must be runnable.
NOT_CODE = {"", "text", "yaml", "json", "toml", "ini", "dockerfile", "protobuf", "pbtxt", "diff", "markdown"}
RUNNABLE = {"bash", "sh", "shell", "python"}


# Pages that need the TFX environment: the tfx tier (pytest -m tfx), which builds it.
TFX_PAGES = {"docs/tfx.md"}


def page_param(page):
    name = str(page.relative_to(REPO))
    marks = [pytest.mark.slow, pytest.mark.tier2] if name in SLOW_PAGES else [pytest.mark.tfx] if name in TFX_PAGES else []
    return pytest.param(page, id=name, marks=marks)


@pytest.mark.parametrize("page", [page_param(p) for p in pages()])
def test_page_runs_as_written(page):
    """The page's examples in order, in one sandbox; skipped blocks are listed, never silently dropped."""
    document = documentation().parse(page)
    skipped, ran = [], 0
    try:
        for example in document:
            try:
                example.evaluate()
                ran += 1
            except unittest.SkipTest as reason:
                skipped.append(f"line {example.line}: {reason}")
    finally:
        teardown(document.namespace)
    print(f"{page.name}: {ran} regions evaluated (blocks and directives); skipped: {skipped or 'none'}")


def test_every_code_block_is_tagged_runnable_or_data():
    """A block tagged `console`, `py` or `zsh` would be neither run nor flagged: the tags are closed."""
    fence = re.compile(r"^```+[ \t]*([\w+-]*)", re.MULTILINE)
    wrong = []
    for page in pages():
        languages = fence.findall(page.read_text())[::2]  # opening fences; every other one closes
        wrong += [f"{page.name}: ```{lang}" for lang in languages if lang not in RUNNABLE | NOT_CODE]
    assert not wrong, f"tag these blocks bash/python (run) or text/yaml/json (not run): {wrong}"


def test_the_skip_markup_always_gives_a_reason():
    bare = [f"{p.name}: {m}" for p in pages() for m in re.findall(r"<!--\s*skip:\s*next\s*-->", p.read_text())]
    assert not bare, f'say why a block cannot run here: <!-- skip: next "reason" --> ({bare})'


def test_every_tiny_replacement_still_occurs_in_its_block():
    """The fast tier's check of what running a page checks first: a `<!-- tiny: ... -->` whose text
    left the block it patches would make the page run something other than what it shows."""
    tiny = re.compile(r"<!--\s*tiny:\s*(\{.*?\})\s*-->\s*```+[\w+-]*\n(.*?)```", re.DOTALL)
    stale, checked = [], 0
    for page in pages():
        for replacements, block in tiny.findall(page.read_text()):
            checked += 1
            stale += [f"{page.name}: {original!r}" for original in ast.literal_eval(replacements) if original not in block]
    assert checked >= 10, f"found only {checked} tiny: comments: is the pattern still right?"
    assert not stale, f"update these tiny: comments with their blocks: {stale}"
