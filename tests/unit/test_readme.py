"""The README cannot rot: its cheap `strl` commands run as written, the config keys it and
docs/ name exist, every relative link resolves, and it stays short.

The commands are read from the README itself: every `strl` line of a fenced bash block
whose subcommand is cheap (`--help`, `plan`, `show`, `generate`, `score`) runs, in README
order, in one temporary directory holding a copy of `configs/`, with the venv's `strl`.
Training, serving and evaluation (`make run`, `strl train`, `serve`, `eval`) need Ray and
vLLM and are not run here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
STRL = Path(sys.executable).parent / "strl"
CHEAP = ("--help", "plan", "show", "generate", "score")
MAX_LINES = 350
TIMEOUT_S = 120  # per command; together they take seconds

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.M)
CONFIG_KEY = re.compile(r"[a-z_]+(?:\.[a-z0-9_]+)+")
FILE_SUFFIXES = {"json", "jsonl", "md", "parquet", "png", "py", "safetensors", "yaml", "html"}
# Names retired by renames: the judge's server section, and the eval suite (once "the benchmark").
RETIRED = re.compile(r"\bjudge\.(?:mode|base_url|model_path|model|structured|cpus|gpus|"
                     r"max_failure_fraction|window_steps)\b|benchmark_per_cell|envs/benchmark\.py|"
                     r"actors/judge\.py|test_benchmark\.py|\btest_judge\.py|^judge:", re.M)


def bash_lines(text: str) -> list[str]:
    """The lines of the fenced bash blocks, with backslash continuations joined."""
    lines: list[str] = []
    for lang, body in FENCE.findall(text):
        if lang == "bash":
            lines += body.replace("\\\n", " ").splitlines()
    return lines


def readme_commands() -> list[str]:
    """The README's cheap `strl` command lines, in order."""
    cmds = []
    for line in bash_lines(README.read_text()):
        if not line.startswith("strl "):  # other tools, and the insides of multi-line quotes
            continue
        argv = shlex.split(line, comments=True)
        if len(argv) > 1 and argv[1] in CHEAP:
            cmds.append(shlex.join(argv))
    return cmds


COMMANDS = readme_commands()


def option(argv: list[str], name: str, default: str | None = None) -> str | None:
    """The value of `name` in argv, else `default`."""
    return argv[argv.index(name) + 1] if name in argv else default


