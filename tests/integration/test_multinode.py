"""Placement across nodes: a Ray cluster of several nodes on this machine
(`ray.cluster_utils.Cluster`), the rollout engine pinned to one node and the learner to
another by custom node resources; a few GRPO steps train, with weights syncing between the
nodes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.runner import finish, grpo_rows, start, train_cmd

pytestmark = pytest.mark.slow


def test_engine_and_learner_on_different_nodes_train_and_sync(
        tmp_path: Path, tiny_model: Path) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        rollout_node = cluster.add_node(num_cpus=2, resources={"rollout_node": 1})
        learner_node = cluster.add_node(num_cpus=2, resources={"learner_node": 1})
        cluster.wait_for_nodes()
        log = tmp_path / "multinode.log"
        proc = start(train_cmd(tiny_model, tmp_path / "runs", "multi", "trainer.steps=2",
                               f"cluster.address={cluster.address}",
                               "rollout.node_resource=rollout_node",
                               "learner.node_resource=learner_node"), log)
        assert finish(proc, log) == 0, log.read_text()[-3000:]
    finally:
        cluster.shutdown()
    text = log.read_text()
    placed = dict(re.findall(r"(\w+-\d) on node (\w+)", text))
    assert placed["rollout-0"] == rollout_node.node_id[:8]
    assert placed["learner-0"] == learner_node.node_id[:8]
    rows = grpo_rows(tmp_path / "runs" / "multi")
    assert sorted(rows) == [0, 1] and all(r["sync_bytes"] > 0 for r in rows.values())
