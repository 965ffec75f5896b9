"""Lesson 8's exact-gradient study: the enumeration is complete, ∇J is the autograd gradient
of the finite sum, and the measured table says which estimators are unbiased."""

import numpy as np
import pytest
import torch

from rlcourse.rlvr import exact


@pytest.fixture(scope="module")
def enumerated():
    torch.set_num_threads(1)
    model, tokenizer = exact.toy_model(seed=0)
    return model, tokenizer, exact.enumerate_policy(model, tokenizer, max_tokens=3)


def test_every_answer_is_enumerated_once(enumerated):
    _, _, e = enumerated
    answers = exact.all_answers(3)
    assert len(answers) == 1 + 2 + 4 + 8 and len(set(answers)) == len(answers)
    for x in range(len(e.prompts)):
        assert e.probs[e.prompt_of == x].sum() == pytest.approx(1.0, abs=1e-12)
    assert set(e.lengths) == {1, 2, 3}


def test_exact_gradient_is_the_gradient_of_the_finite_sum(enumerated):
    model, tokenizer, e = enumerated
    params = [p for p in model.parameters() if p.requires_grad]
    answers = exact.all_answers(3)
    J = 0.0
    for prompt, verifier in exact.VERIFIERS.items():
        rewards = torch.tensor([verifier(" ".join(w for w in a if w != "<eos>")) for a in answers], dtype=torch.float64)
        J = J + (exact.answer_logprobs(model, tokenizer, prompt, answers).exp() * rewards).sum() / len(exact.VERIFIERS)
    grads = torch.autograd.grad(J, params)
    np.testing.assert_allclose(exact.exact_gradient(e), torch.cat([g.flatten() for g in grads]).numpy(), atol=1e-12)


def test_the_table_separates_unbiased_from_biased(enumerated):
    _, _, e = enumerated
    table = exact.bias_variance_table(e, group_size=4, draws=2000, seed=0).set_index("estimator")
    for name in ("reinforce", "rloo", "group mean (Dr. GRPO)", "group mean, token-mean", "std, constant"):
        assert table.loc[name, "bias"] < 4 * table.loc[name, "noise"], name
    for name in ("group mean, sequence-mean", "GRPO (std, sequence-mean)"):
        assert table.loc[name, "bias"] > 5 * table.loc[name, "noise"], name
    T, G = 3, 4  # constant aggregation divides by C = T; the group mean keeps (G − 1)/G
    assert table.loc["rloo", "scale"] == pytest.approx(1 / T, rel=0.1)
    assert table.loc["group mean (Dr. GRPO)", "scale"] == pytest.approx((G - 1) / G / T, rel=0.1)
    assert table.loc["rloo", "variance"] < table.loc["reinforce", "variance"]  # a baseline lowers the variance
