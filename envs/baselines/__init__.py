"""Shortcut solvers: can a generated question be answered with one of its inputs removed?

A multiple-choice question over a network of time series is meant to need *both* the
series and the graph. This module attacks questions with solvers that see only part of
what a prompt shows, one *view* at a time:

- ``"graph"``: question, options, the edges with their lags, the node count and the
  series' length (a prompt without its numbers still shows how many there are); no values.
- ``"series"``: question, options and the series; no edges.
- ``"text"``: question and options only.

A question that needs both inputs must leave every graph-view and series-view solver
near chance (and every text-view solver too, or the options give the answer away). Two
kinds of solvers are run on each view:

- *rule baselines*: one fixed heuristic each (the option naming an ancestor of the
  question's node, the earliest departure, the longest option, ...). Two classes of
  shortcut have their own rules and features, for every task: *magnitude* on the series
  side (peak departures, their ratios along an option's route, rise times: a disturbance
  shrinks at every link it crosses) and *feasibility* on the graph side (the departure an
  option's route lag implies for the question's window, against the baseline window and
  the series' length: what the stated window and lags make impossible or likelier);
- *learned baselines*: a per-option gradient-boosted classifier ("is this option the gold
  one?") trained on samples of the same generator, over generic features of the view,
  answering with the option it rates highest. It finds shortcuts nobody wrote a rule for.

Everything reads the question text generically, never one task's wording: the question's
nodes are its "Node k" mentions, its steps are the other integers in it (the context
sentence "The network measures ... at N sites; 1 time step = ..." is left out), and an
option is read as its node mentions and its other integers. The solvers never see a
`Sample` itself, only a `View` that holds nothing but what the view allows, so a view
cannot leak by accident.
"""

from envs.baselines.learned import (
    attack,
    chance,
    feature_names,
    features,
    learned_baselines,
)
from envs.baselines.rules import rule_baselines, rule_choices
from envs.baselines.views import (
    GRAPH_RULES,
    SERIES_RULES,
    TEXT_RULES,
    VIEWS,
    BaselineResult,
    View,
    gold_index,
    option_nodes,
    option_numbers,
    question_nodes,
    question_steps,
    strip_context,
    view_of,
)

__all__ = ["GRAPH_RULES", "SERIES_RULES", "TEXT_RULES", "VIEWS", "BaselineResult", "View",
           "attack", "chance", "feature_names", "features", "gold_index",
           "learned_baselines", "option_nodes", "option_numbers", "question_nodes",
           "question_steps", "rule_baselines", "rule_choices", "strip_context", "view_of"]
