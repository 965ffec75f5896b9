"""Lesson 7 end to end: the pipeline, its summary and frontier, and each stage from the command line."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest
import torch

from rlcourse.cli import main
from rlcourse.config import ConfigError
from rlcourse.rlhf import task
from rlcourse.rlhf.model import tiny_gpt2
from rlcourse.rlhf.pipeline import (QUICK, PipelineConfig, accuracy_ceiling, preference_pairs, run_pipeline,
                                    sample_pairs)
from rlcourse.rlhf.ppo import normalisation, reward_model_score
from rlcourse.rlhf.reward import RewardModel
from rlcourse.rlhf.tokenizer import WordTokenizer
from rlcourse.seeds import run_in_workers

TOK = WordTokenizer.toy()
SUMMARY_KEYS = {"sft_reward", "dpo_reward", "dpo_win_rate", "dpo_kl", "ppo_reward", "ppo_kl", "rm_accuracy",
                "rm_accuracy_ceiling", "rm_accuracy_ratio", "ppo_win_rate", "ppo_rm_score", "seconds"}


def tiny(seed=0, n_embd=32, n_head=2):
    return tiny_gpt2(TOK.vocab_size, n_embd=n_embd, n_head=n_head, seed=seed, bos_token_id=TOK.bos_token_id,
                     eos_token_id=TOK.eos_token_id, pad_token_id=TOK.pad_token_id)


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# ---------------------------------------------------------------- pieces


def test_sampled_pairs_drop_ties_and_follow_the_ground_truth_without_noise():
    prompts = task.sample_prompts(64, np.random.default_rng(0))
    rows = sample_pairs(tiny(), TOK, prompts, None, max_new_tokens=6, seed=0)
    assert 0 < len(rows) <= 64
    for row in rows:
        assert task.reward(row["prompt"], row["chosen"]) > task.reward(row["prompt"], row["rejected"])
    assert sample_pairs(tiny(), TOK, prompts, None, 6, seed=0) == rows       # same seed, same pairs


def test_preference_pairs_returns_exactly_n_and_the_ceiling_matches_the_task():
    rows = preference_pairs(tiny(), TOK, 50, 0.1, max_new_tokens=6, seed=1)
    assert len(rows) == 50
    r_w = [task.reward(r["prompt"], r["chosen"]) for r in rows]
    r_l = [task.reward(r["prompt"], r["rejected"]) for r in rows]
    assert accuracy_ceiling(rows, 0.1) == task.bt_accuracy_ceiling(r_w, r_l, 0.1)
    assert accuracy_ceiling(rows, None) == 1.0          # no noise and no ties: a perfect model is possible


def test_reward_model_saves_and_loads_to_the_same_scores(tmp_path):
    torch.manual_seed(0)
    rm = RewardModel.from_lm(tiny(n_embd=64, n_head=4))
    rm.save(tmp_path)
    again = RewardModel.load(tmp_path)
    batch = task.sample_prompts(8, np.random.default_rng(0)), ["good food"] * 8
    assert torch.equal(reward_model_score(rm, TOK)(*batch), reward_model_score(again, TOK)(*batch))
    with pytest.raises(FileNotFoundError, match="no reward model"):
        RewardModel.load(tmp_path / "nothing")


def test_normalised_reward_model_scores_have_mean_0_and_std_1_on_the_samples_they_came_from():
    torch.manual_seed(0)
    rm = RewardModel.from_lm(tiny())
    rng = np.random.default_rng(0)
    prompts = task.sample_prompts(100, rng)
    responses = [task.sample_completion(p, rng) for p in prompts]
    shift, scale = normalisation(rm, TOK, prompts, responses, batch_size=32)
    scores = reward_model_score(rm, TOK, shift=shift, scale=scale)(prompts, responses)
    assert abs(scores.mean().item()) < 1e-5 and abs(scores.std().item() - 1) < 1e-5
    raw = reward_model_score(rm, TOK)(prompts, responses)
    assert torch.allclose(scores, (raw - shift) / scale)


def test_pipeline_config_takes_dotted_overrides_and_names_bad_fields():
    config = PipelineConfig().with_overrides({"dpo.beta": "0.3", "ppo.iterations": "5", "pairs": "100"})
    assert (config.dpo.beta, config.ppo.iterations, config.pairs) == (0.3, 5, 100)
    assert PipelineConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="no stage 'rl'"):
        PipelineConfig().with_overrides({"rl.beta": "1"})
    with pytest.raises(ConfigError, match="DPOConfig.beta"):
        PipelineConfig().with_overrides({"dpo.beta": "-1"})
    with pytest.raises(ConfigError, match="n_embd = 30 must be a multiple of n_head = 4"):
        PipelineConfig(n_embd=30, n_head=4)
    with pytest.raises(ConfigError, match="dpo_betas"):
        PipelineConfig(dpo_betas=(0.1, -1.0))


# ---------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    summary = run_pipeline(out, PipelineConfig(**QUICK), progress=None)
    return out, summary


def test_quick_pipeline_writes_every_artifact(quick_run):
    out, summary = quick_run
    assert SUMMARY_KEYS <= set(summary)
    assert json.loads((out / "summary.json").read_text()) == summary
    for path in ("config.json", "frontier.csv", "frontier.png", "preferences.jsonl", "preferences_heldout.jsonl",
                 "sft/model.safetensors", "sft/log.csv", "reward/reward_head.pt", "dpo/log.csv", "ppo/log.csv"):
        assert (out / path).is_file(), path
    assert PipelineConfig.from_dict(json.loads((out / "config.json").read_text())) == PipelineConfig(**QUICK)
    frontier = (out / "frontier.csv").read_text().splitlines()
    assert frontier[0] == "method,coef,reward,kl,win_rate"
    assert len(frontier) == 1 + 1 + 2 + 1                # SFT, DPO at β 0.1 and 0.5, PPO at 0.05
    assert 0 <= summary["dpo_win_rate"] <= 1 and 0 < summary["rm_accuracy_ceiling"] <= 1
    assert summary["dpo_kl"] > 0 and summary["ppo_kl"] > 0


def test_pipeline_is_deterministic(quick_run, tmp_path):
    _, first = quick_run
    second = run_pipeline(tmp_path, PipelineConfig(**QUICK), progress=None)
    first, second = dict(first), dict(second)
    first.pop("seconds"), second.pop("seconds")
    assert first == second


def default_pipeline(seed: int) -> dict:
    """The pipeline's defaults with ``seed``, without the frontier's extra sweep points; its summary."""
    with tempfile.TemporaryDirectory() as out:
        return run_pipeline(out, PipelineConfig(seed=seed, dpo_betas=(), ppo_kl_coefs=()), progress=None)


@pytest.mark.slow
def test_default_pipeline_meets_lesson_7s_bars_for_four_of_five_seeds():
    """docs/benchmarks.md, ten seeds (about two minutes each on two busy cores): DPO gains 0.86 to 1.10 over
    SFT and PPO 0.55 to 0.75 on eight seeds; on seeds 6 and 7 SFT never learns to read the instruction
    (its reward ≈ 0) and neither gains anything. Seeds 0-4 meet every bar here; the bar leaves one seed's
    margin for another machine's floating-point path."""
    runs = run_in_workers(default_pipeline, range(5), workers=2)
    met = [s["dpo_reward"] - s["sft_reward"] >= 0.5 and s["dpo_win_rate"] >= 0.9
           and s["ppo_reward"] - s["sft_reward"] >= 0.3 and s["rm_accuracy"] >= 0.9 * s["rm_accuracy_ceiling"]
           for s in runs]
    assert sum(met) >= 4, runs


