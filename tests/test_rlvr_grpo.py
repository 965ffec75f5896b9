"""Lesson 8: the task and its verifier, pass@k, the GRPO loss against a token loop, and the
trainer: seeding, validation, and learning a small verifiable task in seconds."""

import itertools
import math

import numpy as np
import pytest
import torch

from rlcourse.config import ConfigError
from rlcourse.pg.psi import token_weights
from rlcourse.rlhf.model import tiny_gpt2
from rlcourse.rlvr import arithmetic, grpo
from rlcourse.rlvr.grpo import METHODS, GRPOConfig, config_for, grpo_loss, k3, train_grpo
from rlcourse.rlvr.passk import pass_at_k

F64 = torch.float64


# ---------------------------------------------------------------- the task


def test_verifier_accepts_the_sum_and_nothing_else():
    assert arithmetic.prompt(47, 38, 2) == "4 7 + 3 8" and arithmetic.answer(47, 38) == "8 5"
    assert arithmetic.operands("0 9 + 9 5") == (9, 95)
    assert arithmetic.verify("0 9 + 9 5", "1 0 4") == 1.0
    for wrong in ("1 0 5", "", "1 0 4 +", "0 1 0 4", "+", "104"):
        assert arithmetic.verify("0 9 + 9 5", wrong) == 0.0, wrong
    assert arithmetic.reward("0 1 + 0 2", "4", format_weight=0.1) == pytest.approx(0.1)
    assert arithmetic.reward("0 1 + 0 2", "3", format_weight=0.1) == pytest.approx(1.1)
    assert arithmetic.reward("0 1 + 0 2", "3 3 3 3", format_weight=0.1) == 0.0  # too long to be well formed


def test_split_is_disjoint_and_complete():
    train, heldout = arithmetic.split(1, 20, seed=0)
    assert len(heldout) == 20 and len(train) == 80 and not set(train) & set(heldout)
    assert arithmetic.split(1, 20, seed=0) == (train, heldout)
    rows = arithmetic.sft_rows(heldout)
    assert all(arithmetic.verify(r["prompt"], r["completion"]) == 1.0 for r in rows)
    with pytest.raises(ValueError, match="heldout = 100 is out of range"):
        arithmetic.split(1, 100)


@pytest.mark.parametrize("n,c", [(5, 0), (5, 1), (6, 3), (7, 7)])
def test_pass_at_k_is_the_chance_a_random_k_subset_holds_a_correct_answer(n, c):
    answers = [1] * c + [0] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(answers, k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
    assert pass_at_k(n, c, 1) == pytest.approx(c / n)


# ---------------------------------------------------------------- the loss


def random_loss_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    B, T = 6, 5
    mask = torch.rand(B, T, generator=g) < 0.7
    mask[:, 0] = True
    logp_old = -torch.rand(B, T, generator=g, dtype=F64) * 3
    logp = (logp_old + 0.3 * torch.randn(B, T, generator=g, dtype=F64)).requires_grad_()
    ref_logp = logp_old + 0.2 * torch.randn(B, T, generator=g, dtype=F64)
    advantages = torch.randn(B, generator=g, dtype=F64)
    return mask, logp_old, logp, ref_logp, advantages


@pytest.mark.parametrize("aggregation", ["sequence-mean", "token-mean", "constant"])
@pytest.mark.parametrize("kl_coef", [0.0, 0.1])
def test_grpo_loss_matches_a_token_loop(aggregation, kl_coef):
    mask, logp_old, logp, ref_logp, adv = random_loss_inputs(0)
    weights = token_weights(mask, aggregation, constant=5).double()
    got = grpo_loss(logp, logp_old, adv, weights, 0.2, ref_logp, kl_coef)
    expected = 0.0
    for i, t in itertools.product(range(mask.shape[0]), range(mask.shape[1])):
        if mask[i, t]:
            ratio = math.exp(logp[i, t].item() - logp_old[i, t].item())
            clipped = min(max(ratio, 0.8), 1.2)
            term = min(ratio * adv[i].item(), clipped * adv[i].item())
            d = ref_logp[i, t].item() - logp[i, t].item()
            expected += weights[i, t].item() * (-term + kl_coef * (math.exp(d) - d - 1))
    assert got.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_at_ratio_one_the_gradient_is_the_weighted_policy_gradient():
    mask, logp_old, _, _, adv = random_loss_inputs(1)
    logp = logp_old.clone().requires_grad_()
    weights = token_weights(mask, "sequence-mean").double()
    grpo_loss(logp, logp_old, adv, weights, 0.2).backward()
    torch.testing.assert_close(logp.grad, -adv[:, None] * weights)


def test_k3_is_nonnegative_and_zero_at_the_reference():
    x = torch.linspace(-3, 0, 7, dtype=F64)
    assert torch.all(k3(x, x.flip(0)) >= 0) and torch.equal(k3(x, x), torch.zeros_like(x))


# ---------------------------------------------------------------- the trainer


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ConfigError, match=r"GRPOConfig\.group_size"):
        GRPOConfig(group_size=1)
    with pytest.raises(ConfigError, match=r"GRPOConfig\.aggregation"):
        GRPOConfig(aggregation="mean")
    with pytest.raises(ConfigError, match=r"GRPOConfig\.minibatches"):
        GRPOConfig(prompts_per_iteration=4, minibatches=5)
    with pytest.raises(ValueError, match="method = 'ppo' is not allowed"):
        config_for("ppo")
    assert config_for("dr_grpo").aggregation == "constant" and config_for("grpo").advantage == "grpo"


