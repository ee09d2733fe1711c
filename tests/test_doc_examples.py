"""Every example in README.md and docs/*.md runs as shown.

The ```bash, ```console and ```python blocks of each page run in order, in one temporary folder per
page that holds a copy of examples/ and the few files of "your project" the pages refer to (below).
A ```console block's `$ ` lines are the commands and the lines after each are its output, which
must be exactly what the command prints (stdout and stderr, as a terminal shows them). A bash
block runs under `set -e`: every command in it must succeed. Python blocks of a page share one
namespace, as a reader pasting them into one session would.

A block that cannot run here (it needs torchrun with several processes, a cluster, the network or
a framework's model folder) says so in an HTML comment right before it:
`<!-- not-run: the reason -->`; the list of those is kept short and checked below.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"bash", "console", "python"}
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->")
COMMAND = re.compile(r"\s*(\$ |chanstats (compute|check|compare|export|merge|show)\b|torchrun |python )")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    not_run: str | None  # the reason, when marked

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page (indented ones in lists too), with their not-run marks."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        indent, language, start = fence.group(1), fence.group(2), i
        i += 1
        body = []
        while not re.match(rf"^{indent}```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        i += 1
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        mark = NOT_RUN.search(before)
        blocks.append(Block(page, start + 1, language, textwrap.dedent("\n".join(body)) + "\n",
                            mark.group(1) if mark else None))
    return blocks


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in code_blocks(page)]


# "Your project", as the pages call it: a dataset folder with class subfolders, a transform spec, a
# module with a dataset and a transform, an albumentations script. Small, so that every page runs
# in seconds.
PROJECT_FILES = {
    "train.yaml": """\
        - RandomResizedCrop: {size: 32}
        - RandomHorizontalFlip
        - ToDtype: {dtype: float32, scale: true}
        """,
    "aug.yaml": """\
        - RandomResizedCrop: {size: 32}
        """,
    "train_with_normalize.yaml": """\
        - RandomResizedCrop: {size: 32}
        - ToImage
        - ToDtype: {dtype: float32, scale: true}
        - Normalize: {mean: [0.5, 0.4, 0.37], std: [0.28, 0.26, 0.26]}
        """,
    "myproject/__init__.py": "",
    "myproject/data.py": """\
        from torchvision.datasets import ImageFolder
        from torchvision.transforms import v2

        train_set = ImageFolder("data/train")
        train_transform = v2.Compose([v2.RandomResizedCrop(32), v2.RandomHorizontalFlip()])
        """,
    "scripts/aug.py": """\
        from torchvision.transforms import v2


        def build_train(image):
            return v2.RandomResizedCrop(32)(image)
        """,
    "scripts/albu.py": """\
        import albumentations as A
        import numpy as np

        train_aug = A.Compose([A.RandomResizedCrop(size=(32, 32)), A.HorizontalFlip()])


        def train(pil_image):
            return train_aug(image=np.asarray(pil_image))["image"]
        """,
}


def tar_shards(folder: Path) -> None:
    """scale.md's shards: 147 plain ones and 20 gzipped, one small photograph each."""
    import tarfile

    from PIL import Image

    shards = folder / "shards"
    shards.mkdir()
    photo = Image.open(ROOT / "examples" / "images" / "chelsea.png").convert("RGB").resize((16, 16))
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    names = [f"train-{i:06d}.tar" for i in range(147)]
    names += [f"{split}-{i:02d}.tar.gz" for split in ("train", "val") for i in range(10)]
    for i, name in enumerate(names):
        with tarfile.open(shards / name, "w:gz" if name.endswith(".gz") else "w") as tar:
            member = tarfile.TarInfo(f"{i:06d}.png")
            member.size = len(buffer.getvalue())
            tar.addfile(member, io.BytesIO(buffer.getvalue()))


def image_tables(folder: Path) -> None:
    """datasets.md's tables, written by the libraries that write them: Hugging Face Parquet files
    and a save_to_disk folder (datasets), a plain table with an image column and another (pyarrow)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = sorted(str(p.relative_to(folder)) for p in (folder / "data" / "train").rglob("*.*"))
    with contextlib.chdir(folder):
        table = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image())
        for k in range(2):
            table.shard(2, k, contiguous=True).to_parquet(f"data/train-0000{k}-of-00002.parquet")
        table.save_to_disk("saved_dataset")
        pq.write_table(pa.table({"photo": [Path(p).read_bytes() for p in paths], "mask": [b"\0"] * len(paths)}),
                       "table.parquet")


def albumentations_file(folder: Path) -> None:
    """transforms.md's pipeline saved with A.save."""
    import albumentations as A

    A.save(A.Compose([A.RandomResizedCrop(size=(32, 32)), A.HorizontalFlip()]), str(folder / "albu_saved.yaml"),
           data_format="yaml")


def image_folders(folder: Path) -> None:
    """bad-input.md's folders (decompression bombs): colour photographs (no bombs; tests/test_bombs.py has those)."""
    for name in ("huge_orthophotos", "scans"):
        shutil.copytree(ROOT / "examples" / "images", folder / name, ignore=shutil.ignore_patterns("camera.png"))


PAGE_DATA = {"scale.md": tar_shards, "datasets.md": image_tables, "transforms.md": albumentations_file,
             "bad-input.md": image_folders}


