"""Lesson 7's invariants: per-sequence log-probs, the SFT, reward-model and DPO losses, the
frozen reference. Tiny random GPT-2s on raw token ids; no tokenizer, no data files."""

import math

import pytest
import torch
import torch.nn.functional as F

from rlcourse.config import ConfigError
from rlcourse.rlhf.dpo import concatenated_logprobs, dpo_loss
from rlcourse.rlhf.model import frozen_copy, sequence_logprobs, tiny_gpt2, token_logprobs
from rlcourse.rlhf.reward import RewardModel, ranking_pairs, reward_loss
from rlcourse.rlhf.sft import sft_loss

VOCAB = 20
PAD = 0

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(dtype=torch.float64, seed=0):
    return tiny_gpt2(VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=2, seed=seed,
                     pad_token_id=PAD).to(dtype).eval()


def right_padded(rows, prompt_lens, length=None):
    """input_ids, attention_mask, response_mask of lists of token ids, right-padded with PAD."""
    length = length or max(map(len, rows))
    ids = torch.full((len(rows), length), PAD, dtype=torch.long)
    attn = torch.zeros_like(ids)
    resp = torch.zeros_like(ids)
    for b, (row, n_prompt) in enumerate(zip(rows, prompt_lens)):
        ids[b, :len(row)] = torch.tensor(row)
        attn[b, :len(row)] = 1
        resp[b, n_prompt:len(row)] = 1
    return ids, attn, resp


ROWS = [[3, 4, 5, 6, 7, 8], [9, 10, 11, 12], [5, 5, 13, 14, 15, 16, 17]]
PROMPT_LENS = [2, 1, 3]


@pytest.fixture(scope="module")
def model():
    return tiny()


# ---------------------------------------------------------------- log-probs

def test_sequence_logprobs_equals_a_loop_over_prefixes(model):
    ids, attn, resp = right_padded(ROWS, PROMPT_LENS)
    got = sequence_logprobs(model, ids, attn, resp)
    assert got.shape == (3,)
    with torch.no_grad():
        for b, (row, n_prompt) in enumerate(zip(ROWS, PROMPT_LENS)):
            want = 0.0
            for t in range(n_prompt, len(row)):
                logits = model(torch.tensor([row[:t]])).logits[0, -1]
                want += F.log_softmax(logits, -1)[row[t]].item()
            assert got[b].item() == pytest.approx(want, abs=1e-10)


def test_token_logprobs_shape_and_sum(model):
    ids, attn, resp = right_padded(ROWS, PROMPT_LENS)
    per_token = token_logprobs(model, ids, attn)
    assert per_token.shape == (3, ids.shape[1] - 1)
    assert (per_token <= 0).all()
    torch.testing.assert_close((per_token * resp[:, 1:]).sum(-1), sequence_logprobs(model, ids, attn, resp))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logprobs_do_not_change_with_padding_or_batch_size(dtype):
    model = tiny(dtype)
    row, n_prompt = ROWS[1], PROMPT_LENS[1]
    alone = sequence_logprobs(model, *right_padded([row], [n_prompt]))
    padded = sequence_logprobs(model, *right_padded([row], [n_prompt], length=len(row) + 5))
    in_batch = sequence_logprobs(model, *right_padded([row, ROWS[2]], [n_prompt, PROMPT_LENS[2]]))
    assert padded.item() == pytest.approx(alone.item(), abs=1e-5)
    assert in_batch[0].item() == pytest.approx(alone.item(), abs=1e-5)


def test_padding_token_ids_change_nothing(model):
    ids, attn, resp = right_padded(ROWS, PROMPT_LENS)
    other = ids.clone()
    other[attn == 0] = 7
    torch.testing.assert_close(sequence_logprobs(model, other, attn, resp), sequence_logprobs(model, ids, attn, resp))


# ---------------------------------------------------------------- SFT

def test_sft_loss_is_mean_cross_entropy_over_response_tokens(model):
    ids, attn, resp = right_padded(ROWS, PROMPT_LENS)
    ces = []
    with torch.no_grad():
        logits = model(ids, attention_mask=attn).logits
        for b, (row, n_prompt) in enumerate(zip(ROWS, PROMPT_LENS)):
            for t in range(n_prompt, len(row)):
                ces.append(F.cross_entropy(logits[b, t - 1], torch.tensor(row[t])).item())
    loss = sft_loss(model, ids, attn, resp)
    assert len(ces) == sum(len(r) - n for r, n in zip(ROWS, PROMPT_LENS))
    assert loss.item() == pytest.approx(sum(ces) / len(ces), abs=1e-10)
    other = ids.clone()
    other[attn == 0] = 11
    assert sft_loss(model, other, attn, resp).item() == pytest.approx(loss.item(), abs=1e-12)


def test_sft_loss_has_gradients(model):
    policy = tiny(seed=1).train()
    loss = sft_loss(policy, *right_padded(ROWS, PROMPT_LENS))
    loss.backward()
    assert policy.transformer.wte.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- reference model

def test_frozen_copy_never_changes_while_the_policy_trains():
    policy = tiny(seed=2).train()
    ref = frozen_copy(policy)
    assert not ref.training
    assert sum(p.numel() for p in ref.parameters() if p.requires_grad) == 0
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    ids, attn, resp = right_padded(ROWS, PROMPT_LENS)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        sft_loss(policy, ids, attn, resp).backward()
        opt.step()
    for k, v in ref.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.allclose(policy.transformer.wte.weight, ref.transformer.wte.weight)


# ---------------------------------------------------------------- DPO

