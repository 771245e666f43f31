"""Registry, plug-in loading, parameter checks and RewardSet scoring/validation."""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import rewards
from rewards import (
    RewardConfigError,
    RewardError,
    RewardSet,
    RewardSpec,
    Target,
    build_reward,
    load_module,
    registered,
    reward,
    unregister,
)

PLUGIN = Path(__file__).parent / "plugin_example.py"
CHOICE = Target("entity", "choice", "B", n_options=4)
SEQ = Target("forecasting", "sequence", "[1.0, 2.0]")
TEXT = Target("path_description", "text", "Node 0 -> Node 2")


@pytest.fixture
def temp_names() -> Iterator[list[str]]:
    """Names a test registers; removed afterwards so tests stay independent."""
    names: list[str] = []
    yield names
    for name in names:
        unregister(name)


def test_builtins_are_registered_with_their_kinds() -> None:
    reg = registered()
    expected = {
        "format",
        "exact_match",
        "exp_mae",
        "horizon_bonus",
        "streasoner_forecast",
        "accuracy",
        "judge",
    }
    assert expected <= set(reg)
    assert reg["exact_match"].kinds == {"choice"}
    assert reg["format"].kinds == {"choice", "sequence", "text", "value"}
    assert reg["accuracy"].kinds == {"choice", "sequence", "value"}
    assert reg["exp_mae"].is_class and not reg["exact_match"].is_class
    assert reg["judge"].module == "rewards.judge"


def test_duplicate_name_is_an_error_naming_the_first_module(temp_names: list[str]) -> None:
    temp_names.append("t_dup")
    reward("t_dup")(lambda completions, targets: [0.0] * len(completions))
    with pytest.raises(ValueError, match=r"reward 't_dup' is already registered \(by module"):
        reward("t_dup")(lambda completions, targets: [1.0] * len(completions))
    with pytest.raises(ValueError, match="already registered.*rewards.builtin"):
        reward("format")(lambda completions, targets: [])


def test_kinds_must_be_known() -> None:
    with pytest.raises(RewardConfigError, match="kinds"):
        reward("t_bad_kinds", kinds=("letters",))
    assert "t_bad_kinds" not in registered()


def test_unknown_name_lists_known_rewards() -> None:
    with pytest.raises(RewardConfigError, match=r"unknown reward 'exakt_match'.*exact_match.*"):
        build_reward(RewardSpec("exakt_match"))


def test_bad_params_name_reward_and_param() -> None:
    with pytest.raises(RewardConfigError, match=r"'exp_mae' has no parameter 'alhpa'.*alpha"):
        build_reward(RewardSpec("exp_mae", params={"alhpa": 0.2}))
    with pytest.raises(RewardConfigError, match=r"'format' has no parameter 'strictness'"):
        build_reward(RewardSpec("format", params={"strictness": True}))
    with pytest.raises(RewardConfigError, match=r"'exp_mae': bad params.*alpha"):
        build_reward(RewardSpec("exp_mae", params={"alpha": -1.0}))
    with pytest.raises(RewardConfigError, match=r"'judge': bad params.*base_url"):
        build_reward(RewardSpec("judge", params={"model": "m"}))


def test_plugin_file_loads_and_scores() -> None:
    specs = [
        RewardSpec("exact_match", weight=1.0),
        RewardSpec("plugin_len_penalty", 0.5, {"max_chars": 30}, module=str(PLUGIN)),
        {
            "name": "plugin_contains",
            "weight": 2.0,
            "module": str(PLUGIN),
            "params": {"word": "Node 2"},
        },
    ]
    rs = RewardSet(specs)
    completions = [
        "<answer>B</answer>",
        "<think>" + "x" * 40 + "</think><answer>A</answer>",
        "<answer>[1, 2]</answer>",
        "<answer>via Node 2</answer>",
    ]
    result = rs.score(completions, [CHOICE, CHOICE, SEQ, TEXT])
    assert result.components["exact_match"] == [1.0, 0.0, None, None]
    assert result.components["plugin_len_penalty"] == [0.0, -1.0, 0.0, None]
    assert result.components["plugin_contains"] == [None, None, None, 1.0]  # unweighted
    assert result.total == [1.0, -0.5, 0.0, 2.0]
    assert rs(completions, [CHOICE, CHOICE, SEQ, TEXT]) == result.total
    # loading the same file again is a no-op, not a duplicate registration
    assert load_module(str(PLUGIN)) is load_module(str(PLUGIN))


def test_dotted_plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "my_rewards_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        "from rewards import reward\n"
        "@reward('t_dotted_const')\n"
        "def const(completions, targets, value=0.25):\n"
        "    return [value] * len(completions)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        rs = RewardSet(
            [RewardSpec("t_dotted_const", params={"value": 0.5}, module="my_rewards_pkg.mod")]
        )
        assert rs.score(["x"], [TEXT]).total == [0.5]
    finally:
        unregister("t_dotted_const")


