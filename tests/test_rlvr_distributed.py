"""Data-parallel GRPO (rlcourse.rlvr.grpo under torchrun): 2 gloo processes against 1.

The harness is test_rlhf_distributed's: two CPU processes on the gloo backend, set up as
torchrun would, run the same short trainings as this process. Each iteration has P = 5
prompts of G = 4 answers; rank 0 holds groups 0-1 and rank 1 groups 2-4 (an uneven split
of whole groups). The runs cover the three aggregations and their normalisers:

* ``grpo``: std-normalised Ψ, "sequence-mean", k3 in the loss, one minibatch of all five
  groups per step: each rank's share weighs 2/5 and 3/5 (of the answers);
* ``token_mean``: RLOO's Ψ, "token-mean", the KL in the reward, one minibatch: the shares
  weigh each rank's tokens over all the tokens;
* ``dr_grpo``: the group mean, "constant", minibatches of 3 and 2 groups split at random;
* ``one_group_steps``: five minibatches of one group each, so at every step one rank holds
  nothing and joins the all-reduces with a zero share.
* ``answers``: minibatches of answers drawn from all 20 (``minibatch_of="answers"``): 7, 7
  and 6 answers per step, split between the ranks however the permutation falls.

These sample with ``sampling="per-group"``: group j of iteration k has its own generator,
so both runs draw the same answers. ``per_rank`` keeps the default, each rank's own stream:
its answers depend on the number of processes, and the test checks only that the ranks agree.

Tolerances. As for SFT and DPO, the runs differ only in the order of floating-point sums
(a rank pads its answers to its own longest, the gradients are added rank by rank): the
logged numbers agree to within 1e-7 and the models' log-probabilities to within 1e-6
(measured); the test allows TOL = 1e-5. The parameters agree to about 1e-6 except where the
true gradient is zero or nearly so (the attention key bias; embeddings of tokens that were
never sampled are exactly 0 in both), where Adam turns rounding noise into steps of up to
lr; the test allows TOL_PARAMS = 1e-3 (a tenth of one step of lr = 1e-2, after 6 to 30
steps). A sampled token could in principle flip when the two models differ by rounding at
a draw that falls on a boundary of the sampling distribution; it does not in these runs,
and the test would see it: the logs would differ by a whole answer.
"""

import contextlib
import dataclasses
import functools
import io
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from test_rlhf_distributed import beside_one_process, max_abs_diff, params

from rlcourse.rlhf import distributed
from rlcourse.rlhf.model import frozen_copy, tiny_gpt2, token_logprobs
from rlcourse.rlvr import arithmetic
from rlcourse.rlvr.grpo import config_for, train_grpo

TOL, TOL_PARAMS = 1e-5, 1e-3
P, G = 5, 4
BASE = dict(iterations=3, prompts_per_iteration=P, group_size=G, max_new_tokens=3, lr=1e-2, sampling="per-group")
RUNS = {
    "grpo": config_for("grpo", **BASE, minibatches=1, kl_coef=0.5),
    "token_mean": config_for("rloo", **BASE, minibatches=1, aggregation="token-mean", kl_coef=0.3, kl_in="reward"),
    "dr_grpo": config_for("dr_grpo", **BASE, minibatches=2),
    "one_group_steps": config_for("grpo", **BASE, minibatches=P, aggregation="token-mean"),
    "answers": config_for("grpo", **BASE, minibatches=3, minibatch_of="answers"),
    "per_rank": config_for("grpo", **{**BASE, "sampling": "per-rank"}, minibatches=2),
}
SAME_ANSWERS = [name for name in RUNS if RUNS[name].sampling == "per-group"]
PROMPTS = arithmetic.split(1, 10)[0]


def starts_low(prompts, responses):
    """A verifier a random model passes about half the time: the answer starts with 0-4."""
    return torch.tensor([float(r[:1] in "01234") for r in responses])


def tiny():
    tok = arithmetic.tokenizer()
    model = tiny_gpt2(tok.vocab_size, n_positions=16, n_embd=16, n_layer=1, n_head=2, seed=0,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)  # fmt: skip
    return model, tok