def test_dpo_losses_at_the_reference_point():
    logp_w, logp_l = torch.tensor([-3.0, -7.5]), torch.tensor([-4.0, -2.0])
    sig = dpo_loss(logp_w, logp_l, logp_w, logp_l, beta=0.1)
    assert sig.loss.item() == pytest.approx(math.log(2))
    assert sig.reward_accuracy.item() == 0 and sig.reward_margin.item() == 0
    cdpo = dpo_loss(logp_w, logp_l, logp_w, logp_l, beta=0.1, label_smoothing=0.2)
    assert cdpo.loss.item() == pytest.approx(math.log(2))
    ipo = dpo_loss(logp_w, logp_l, logp_w, logp_l, beta=0.1, loss_type="ipo")
    assert ipo.loss.item() == pytest.approx((1 / 0.2) ** 2)


def test_dpo_loss_by_hand():
    pw, pl = torch.tensor([-1.0, -5.0], requires_grad=True), torch.tensor([-2.0, -1.0])
    rw, rl = torch.tensor([-1.5, -4.0]), torch.tensor([-1.0, -2.0])
    beta = 0.5
    # h = (pw − rw) − (pl − rl): pair 0: 0.5 − (−1) = 1.5; pair 1: −1 − 1 = −2
    h = [1.5, -2.0]
    ls = lambda x: -math.log1p(math.exp(-x))  # noqa: E731  log σ(x)
    out = dpo_loss(pw, pl, rw, rl, beta)
    assert out.loss.item() == pytest.approx(-(ls(0.75) + ls(-1.0)) / 2)
    torch.testing.assert_close(out.chosen_rewards, torch.tensor([0.25, -0.5]))
    torch.testing.assert_close(out.rejected_rewards, torch.tensor([-0.5, 0.5]))
    assert not out.chosen_rewards.requires_grad
    assert out.reward_accuracy.item() == pytest.approx(0.5)
    assert out.reward_margin.item() == pytest.approx((0.75 - 1.0) / 2)
    eps = 0.1
    cdpo = dpo_loss(pw, pl, rw, rl, beta, label_smoothing=eps)
    want = sum(-(1 - eps) * ls(beta * x) - eps * ls(-beta * x) for x in h) / 2
    assert cdpo.loss.item() == pytest.approx(want)
    ipo = dpo_loss(pw, pl, rw, rl, beta, loss_type="ipo")
    assert ipo.loss.item() == pytest.approx(((1.5 - 1.0) ** 2 + (-2.0 - 1.0) ** 2) / 2)
    out.loss.backward()
    assert pw.grad is not None and (pw.grad < 0).all()  # raising log π(y_w) lowers the loss


@pytest.mark.parametrize("kwargs, field", [({"beta": 0.0}, "beta"), ({"beta": -1.0}, "beta"),
                                           ({"beta": 0.1, "label_smoothing": 0.5}, "label_smoothing"),
                                           ({"beta": 0.1, "label_smoothing": -0.1}, "label_smoothing"),
                                           ({"beta": 0.1, "loss_type": "hinge"}, "loss_type")])
def test_dpo_loss_rejects_bad_arguments(kwargs, field):
    x = torch.zeros(2)
    with pytest.raises(ValueError, match=field):
        dpo_loss(x, x, x, x, **kwargs)
    assert issubclass(ConfigError, ValueError)


def test_concatenated_logprobs_equals_separate_calls(model):
    chosen = dict(zip(("input_ids", "attention_mask", "response_mask"), right_padded(ROWS[:2], PROMPT_LENS[:2])))
    rejected = dict(zip(("input_ids", "attention_mask", "response_mask"),
                        right_padded([ROWS[2], [1, 2, 3]], [PROMPT_LENS[2], 1])))
    assert chosen["input_ids"].shape[1] != rejected["input_ids"].shape[1]
    got_w, got_l = concatenated_logprobs(model, chosen, rejected)
    torch.testing.assert_close(got_w, sequence_logprobs(model, *chosen.values()))
    torch.testing.assert_close(got_l, sequence_logprobs(model, *rejected.values()))


# ---------------------------------------------------------------- reward model

def test_reward_loss_by_hand():
    rw, rl = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, -1.0])
    out = reward_loss(rw, rl)
    want = sum(math.log1p(math.exp(-d)) for d in (1.0, -1.0, 2.0)) / 3
    assert out.loss.item() == pytest.approx(want)
    assert out.accuracy.item() == pytest.approx(2 / 3)
    assert out.margin.item() == pytest.approx(2 / 3)
    big = reward_loss(torch.tensor([0.0]), torch.tensor([1000.0]))
    assert big.loss.item() == pytest.approx(1000.0)  # logsigmoid stays finite


def test_ranking_pairs():
    assert ranking_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert ranking_pairs(1) == []


def test_reward_model_reads_the_last_real_token(model):
    rm = RewardModel.from_lm(model).double().eval()
    assert rm.body is not model.transformer
    ids, attn, _ = right_padded(ROWS, PROMPT_LENS)
    r = rm(ids, attn)
    assert r.shape == (3,)
    other = ids.clone()
    other[attn == 0] = 13
    torch.testing.assert_close(rm(other, attn), r)
    last = attn.sum(-1) - 1
    changed = ids.clone()
    changed[1, last[1]] = (ids[1, last[1]] + 1) % VOCAB
    r2 = rm(changed, attn)
    assert r2[1] != r[1]
    torch.testing.assert_close(r2[[0, 2]], r[[0, 2]])
    alone = rm(*right_padded([ROWS[1]], [PROMPT_LENS[1]])[:2])
    assert alone.item() == pytest.approx(r[1].item(), abs=1e-10)


def test_reward_model_from_config():
    rm = RewardModel.from_config(tiny().config)
    ids, attn, _ = right_padded(ROWS, PROMPT_LENS)
    loss = reward_loss(*rm(ids, attn)[:2].split(1)).loss
    loss.backward()
    assert rm.head.weight.grad is not None