def starts_with_seven(prompts, responses):
    """A verifier a random model passes 1 time in 15: the answer's first token is 7."""
    return torch.tensor([float(r.split()[:1] == ["7"]) for r in responses])


def fresh_model(seed=0):
    tok = arithmetic.tokenizer()
    model = tiny_gpt2(tok.vocab_size, n_positions=16, n_embd=16, n_layer=1, n_head=2, seed=seed,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)  # fmt: skip
    return model, tok


def quick(method, **fields):
    base = dict(iterations=25, prompts_per_iteration=8, group_size=8, max_new_tokens=3, lr=3e-2, minibatches=2)
    return config_for(method, **{**base, **fields})


def test_same_seed_same_log():
    prompts, _ = arithmetic.split(1, 10)
    logs = []
    for _ in range(2):
        model, tok = fresh_model()
        logs.append(train_grpo(model, tok, prompts, starts_with_seven, quick("grpo", iterations=3)))
    assert logs[0].equals(logs[1])
    assert list(logs[0].columns[:4]) == ["iteration", "reward", "accuracy", "no_signal"]


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_learns_a_verifiable_rule(method):
    prompts, _ = arithmetic.split(1, 10)
    model, tok = fresh_model()
    log = train_grpo(model, tok, prompts, starts_with_seven, quick(method))
    assert log["accuracy"].iloc[:3].mean() < 0.25
    assert log["accuracy"].iloc[-5:].mean() > 0.6, log["accuracy"].tolist()


@pytest.mark.parametrize("kl_in", ["loss", "reward"])
def test_the_kl_to_the_reference_is_measured_and_nonnegative(kl_in):
    from rlcourse.rlhf.model import frozen_copy

    prompts, _ = arithmetic.split(1, 10)
    model, tok = fresh_model()
    log = train_grpo(model, tok, prompts, starts_with_seven, quick("grpo", iterations=6, kl_coef=1.0, kl_in=kl_in),
                     reference=frozen_copy(model))  # fmt: skip
    assert log["kl"].iloc[0] == pytest.approx(0.0, abs=1e-6)  # π_θ = π_ref before the first step
    assert np.all(np.isfinite(log["kl"])) and log["kl"].iloc[1:].mean() > 0


class RecordedGroups:
    """Stands in for an iteration's :class:`Groups`: records the rows each minibatch takes."""

    def __init__(self, answers: int):
        self.scores, self.mask, self.taken = torch.zeros(answers), torch.zeros(answers, 1), []

    def rows(self, index):
        self.taken.append(index.tolist())
        return self


@pytest.mark.parametrize("minibatch_of", ["groups", "answers"])
def test_each_epoch_takes_every_answer_once_in_minibatches_of_groups_or_answers(monkeypatch, minibatch_of):
    P, G = 6, 4
    config = quick("grpo", prompts_per_iteration=P, group_size=G, epochs=2, minibatches=3, minibatch_of=minibatch_of)
    groups = RecordedGroups(P * G)
    monkeypatch.setattr(grpo, "minibatch_step", lambda *args: torch.zeros(3))
    grpo.update(None, None, groups, config, np.random.default_rng(0), iteration=0)
    assert len(groups.taken) == 6  # 2 epochs x 3 minibatches
    for epoch in (groups.taken[:3], groups.taken[3:]):
        assert sorted(sum(epoch, [])) == list(range(P * G))  # every answer once per epoch
        prompts_per_step = [len({row // G for row in step}) for step in epoch]
        if minibatch_of == "groups":  # whole groups: 2 prompts' 8 answers each step
            assert all(len(step) == 8 and n == 2 for step, n in zip(epoch, prompts_per_step, strict=True))
        else:  # 8 answers drawn from all 24: they come from more than 2 prompts
            assert all(len(step) == 8 for step in epoch) and max(prompts_per_step) > 2
    assert groups.taken[:3] != groups.taken[3:]  # a new permutation each epoch


def test_kl_needs_a_reference():
    model, tok = fresh_model()
    with pytest.raises(ValueError, match="needs a reference model"):
        train_grpo(model, tok, ["1 + 2"], starts_with_seven, quick("grpo", kl_coef=0.1))


# ---------------------------------------------------------------- the pipeline and the command line


def test_cli_runs_the_pipeline_on_a_saved_model_directory(tmp_path, capsys):
    """The real-model path (``--model DIR``: ``from_pretrained`` and its tokenizer) on a tiny saved GPT-2."""
    import json

    from rlcourse.cli import main
    from rlcourse.rlhf.pipeline import save_lm

    model, tok = fresh_model()
    save_lm(model, tok, tmp_path / "model")
    sets = ["iterations=2", "sft_epochs=0", "digits=1", "heldout=10", "eval_prompts=4", "eval_samples=2",
            "grpo.prompts_per_iteration=4", "grpo.minibatches=1"]  # fmt: skip
    argv = ["rlvr", "train", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "run"), "--set", *sets]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["before"]) == {"pass@1", "pass@2"} and summary["lift"] == pytest.approx(
        summary["after"]["pass@1"] - summary["before"]["pass@1"]
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["method"] == "grpo"


@pytest.mark.parametrize("bad,message", [("grpo.group_size=1", "GRPOConfig.group_size"),
                                         ("digits=9", "RLVRConfig.digits"), ("method=ppo", "RLVRConfig.method")])  # fmt: skip
def test_cli_rejects_bad_settings_in_one_line(tmp_path, capsys, bad, message):
    from rlcourse.cli import main

    assert main(["rlvr", "train", "--out", str(tmp_path), "--set", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
