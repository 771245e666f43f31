"""Plug-in rewards and tasks are loaded and tried in the driver before any actor starts: a
good one passes, a broken one fails with one message naming its file and the problem."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from envs.tasks import TASK_REGISTRY
from rlsys.config import load_config
from rlsys.train.plugins import PluginError, check

EXAMPLES = Path(__file__).parents[4] / "examples"
BASE = ["data.tasks={entity: 1, forecasting: 1}"]


def _cfg(*overrides: str):
    return load_config(None, [*BASE, *overrides])


def _file(tmp_path: Path, name: str, body: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


def _reward(path: Path, name: str) -> str:
    return f"reward.rewards=[{{name: accuracy}}, {{name: {name}, module: {path}}}]"


def test_the_examples_pass() -> None:
    check(_cfg(f"data.modules=[{EXAMPLES / 'my_task.py'}]",
               "data.tasks={my_onset: 1, root_cause: 1}",
               _reward(EXAMPLES / "my_rewards.py", "my_len_penalty")))


def test_import_error_names_the_file(tmp_path: Path) -> None:
    p = _file(tmp_path, "broken_import.py", "import not_a_module_anywhere\n")
    with pytest.raises(PluginError, match=r"broken_import\.py.*ModuleNotFoundError"):
        check(_cfg(_reward(p, "never_registered")))


def test_wrong_signature_fails_at_start(tmp_path: Path) -> None:
    p = _file(tmp_path, "one_arg.py", """
        from rewards import reward

        @reward("one_arg_reward")
        def one_arg_reward(completions):
            return [0.0 for _ in completions]
        """)
    want = r"one_arg\.py.*one_arg_reward\(completions\) must take \(completions, targets\)"
    with pytest.raises(PluginError, match=want):
        check(_cfg(_reward(p, "one_arg_reward")))


def test_wrong_return_length_fails_at_start(tmp_path: Path) -> None:
    p = _file(tmp_path, "short.py", """
        from rewards import reward

        @reward("short_reward")
        def short_reward(completions, targets):
            return [1.0]
        """)
    with pytest.raises(PluginError, match=r"short\.py.*returned 1 values for \d+ completions"):
        check(_cfg(_reward(p, "short_reward")))


def _task_plugin(tmp_path: Path, file: str, name: str, plan_body: str) -> Path:
    """A one-task plug-in file whose `plan` runs `plan_body`."""
    return _file(tmp_path, file, f"""
        import time
        from envs.tasks import Task, register_task

        @register_task
        class Plugin(Task):
            name = "{name}"

            def plan(self, rng, cfg, design):
                {plan_body}
        """)


def _check_task(path: Path, name: str, *overrides: str) -> None:
    try:
        check(_cfg(f"data.modules=[{path}]", f"data.tasks={{{name}: 1}}", *overrides))
    finally:  # a later `TaskMix.of("all")` in this process (build_model's corpus) would draw it
        TASK_REGISTRY.pop(name, None)


def test_a_task_that_cannot_build_names_its_module(tmp_path: Path) -> None:
    p = _task_plugin(tmp_path, "bad_task.py", "broken_plugin_task",
                     'raise ZeroDivisionError("oops")')
    with pytest.raises(PluginError, match=r"task 'broken_plugin_task' \(.*bad_task.*oops"):
        _check_task(p, "broken_plugin_task")


def test_a_missing_task_module_and_an_unknown_task(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"task module .*nowhere\.py: file not found"):
        check(_cfg(f"data.modules=[{tmp_path / 'nowhere.py'}]"))
    with pytest.raises(ValueError, match="unknown task 'no_such_task'"):
        check(_cfg("data.tasks={no_such_task: 1}"))


def test_a_reward_failing_on_some_inputs_passes_one_failing_on_all_does_not(
        tmp_path: Path) -> None:
    some = _file(tmp_path, "some.py", """
        from rewards import reward

        @reward("fails_on_some")
        def fails_on_some(completions, targets):
            if any(t.kind == "sequence" for t in targets):
                raise ValueError("no forecasts")
            return [1.0 for _ in completions]
        """)
    check(_cfg(_reward(some, "fails_on_some")))  # scored 0 and counted in training
    every = _file(tmp_path, "every.py", """
        from rewards import reward

        @reward("fails_on_all")
        def fails_on_all(completions, targets):
            return [1.0 / 0 for _ in completions]
        """)
    with pytest.raises(PluginError, match=r"every\.py.*ZeroDivisionError"):
        check(_cfg(_reward(every, "fails_on_all")))


HANGS = {
    "at import": """
        import time
        time.sleep(3600)
        """,
    "when scoring": """
        import time
        from rewards import reward

        @reward("hangs_when_scoring")
        def hangs_when_scoring(completions, targets):
            time.sleep(3600)
        """,
}


@pytest.mark.parametrize("where", list(HANGS))
def test_a_reward_that_hangs_fails_within_the_timeout(tmp_path: Path, where: str) -> None:
    p = _file(tmp_path, f"hangs_{where.replace(' ', '_')}.py", HANGS[where])
    t0 = time.monotonic()
    with pytest.raises(PluginError, match=rf"reward plug-in .*{p.name}: .* did not finish "
                                          r"within reward.timeout_s=1s"):
        check(_cfg(_reward(p, "hangs_when_scoring"), "reward.timeout_s=1"))
    assert time.monotonic() - t0 < 10  # sample generation and the 1 s wait, no more


def test_a_task_that_hangs_fails_within_the_timeout(tmp_path: Path) -> None:
    p = _task_plugin(tmp_path, "slow_task.py", "hanging_plugin_task", "time.sleep(3600)")
    with pytest.raises(PluginError, match=r"task 'hanging_plugin_task' \(.*slow_task.*\): "
                                          r"building a sample did not finish"):
        _check_task(p, "hanging_plugin_task", "reward.timeout_s=1")


def test_strl_train_with_a_hanging_plugin_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    """As a user runs it: the console script, a plug-in that sleeps forever; exit 2 within
    the timeout plus start-up, one line naming the file, no run directory left behind."""
    p = _file(tmp_path, "sleeper.py", HANGS["when scoring"])
    cmd = [str(Path(sys.executable).parent / "strl"), "train", "--config",
           str(EXAMPLES.parent / "configs" / "tiny_cpu.yaml"), f"trainer.out_dir={tmp_path}/runs",
           "trainer.name=hang", "reward.timeout_s=2", _reward(p, "hangs_when_scoring")]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "sleeper.py" in err[0] and "did not finish" in err[0], err
    assert not (tmp_path / "runs").exists()
    assert time.monotonic() - t0 < 90