@pytest.fixture(scope="module")
def ran(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, subprocess.CompletedProcess[str]]]:
    """Every README command, run once, in order, in one scratch directory."""
    assert STRL.exists(), f"no `strl` next to {sys.executable}: install the package (make venv)"
    cwd = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "configs", cwd / "configs")
    env = {**os.environ, "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(cwd / ".matplotlib")}
    done = {}
    for cmd in COMMANDS:
        argv = shlex.split(cmd)
        for flag in ("--out", "--plot", "--json"):  # whatever a command writes stays in cwd
            path = option(argv, flag)
            assert path is None or not Path(path).is_absolute(), f"{cmd}: {flag} outside tmp"
        done[cmd] = subprocess.run([str(STRL), *argv[1:]], cwd=cwd, env=env, text=True,
                                   capture_output=True, timeout=TIMEOUT_S)
    return cwd, done


def check_help(argv: list[str], out: str, cwd: Path) -> None:
    listed = re.search(r"\{([a-z,-]+)\}", out)
    assert listed, out
    readme = README.read_text()
    undocumented = [c for c in listed.group(1).split(",") if f"strl {c}" not in readme]
    assert not undocumented, f"subcommands the README never shows: {undocumented}"


def check_plan(argv: list[str], out: str, cwd: Path) -> None:
    if "--explain" in argv:
        assert re.search(r"^trainer\.steps = \d+  # ", out, re.M), out[:2000]
        return
    if "--config" in argv:
        assert out.startswith(f"config: {option(argv, '--config')}"), out[:500]
    assert re.search(r"^actor +group +strategy +bundle +resources +node", out, re.M), out
    for actor in ("rollout-0", "learner-0", "reward-0"):
        assert re.search(rf"^{actor} ", out, re.M), out


def check_show(argv: list[str], out: str, cwd: Path) -> None:
    for field in ("id", "task", "domain", "graph", "question", "answer", "rationale"):
        assert re.search(rf"^{field} ", out, re.M), f"no {field!r} line:\n{out}"
    tasks = option(argv, "--tasks", "")
    if tasks and "," not in tasks and tasks != "all":
        sample_id = f"{option(argv, '--seed', '0')}-{option(argv, '--index')}-{tasks}"
        assert re.search(rf"^id +{sample_id}$", out, re.M), out
    plot = option(argv, "--plot")
    if plot:
        assert (cwd / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def check_generate(argv: list[str], out: str, cwd: Path) -> None:
    path, n = cwd / option(argv, "--out"), int(option(argv, "--n"))
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == n
    if option(argv, "--format") == "streasoner":
        assert {"input", "timeseries", "output", "category"} <= set(rows[0])
        return
    assert {"id", "task", "prompt", "answer", "completion"} <= set(rows[0])
    tasks = option(argv, "--tasks", "all")
    if tasks != "all":
        assert {r["task"] for r in rows} <= set(tasks.split(","))


def check_score(argv: list[str], out: str, cwd: Path) -> None:
    assert out.startswith("task | n | success_rate | accuracy"), out[:500]
    assert re.search(r"^all \| \d+ \| ", out, re.M), out
    report = option(argv, "--json")
    if report and report != "-":
        assert "all" in json.loads((cwd / report).read_text())["tasks"]


CHECKS = {"--help": check_help, "plan": check_plan, "show": check_show,
          "generate": check_generate, "score": check_score}


def test_the_readme_shows_the_cheap_commands() -> None:
    shown = {shlex.split(c)[1] for c in COMMANDS}
    assert {"--help", "plan", "show", "generate"} <= shown, shown


@pytest.mark.parametrize("cmd", COMMANDS)
def test_readme_command_runs_as_written(
    cmd: str, ran: tuple[Path, dict[str, subprocess.CompletedProcess[str]]],
) -> None:
    cwd, done = ran
    proc = done[cmd]
    assert proc.returncode == 0, f"`{cmd}` exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    argv = shlex.split(cmd)[1:]
    CHECKS[argv[0]](argv, proc.stdout, cwd)


def test_readme_stays_short() -> None:
    n = len(README.read_text().splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; move detail to docs/ (limit {MAX_LINES})"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def prose(text: str) -> str:
    """Markdown without its fenced blocks and inline code: where its links live."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (a repeated one gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        s = slug(heading)
        out.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return out


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.name}: {broken}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    targets = LINK.findall(prose(README.read_text()))
    linked = {(REPO / t.partition("#")[0]).resolve() for t in targets}
    assert DOCS and not [p.name for p in DOCS if p.resolve() not in linked]


def explained_keys() -> set[str]:
    """Every key `strl plan --explain` and `strl serve --explain` list."""
    keys = set()
    for sub in ("plan", "serve"):
        out = subprocess.run([str(STRL), sub, "--explain"], cwd=REPO, text=True,
                             capture_output=True, timeout=TIMEOUT_S, check=True).stdout
        keys |= set(re.findall(r"^([a-z_][a-z0-9_.]*) = ", out, re.M))
    return keys


def test_config_keys_named_in_the_docs_exist() -> None:
    keys = explained_keys()
    sections = {k.split(".")[0] for k in keys if "." in k}
    named = set()
    for page in (README, *DOCS):
        text = page.read_text()
        spans = [m[1:-1] for m in INLINE_CODE.findall(FENCE.sub("", text))]
        words = [w for line in bash_lines(text) for w in line.split() if "=" in w]
        for token in spans + words:
            key = re.split(r"[=:\s]", token.strip(), maxsplit=1)[0]
            if (CONFIG_KEY.fullmatch(key) and key.split(".")[0] in sections
                    and key.rsplit(".", 1)[1] not in FILE_SUFFIXES):
                named.add((page.name, key))
    unknown = sorted((p, k) for p, k in named
                     if k not in keys and not any(x.startswith(k + ".") for x in keys))
    assert named and not unknown, f"config keys that do not exist: {unknown}"


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_retired_names_are_gone(page: Path) -> None:
    found = sorted({m.group(0) for m in RETIRED.finditer(page.read_text())})
    assert not found, f"{page.name} still uses retired names: {found}"
