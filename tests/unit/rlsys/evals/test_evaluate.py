"""`strl eval`'s scoring and outputs, with a model that answers from a table: right with
the graph, wrong without it, so every figure has a known value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envs import evalsuite
from rlsys.evals import report as evalreport
from rlsys.evals.evaluate import (
    file_questions,
    ood_warnings,
    run_eval,
    suite_questions,
)
from rlsys.model.card import PromptCard
from rlsys.sampling import Sampling

GREEDY = Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=512)

FIXTURES = Path(__file__).parents[2] / "rewards" / "data" / "streasoner_st_test_cases.jsonl"
XSS = "</script><script>alert(1)</script><!--<script>"


class Scripted:
    """Answers looked up by prompt (unknown prompts get an empty answer)."""

    name = "scripted"

    def __init__(self, answers: dict[str, str | None]) -> None:
        self.answers, self.asked, self.failures = answers, 0, []

    def generate(self, prompts: list[str], desc: str) -> list[str | None]:
        self.asked += len(prompts)
        return [self.answers.get(p, "") for p in prompts]


def _wrong(s) -> str:
    if s.kind == "choice":
        return f"<think>{XSS}</think><answer>{'B' if s.answer == 'A' else 'A'}</answer>"
    if s.kind == "sequence":
        return f"<answer>{[v + 10 for v in json.loads(s.answer)]}</answer>"
    return "<answer>somewhere</answer>"


@pytest.fixture(scope="module")
def result() -> dict:
    questions, info = suite_questions(1)
    answers: dict[str, str | None] = {}
    for it in evalsuite.items(1):
        answers[it.sample.prompt()] = it.sample.completion
        answers[it.sample.prompt_no_graph] = _wrong(it.sample)
    over = next(q for q in questions if q.task == "root_cause")
    answers[over.prompt] = None  # as if it did not fit the context
    backend = Scripted(answers)
    res = run_eval(questions, backend, info, GREEDY, card=PromptCard())
    assert backend.asked == 2 * len(questions)
    return res


def test_scores_with_and_without_the_graph_and_the_reliance(result: dict) -> None:
    t = result["tasks"]
    for task in ("etiological", "entity", "correlation", "propagation"):
        assert t[task]["success_rate"] == 1.0 and t[task]["accuracy"] == 1.0
        assert t[task]["score"] == 1.0 and t[task]["score_no_graph"] == 0.0
        assert t[task]["graph_reliance"] == 1.0
    f = t["forecasting"]
    assert f["mae"] == 0.0 and f["score"] == 1.0
    assert f["score_no_graph"] == pytest.approx(0.3679, abs=1e-3)  # exp(-0.1 * 10)
    rc = t["root_cause"]
    n_rc = sum(c.task == "root_cause" for c in evalsuite.cells())  # one question per cell
    assert rc["over_context"] == 1 and rc["n"] == n_rc
    assert rc["success_rate"] == pytest.approx(1 - 1 / n_rc)
    assert rc["score"] == pytest.approx(1 - 1 / n_rc)
    # the pair with a prompt over the context is left out of the reliance, not counted wrong
    assert rc["reliance_pairs"] == n_rc - 1 and rc["graph_reliance"] == 1.0
    assert t["path_description"]["success_rate"] == 1.0
    # the references' letters follow their questions: no letter is every answer
    assert 0.2 < t["all"]["modal_answer"] < 1.0 and f["modal_answer"] is None
    # the references conclude with their gold by name where their task does
    assert t["entity"]["conclusion_accuracy"] == t["propagation"]["conclusion_accuracy"] == 1.0
    assert t["correlation"]["conclusion_accuracy"] is None and f["conclusion_accuracy"] is None
    assert t["path_description"]["score"] is None  # needs a judge
    assert t["all"]["n"] == len(evalsuite.cells())
    assert result["splits"]["ood"]["all"]["n"] == len(evalsuite.cells()) // 2
    assert set(result["nodes"]["etiological"]) == {"3", "5", "10"}
    assert result["digest"] and result["suite"] == evalsuite.VERSION


def test_outputs_are_written_and_the_page_cannot_be_broken_by_an_answer(
        result: dict, tmp_path: Path) -> None:
    paths = evalreport.write(result, tmp_path)
    again = evalreport.load(tmp_path)
    assert again["tasks"] == json.loads(json.dumps(result["tasks"]))
    assert "questions" not in again  # those go to completions.jsonl
    lines = (tmp_path / "completions.jsonl").read_text().splitlines()
    assert len(lines) == len(evalsuite.cells())
    assert json.loads(lines[0])["reading"]["completion"]
    md = paths["markdown"].read_text()
    assert "| etiological | 6 | 1.000 |" in md and "In-distribution vs held-out" in md
    assert "| modal answer |" in md
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
    page = paths["html"].read_text()
    assert "window.STRL_RECORDS = " in page and "function embedded" in page
    data = page[page.index("window.STRL_RECORDS = "):page.index("</script>")]
    assert "<" not in data and "\\u003c/script\\u003e\\u003cscript\\u003ealert(1)" in data
    assert json.loads(data.removeprefix("window.STRL_RECORDS = ").rstrip(";"))[0]["id"]


def test_compare_puts_two_evaluations_side_by_side(result: dict) -> None:
    worse = json.loads(json.dumps(result))
    worse["tasks"]["entity"]["score"] = 0.25
    text = "\n".join(evalreport.compare(result, worse, ("a", "b")))
    assert "| entity |" in text and "-0.750" in text and "Warning" not in text
    worse["digest"] = "other"
    assert "not comparable" in "\n".join(evalreport.compare(result, worse, ("a", "b")))


def test_st_test_rows_and_generated_rows_are_evaluated(tmp_path: Path) -> None:
    questions, info = file_questions(str(FIXTURES))
    assert [q.task for q in questions] == ["etiological", "entity", "correlation",
                                           "forecasting"]
    assert all("<ts><ts/>" not in q.prompt and q.prompt_no_graph for q in questions)
    golds = {q.prompt: f"<answer>{q.question.gold}</answer>" for q in questions}
    res = run_eval(questions, Scripted(golds), info, GREEDY)
    assert res["tasks"]["all"]["success_rate"] == 1.0 and res["tasks"]["all"]["score"] == 1.0

    from envs.stream import SampleStream
    from rlsys.dataio import RowWriter

    path = tmp_path / "gen.jsonl"
    samples = SampleStream(0, "all").take(7)
    with RowWriter(str(path)) as w:
        w.write(s.to_record() for s in samples)
    questions, _ = file_questions(str(path))
    assert [q.prompt for q in questions] == [s.prompt() for s in samples]
    res = run_eval(questions, Scripted({s.prompt(): s.completion for s in samples}), info,
                   GREEDY)
    assert res["tasks"]["all"]["success_rate"] == 1.0

    ours = tmp_path / "ours.jsonl"  # rows in /v1/reason's shape, with ids
    from rlsys.reason import from_sample

    ours.write_text("".join(json.dumps({**from_sample(s).to_json(), "id": f"q{k}"}) + "\n"
                            for k, s in enumerate(samples)))
    questions, _ = file_questions(str(ours))
    assert [q.id for q in questions] == [f"q{k}" for k in range(7)]
    assert [q.prompt for q in questions] == [s.prompt() for s in samples]
    assert [q.target.kind for q in questions] == [s.kind for s in samples]

    broken = tmp_path / "broken.jsonl"
    row = json.loads(FIXTURES.read_text().splitlines()[0])
    broken.write_text(json.dumps({**row, "timeseries": row["timeseries"][:2]}) + "\n")
    with pytest.raises(ValueError, match="row 1 .*timeseries: 2 series for 5"):
        file_questions(str(broken))


def test_a_checkpoint_trained_on_held_out_domains_is_flagged() -> None:
    _, info = suite_questions(1, ["entity"])
    assert ood_warnings(PromptCard(domains=["climate"]), info) == []
    (w,) = ood_warnings(PromptCard(domains=["climate", "ecology"]), info)
    assert "ecology" in w and "not out-of-distribution" in w