# ---------------------------------------------------------------- the command line


def test_every_stage_runs_from_the_command_line(tmp_path, capsys):
    d = tmp_path
    assert main(["rlhf", "data", "--out", str(d / "data"), "--sft-rows", "200", "--pairs", "100"]) == 0
    assert main(["rlhf", "sft", "--data", str(d / "data/sft.jsonl"), "--out", str(d / "sft"),
                 "--set", "epochs=1", "--device", "cpu"]) == 0
    assert main(["rlhf", "reward", "--data", str(d / "data/preferences.jsonl"), "--out", str(d / "rm"),
                 "--set", "epochs=1"]) == 0
    assert main(["rlhf", "dpo", "--model", str(d / "sft"), "--data", str(d / "data/preferences.jsonl"),
                 "--out", str(d / "dpo"), "--set", "epochs=1", "beta=0.5"]) == 0
    assert main(["rlhf", "ppo", "--model", str(d / "sft"), "--reward-model", str(d / "rm"), "--out", str(d / "ppo"),
                 "--set", "iterations=2", "batch_size=8", "minibatch_size=4"]) == 0
    assert main(["rlhf", "evaluate", str(d / "dpo"), "--reference", str(d / "sft"), "--prompts", "16"]) == 0
    sft, rm, dpo, ppo, evaluation = json_lines(capsys.readouterr().out)[1:]
    assert sft["steps"] == 7 and "reward" in sft
    assert rm["steps"] == 3 and "heldout_accuracy" in rm and "accuracy_ceiling" in rm   # 10 of 100 held out
    assert dpo["steps"] == 4 and ppo["iterations"] == 2
    assert set(evaluation) == {"reference_reward", "reward", "win_rate", "kl"}
    assert json.loads((d / "dpo" / "train_config.json").read_text())["beta"] == 0.5
    assert json.loads((d / "sft" / "config.json").read_text())["model_type"] == "gpt2"   # the model's own, kept


@pytest.mark.parametrize("argv, message", [
    (["rlhf", "sft", "--out", "{d}/x", "--set", "lr=-1"], "SFTConfig.lr = -1.0 is out of range"),
    (["rlhf", "dpo", "--model", "{d}/nothing", "--data", "{d}/bad.jsonl", "--out", "{d}/x"], "no such model directory"),
    (["rlhf", "dpo", "--model", "toy", "--data", "{d}/bad.jsonl", "--out", "{d}/x"], "bad.jsonl, line 2"),
    (["rlhf", "reward", "--data", "{d}/missing.jsonl", "--out", "{d}/x"], "no such file"),
    (["rlhf", "ppo", "--model", "toy", "--reward-model", "{d}", "--out", "{d}/x"], "no reward model"),
    (["rlhf", "pipeline", "--out", "{d}/x", "--set", "dpo.nothing=1"], "DPOConfig has no field 'nothing'"),
])
def test_mistakes_exit_2_with_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a"}\n')
    assert main([a.format(d=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_a_non_finite_loss_stops_sft_with_its_step_and_writes_nothing(tmp_path, capsys):
    code = main(["rlhf", "sft", "--rows", "64", "--out", str(tmp_path / "sft"), "--set", "lr=1e30", "epochs=3"])
    assert code == 1
    assert "step" in capsys.readouterr().err
    assert not (tmp_path / "sft").exists()