def grpo_runs() -> dict:
    """Every run of RUNS from the same tiny model: its log and its parameters."""
    torch.set_num_threads(1)
    out = {}
    for name, config in RUNS.items():
        model, tok = tiny()
        reference = frozen_copy(model) if config.kl_coef else None
        log = train_grpo(model, tok, PROMPTS, starts_low, config, reference)
        out[name] = {"log": log, "params": params(model)}
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(one-process results, [results of rank 0, rank 1])."""
    return beside_one_process(grpo_runs, tmp_path_factory.mktemp("grpo_ddp"))


@pytest.mark.parametrize("name", SAME_ANSWERS)
def test_two_processes_take_the_one_process_steps(runs, name):
    single, (rank0, _) = runs
    pd.testing.assert_frame_equal(rank0[name]["log"], single[name]["log"], check_exact=False, rtol=0, atol=TOL)
    assert max_abs_diff(single[name]["params"], rank0[name]["params"]) < TOL_PARAMS
    logps = []
    for result in (single, rank0):
        model, tok = tiny()
        model.load_state_dict(result[name]["params"])
        probe = torch.randint(3, tok.vocab_size, (8, 10), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            logps.append(token_logprobs(model, probe, torch.ones_like(probe)))
    assert float((logps[0] - logps[1]).abs().max()) < TOL


def test_the_runs_learn_something_and_see_both_rewards(runs):
    single, _ = runs
    for name in RUNS:
        log = single[name]["log"]
        assert 0 < log.reward.min() and log.reward.max() < 1  # right and wrong answers: Ψ is not all 0
        assert log.policy_loss.abs().max() > 0 and log.approx_kl.iloc[1:].max() > 0


def test_the_ranks_stay_identical_and_log_the_same(runs):
    _, (rank0, rank1) = runs
    for name in RUNS:
        assert max_abs_diff(rank0[name]["params"], rank1[name]["params"]) == 0
        pd.testing.assert_frame_equal(rank0[name]["log"], rank1[name]["log"], check_exact=True)


def test_the_logs_count_all_the_groups(runs):
    _, (rank0, _) = runs
    for name in RUNS:
        log = rank0[name]["log"]
        assert len(log) == RUNS[name].iterations
        # shares of all P·G answers and of all P groups, not of one rank's
        assert np.allclose(log.accuracy * P * G, np.round(log.accuracy * P * G), atol=1e-6)
        assert np.allclose(log.no_signal * P, np.round(log.no_signal * P), atol=1e-6)


def test_per_rank_sampling_draws_other_answers_than_one_process(runs):
    single, (rank0, _) = runs
    assert not np.allclose(single["per_rank"]["log"].reward, rank0["per_rank"]["log"].reward)


def test_per_group_sampling_is_a_config_choice():
    from rlcourse.config import ConfigError

    with pytest.raises(ConfigError, match=r"GRPOConfig\.sampling"):
        dataclasses.replace(RUNS["grpo"], sampling="per-token")


def test_every_rank_needs_a_prompt(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    model, tok = tiny()
    with pytest.raises(ValueError, match="prompts_per_iteration = 2 is fewer than the 3 ranks"):
        train_grpo(model, tok, PROMPTS, starts_low, config_for("grpo", prompts_per_iteration=2, minibatches=1))


def test_per_group_sampling_gives_the_same_log_for_the_same_seed():
    logs = []
    for _ in range(2):
        model, tok = tiny()
        logs.append(train_grpo(model, tok, PROMPTS, starts_low, dataclasses.replace(RUNS["dr_grpo"], iterations=2)))
    pd.testing.assert_frame_equal(logs[0], logs[1], check_exact=True)


# ---------------------------------------------------------------- the command line under torchrun

CLI_SETS = ["iterations=3", "sft_epochs=1", "digits=1", "heldout=20", "eval_prompts=8", "eval_samples=4",
            "grpo.prompts_per_iteration=5", "grpo.minibatches=2", "grpo.sampling=per-group"]  # fmt: skip


def cli_train(base: str) -> dict:
    """``rlcourse rlvr train`` into base/two in the process group (every rank the same --out, as
    under torchrun), into base/one without one; what this process printed."""
    from rlcourse.cli import main

    out = os.path.join(base, "two" if distributed.launched_by_torchrun() else "one")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["rlvr", "train", "--out", out, "--set", *CLI_SETS]) == 0
    return {"printed": printed.getvalue()}


def test_rlvr_train_under_torchrun_is_the_one_process_run_written_once(tmp_path):
    single, ranks = beside_one_process(functools.partial(cli_train, str(tmp_path)), tmp_path)
    assert ranks[1]["printed"] == "" and json.loads(ranks[0]["printed"])["out"] == str(tmp_path / "two")
    one, two = (json.loads((tmp_path / run / "summary.json").read_text()) for run in ("one", "two"))
    for summary in (one, two):
        del summary["seconds"]
    assert one == two  # pass@k before and after: the same answers drawn from the same models
    logs = [pd.read_csv(tmp_path / run / "log.csv") for run in ("one", "two")]
    pd.testing.assert_frame_equal(logs[0], logs[1], check_exact=False, rtol=0, atol=TOL)