def test_broken_plugins_name_the_file(tmp_path: Path) -> None:
    syntax = tmp_path / "broken_syntax.py"
    syntax.write_text("from rewards import reward\ndef oops(:\n    pass\n")
    with pytest.raises(RewardConfigError, match=r"broken_syntax\.py: syntax error at line 2"):
        build_reward(RewardSpec("t_never", module=str(syntax)))
    imports = tmp_path / "broken_import.py"
    imports.write_text("import no_such_module_for_strl_tests\n")
    with pytest.raises(RewardConfigError, match=r"broken_import\.py: ModuleNotFoundError"):
        load_module(str(imports))
    with pytest.raises(RewardConfigError, match=r"missing\.py: file not found"):
        load_module(str(tmp_path / "missing.py"))
    with pytest.raises(RewardConfigError, match=r"no_such_pkg_strl\.mod: ModuleNotFoundError"):
        load_module("no_such_pkg_strl.mod")


def test_failed_plugin_is_rolled_back(tmp_path: Path) -> None:
    half = tmp_path / "half.py"
    half.write_text(
        "from rewards import reward\n"
        "@reward('t_half')\n"
        "def r(completions, targets):\n"
        "    return [0.0] * len(completions)\n"
        "raise RuntimeError('boom after registering')\n"
    )
    with pytest.raises(RewardConfigError, match="half.py: RuntimeError: boom"):
        load_module(str(half))
    assert "t_half" not in registered()


def _wrong_length(completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
    return [1.0]


def _nan(completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
    return [math.nan] * len(completions)


def _strings(completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
    return ["1.0"] * len(completions)  # type: ignore[list-item]


def _raises(completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
    raise KeyError("oops")


def _huge(completions: Sequence[str], targets: Sequence[Target]) -> list[float]:
    return [1e9] * len(completions)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_wrong_length, "returned 1 values for 2 completions"),
        (_nan, "value 0 is nan"),
        (_strings, "not a real number"),
        (_raises, "raised KeyError"),
        (_huge, "outside"),
    ],
)
def test_malformed_reward_output_raises_reward_error(fn, message: str, temp_names) -> None:
    name = f"t_{fn.__name__.strip('_')}"
    temp_names.append(name)
    reward(name)(fn)
    rs = RewardSet([RewardSpec("format"), RewardSpec(name)])
    with pytest.raises(RewardError, match=message) as info:
        rs.score(["a", "b"], [TEXT, TEXT])
    assert info.value.reward == name and f"reward '{name}'" in str(info.value)


def test_reward_set_validates_inputs() -> None:
    with pytest.raises(RewardConfigError, match="appear twice"):
        RewardSet([RewardSpec("format"), RewardSpec("format", weight=2.0)])
    with pytest.raises(RewardConfigError, match="unknown keys"):
        RewardSet([{"name": "format", "wieght": 1.0}])
    with pytest.raises(RewardConfigError, match="at least one"):
        RewardSet([])
    with pytest.raises(ValueError, match="2 completions but 1 targets"):
        RewardSet([RewardSpec("format")]).score(["a", "b"], [TEXT])


def test_reward_sets_pickle_into_workers() -> None:
    rs = RewardSet(
        [
            RewardSpec("exp_mae", params={"alpha": 0.5}),
            RewardSpec("plugin_len_penalty", params={"max_chars": 5}, module=str(PLUGIN)),
            RewardSpec("judge", params={"base_url": "http://127.0.0.1:9/v1", "model": "m"}),
        ]
    )
    back = pickle.loads(pickle.dumps(rs))
    out = back.score(["<answer>[1, 2]</answer>"], [SEQ])
    assert out.components["exp_mae"] == [1.0]
    assert out.components["plugin_len_penalty"] == [-1.0]
    assert out.components["judge"] == [None]


def test_reward_set_with_a_plugin_pickles_into_a_fresh_process(tmp_path: Path) -> None:
    rs = RewardSet([RewardSpec("plugin_contains", params={"word": "hub"}, module=str(PLUGIN))])
    blob = tmp_path / "set.pkl"
    blob.write_bytes(pickle.dumps(rs))
    code = (
        "import pickle, sys\n"
        "from rewards import Target\n"
        "rs = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "t = Target('path_description', 'text', 'ref')\n"
        "print(rs(['the hub', 'a node'], [t, t]))\n"
    )
    root = Path(__file__).resolve().parents[3]  # the repository root
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(blob)], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[1.0, 0.0]"


def test_package_exports_what_others_code_against() -> None:
    for name in ("Target", "RewardSet", "RewardSpec", "spatial_bonus", "evaluate", "JudgeClient"):
        assert name in rewards.__all__ and getattr(rewards, name) is not None
