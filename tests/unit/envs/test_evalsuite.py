"""The fixed eval suite: every task, node count and domain split; a pure function of its
version; smaller sizes are prefixes of larger ones; its out-of-distribution domains are
held out of the training default."""

from __future__ import annotations

import pytest

from envs import evalsuite as b
from envs.sample import TASKS
from envs.tasks import EnvConfig, get_task

# The digest of `items(2)`. If a change to the simulator or the tasks alters this, the
# eval suite is no longer the same set of questions: bump `evalsuite.VERSION` (and this).
DIGEST_PER_CELL_2 = "5e500e524f2b35f3"


def test_cells_cover_every_task_split_and_node_count_once() -> None:
    cells = b.cells()
    assert len({(c.split, c.task, c.nodes) for c in cells}) == len(cells)
    for split in ("id", "ood"):
        for task in TASKS:
            sizes = sorted(c.nodes for c in cells if c.split == split and c.task == task)
            need = get_task(task).nodes_needed(EnvConfig(nodes=b.NODES))
            assert sizes == sorted({max(n, need) for n in b.NODES}), (split, task, sizes)
    assert {c.nodes for c in cells if c.task == "etiological"} == {3, 5, 10}
    assert {c.nodes for c in cells if c.task == "correlation"} == {5, 10}  # 4 routes: 5 nodes
    assert {c.nodes for c in cells if c.task == "propagation"} == {9, 10}  # 4 fans + shadow


def test_questions_are_a_pure_function_of_the_version_and_prefixes_of_larger_sizes() -> None:
    two, three = b.items(2), b.items(3)
    assert b.digest(two) == b.digest(b.items(2)) == DIGEST_PER_CELL_2
    prefix = [q for q in three if not q.id.endswith("/2")]
    assert [(q.id, q.sample.prompt(), q.sample.answer) for q in prefix] == [
        (q.id, q.sample.prompt(), q.sample.answer) for q in two]
    assert len(two) == 2 * len(b.cells())


def test_each_split_draws_only_its_domains_and_the_shown_sizes_match_the_cell() -> None:
    for q in b.items(2):
        assert q.sample.meta["domain"] in b.SPLITS[q.cell.split]
        assert q.sample.series.shape[0] == q.cell.nodes
        assert q.sample.task == q.cell.task and q.sample.precision == b.PRECISION
    assert not set(b.ID_DOMAINS) & set(b.OOD_DOMAINS)


def test_the_training_default_leaves_the_ood_domains_out() -> None:
    from rlsys.config import Config

    assert not set(Config().data.env.domains) & set(b.OOD_DOMAINS)


def test_bad_sizes_and_tasks_are_errors() -> None:
    with pytest.raises(ValueError, match="per_cell"):
        b.items(0)
    with pytest.raises(ValueError, match="no task nope"):
        b.items(1, ["nope"])
