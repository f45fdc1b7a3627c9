"""The leaderboard's tables and the summary across training seeds
(camlab/evaluate/leaderboard.py)."""

from __future__ import annotations

import numpy as np
import pytest

from camlab.evaluate import leaderboard


def board(values: dict[str, float], ties: list[str]) -> dict:
    return {"methods": {m: {"maxboxacc_v2": v, "ms_per_image": 1.0,
                            "ci95": {"maxboxacc_v2": [v - 0.02, v + 0.02]}}
                        for m, v in values.items()},
            "baselines": {"centre": {"maxboxacc_v2": 0.1,
                                     "ci95": {"maxboxacc_v2": [0.08, 0.12]}}},
            "ties": {"maxboxacc_v2": ties}, "num_images": 100, "split": "validation",
            "layer": "relu3_2", "class": "predicted"}


def test_markdown_shows_intervals_and_bolds_every_tie():
    lines = leaderboard.markdown(board({"a": 0.70, "b": 0.72, "c": 0.50}, ["b", "a"]))
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in lines if line.startswith("| ") and "---" not in line}
    assert list(rows)[1:] == ["b", "a", "c", "centre baseline"]  # ranked, baselines last
    assert rows["b"] == "**0.720 [0.70, 0.74]**" and rows["a"] == "**0.700 [0.68, 0.72]**"
    assert rows["c"] == "0.500 [0.48, 0.52]" and rows["centre baseline"] == "0.100 [0.08, 0.12]"
    assert "has no single best" in lines[-1] and "1000 resamples" in lines[-1]


def test_board_carries_each_methods_sanity_check_and_markdown_never_bolds_it():
    def results(value: float, sanity: float) -> dict:
        scores = {"maxboxacc_v2": value, "deletion_auc": 0.2,
                  "maxboxacc_v2_center_baseline": 0.1, "deletion_auc_center_baseline": 0.3,
                  "maxboxacc_v2_random_baseline": 0.2, "deletion_auc_random_baseline": 0.4}
        return {"predicted_class": {**scores, "ci95": {k: [v - 0.01, v + 0.01]
                                                       for k, v in scores.items()}},
                "sanity_rank_correlation": sanity,
                "ci95": {"sanity_rank_correlation": [sanity - 0.05, sanity + 0.05]},
                "ms_per_image": 1.0, "num_images": 100, "seconds": 9.0, "run": "demo",
                "split": "validation", "layer": "relu3_2", "not_computed": []}

    made = leaderboard.board({"a": results(0.7, 0.21), "b": results(0.6, 0.46)},
                             {"maxboxacc_v2": ["a"], "deletion_auc": ["a", "b"]})
    assert made["methods"]["b"]["sanity_rank_correlation"] == 0.46
    assert made["methods"]["b"]["ci95"]["sanity_rank_correlation"] == pytest.approx([0.41, 0.51])
    assert "sanity_rank_correlation" not in made["baselines"]["centre"]  # no model in it
    lines = leaderboard.markdown(made, {"deletion_auc": "deletion (lower better)"})
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in lines if line.startswith("| ") and "---" not in line}
    assert cells["method"] == ["maxboxacc_v2", "deletion (lower better)",
                               "sanity_rank_correlation", "ms_per_image"]
    assert cells["a"][0] == "**0.700 [0.69, 0.71]**" and cells["a"][2] == "0.210 [0.16, 0.26]"
    assert cells["centre baseline"][2] == "-"
    # Said once, by the title: no "Lower is better for" sentence repeating it.
    assert "Lower is better" not in lines[-1] and "Adebayo" in lines[-1]


def test_across_seeds_gives_mean_spread_and_the_rankings_that_survive():
    boards = {"demo_s1": board({"a": 0.70, "b": 0.60}, ["a"]),
              "demo_s2": board({"a": 0.64, "b": 0.66}, ["b", "a"]),
              "demo_s3": board({"a": 0.76, "b": 0.62}, ["a"])}
    summary = leaderboard.across_seeds(boards)
    entry = summary["methods"]["a"]["maxboxacc_v2"]
    assert entry["mean"] == pytest.approx(0.70)
    assert entry["std"] == pytest.approx(np.std([0.70, 0.64, 0.76], ddof=1))
    assert entry["per_seed"] == {"demo_s1": 0.70, "demo_s2": 0.64, "demo_s3": 0.76}
    ranking = summary["rankings"]["maxboxacc_v2"]
    assert ranking["per_seed"]["demo_s2"] == ["b", "a"]
    assert ranking["always_tied_with_best"] == ["a"] and not ranking["same_order_in_every_seed"]
    text = "\n".join(leaderboard.seeds_markdown(summary))
    assert "| a | 0.700 ± 0.060 |" in text and "- maxboxacc_v2: a" in text


def test_the_seeds_table_reads_each_verdict_from_its_tau_and_interval():
    """A seed whose methods all tie has no tau: it orders nothing, even where some
    resamples gave an interval (a board written before ties were settled)."""
    agreement = {"deletion_auc": {"a": {"tau": 0.6, "ci95": [0.2, 0.8]},
                                  "b": {"tau": float("nan"), "ci95": [-0.5, -0.5]}}}
    summary = {"methods": {}, "num_images": {"a": 10, "b": 10}, "runs": ["a", "b"],
               "rankings": {}, "agreement": agreement, "verified": {"a": 8, "b": 9},
               "beats_edge": {}}
    row = next(line for line in leaderboard.seeds_markdown(summary)
               if line.startswith("| deletion_auc |"))
    assert row == "| deletion_auc | 0.60 [0.20, 0.80] positive | - orders nothing |"