def make_workspace(folder: Path, page: Path) -> Path:
    shutil.copytree(ROOT / "examples", folder / "examples")
    images = sorted((ROOT / "examples" / "images").iterdir())
    for i, image in enumerate(images):  # two classes, as ImageFolder wants
        target = folder / "data" / "train" / ("cat" if i % 2 else "dog") / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, target)
    for name, text in PROJECT_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
    if page.name in PAGE_DATA:
        PAGE_DATA[page.name](folder)
    return folder


def shell_env() -> dict[str, str]:
    """The `chanstats` and `python` next to this interpreter first on PATH (as in tests/helpers/cli.py)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("CHANSTATS_DEBUG", None)
    return env


def run_shell(command: str, cwd: Path, stop_on_error: bool = True) -> subprocess.CompletedProcess:
    options = ["-e", "-o", "pipefail"] if stop_on_error else []
    return subprocess.run(["bash", *options, "-c", command], cwd=cwd, env=shell_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    """A console block → [(command, the output lines shown after it)]."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line.rstrip())
        else:
            raise AssertionError(f"console block starts with output, not a `$ ` command: {line!r}")
    return steps


def run_block(block: Block, workspace: Path, namespace: dict) -> None:
    if block.language == "bash":
        done = run_shell(block.text, workspace)
        assert done.returncode == 0, f"{block.where()}: exit {done.returncode}\n{block.text}\n{done.stdout}"
    elif block.language == "console":
        for command, shown in console_steps(block.text):
            done = run_shell(command, workspace, stop_on_error=False)  # `...; echo "exit $?"` shows a status
            printed = [line.rstrip() for line in done.stdout.splitlines()]
            assert done.returncode == 0, f"{block.where()}: `{command}` exited {done.returncode}\n{done.stdout}"
            assert printed == shown, f"{block.where()}: `{command}` printed\n{done.stdout}"
    else:
        from PIL import Image

        # Examples may set process-wide state (bad-input.md lifts Image.MAX_IMAGE_PIXELS): it must
        # not leak into the tests that run after them in this process.
        limit = Image.MAX_IMAGE_PIXELS
        try:
            with contextlib.chdir(workspace), contextlib.redirect_stdout(io.StringIO()):
                exec(compile(block.text, block.where(), "exec"), namespace)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


# Pages whose examples take more than a few seconds (torch in the workers, many runs): pytest -m slow.
SLOW_PAGES = {"check-compare-export.md", "datasets.md", "distributed.md", "python-api.md", "scale.md", "transforms.md"}


@pytest.mark.parametrize("page", [pytest.param(page, id=str(page.relative_to(ROOT)),
                                               marks=[pytest.mark.slow] if page.name in SLOW_PAGES else [])
                                  for page in PAGES])
def test_examples_run_as_shown(page, tmp_path):
    blocks = [b for b in code_blocks(page) if b.language in RUNNABLE and b.not_run is None]
    workspace = make_workspace(tmp_path, page)
    namespace: dict = {"__name__": "__main__"}
    for block in blocks:
        run_block(block, workspace, namespace)


def test_commands_are_only_in_blocks_that_run():
    """A command in an unlabelled, ```text or ```sh block would escape the test above (```yaml
    holds CI configurations, which run commands in their own way)."""
    for block in all_blocks():
        if block.language in ("", "text", "sh", "shell"):
            commands = [line for line in block.text.splitlines() if re.match(COMMAND, line)]
            assert not commands, f"{block.where()}: commands in a ```{block.language} block: {commands}"


def test_not_run_blocks_are_few_and_give_a_reason():
    marked = [block for block in all_blocks() if block.not_run is not None]
    assert all(len(block.not_run) > 10 for block in marked)
    assert len(marked) <= 15, [block.where() for block in marked]


def test_the_block_reader_finds_marks_and_indented_blocks(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- not-run: needs a GPU here -->\n```bash\nnvidia-smi\n```\n\n"
                    "- item\n\n  ```console\n  $ echo hi\n  hi\n  ```\n", encoding="utf-8")
    first, second = code_blocks(page)
    assert (first.language, first.not_run, first.text) == ("bash", "needs a GPU here", "nvidia-smi\n")
    assert (second.language, second.not_run, second.text) == ("console", None, "$ echo hi\nhi\n")
    assert console_steps(second.text) == [("echo hi", ["hi"])]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def test_links_between_pages_resolve():
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.exists(), f"{page.relative_to(ROOT)}: link to {target}: no such file"
            if anchor:
                assert anchor in anchors(resolved), f"{page.relative_to(ROOT)}: link to {target}: no such heading"


def test_the_command_reference_names_every_option_of_every_command():
    import click

    from chanstats.cli import cli

    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^### `chanstats (\w+)`\n(.*?)(?=^### |\Z)", reference, flags=re.M | re.S))
    assert set(sections) == set(cli.commands)
    for param in cli.params:  # the options before the command
        if isinstance(param, click.Option):
            assert f"`{max(param.opts, key=len)}" in reference, f"docs/cli.md: chanstats {param.opts}"
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                for spelling in param.opts + param.secondary_opts:
                    assert re.search(rf"`{re.escape(spelling)}\b", sections[name]) or \
                        re.search(rf"[ /]{re.escape(spelling)}\b", sections[name]), f"docs/cli.md: chanstats {name} {spelling}"
