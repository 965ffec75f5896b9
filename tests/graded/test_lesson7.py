"""Graded tests, lesson 7: RLHF and DPO on GPT-2.

What is graded: the log-probability of a response (``model.sequence_logprobs``), the SFT
loss (``sft.sft_loss``), the reward model's Bradley–Terry loss (``reward.reward_loss``),
DPO and its cDPO and IPO variants (``dpo.dpo_loss``), and PPO-RLHF's per-token rewards,
advantages on the token grid and loss (``ppo.per_token_rewards``, ``ppo.token_advantages``,
``ppo.ppo_rlhf_loss``).

The expected values are worked out by hand in the comments, or come from loops written here
from the definitions: a language model's log-probabilities one prefix at a time with the
softmax written out, GAE as the sum of discounted TD residuals over a row's response
tokens, PPO's clipped surrogate and clipped value loss one token at a time. None comes from
rlcourse's own solutions: besides the functions under test, rlcourse gives only inputs (the
tiny GPT-2, the policy with its value head, the batch and config types).

The models are tiny GPT-2s in float64 (2 layers, 16 dimensions, 12 tokens) whose token
embeddings are scaled up so that their next-token distributions are far from uniform; the
comparisons are tight and the whole file takes a few seconds.
"""

import math

import pytest
import torch

from rlcourse.assignments.sandbox import student_module
from rlcourse.rlhf.batching import TokenBatch
from rlcourse.rlhf.model import tiny_gpt2

dpo = student_module("rlcourse.rlhf.dpo")
ppo = student_module("rlcourse.rlhf.ppo")
reward = student_module("rlcourse.rlhf.reward")
sft = student_module("rlcourse.rlhf.sft")
sequence_logprobs = student_module("rlcourse.rlhf.model").sequence_logprobs

F64 = torch.float64
VOCAB, PAD = 12, 0


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on one thread: a second one only adds overhead, on a machine shared with others."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def f64(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def assert_close(got, expected, tol: float = 1e-10):
    """``got`` (a tensor) has ``expected``'s shape and values, within ``tol``."""
    assert isinstance(got, torch.Tensor), f"expected a tensor, got {type(got).__name__}"
    expected = torch.as_tensor(expected.detach() if isinstance(expected, torch.Tensor) else expected,
                               dtype=F64)
    assert tuple(got.shape) == tuple(expected.shape), f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    torch.testing.assert_close(got.detach().double(), expected, rtol=tol, atol=tol)


def tiny_lm(seed: int = 0):
    """A float64 GPT-2 with peaked next-token distributions (log-probs from about −4 to −1)."""
    model = tiny_gpt2(VOCAB, n_positions=16, n_embd=16, n_layer=2, n_head=2, seed=seed, pad_token_id=PAD)
    model = model.double().eval()
    with torch.no_grad():
        model.transformer.wte.weight.mul_(5.0)     # tied to the output layer: sharper logits
    return model


def padded(rows, prompt_lens, length=None, pad_id: int = PAD) -> TokenBatch:
    """A right-padded batch: response_mask 1 on row[n_prompt:], attention_mask 1 on the row."""
    length = length or max(len(row) for row in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    response = torch.zeros_like(ids)
    for b, (row, n_prompt) in enumerate(zip(rows, prompt_lens)):
        ids[b, :len(row)] = torch.tensor(row)
        attention[b, :len(row)] = 1
        response[b, n_prompt:len(row)] = 1
    return TokenBatch(ids, attention, response)


# three sequences: prompts of 2, 1 and 3 tokens, responses of 4, 2 and 5 tokens
ROWS = [[1, 4, 7, 2, 9, 5], [3, 8, 6], [2, 2, 10, 11, 4, 1, 7, 3]]
PROMPT_LENS = [2, 1, 3]


def brute_token_logprobs(model, row, n_prompt) -> list:
    """log π(x_t | x_<t) of the response tokens t = n_prompt, …, len − 1, each from its own
    forward pass over the prefix x_<t alone, with the softmax written out (in plain floats)."""
    out = []
    with torch.no_grad():
        for t in range(n_prompt, len(row)):
            z = [float(v) for v in model(input_ids=torch.tensor([row[:t]])).logits[0, -1]]
            top = max(z)
            out.append(z[row[t]] - top - math.log(sum(math.exp(v - top) for v in z)))
    return out


def log_sigmoid(x: float) -> float:
    """log σ(x) = −log(1 + e^(−x)), in a form that stays finite both ways."""
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return math.exp(log_sigmoid(x))


# --------------------------------------------------------------------------- sequence_logprobs


@pytest.mark.points(3)
def test_sequence_logprobs_sum_the_response_tokens_one_prefix_at_a_time():
    model = tiny_lm(0)
    got = sequence_logprobs(model, *padded(ROWS, PROMPT_LENS))
    expected = [sum(brute_token_logprobs(model, row, n)) for row, n in zip(ROWS, PROMPT_LENS)]
    assert_close(got, expected)
    assert got.requires_grad, "DPO trains through these log-probs: keep them differentiable"
    # a response of one token: the log-probability of that token alone
    batch = padded([ROWS[0]], [len(ROWS[0]) - 1])
    assert_close(sequence_logprobs(model, *batch), brute_token_logprobs(model, ROWS[0], len(ROWS[0]) - 1))


@pytest.mark.points(2)
def test_sequence_logprobs_do_not_depend_on_padding_or_the_rest_of_the_batch():
    model = tiny_lm(1)
    together = sequence_logprobs(model, *padded(ROWS, PROMPT_LENS))
    for b, (row, n) in enumerate(zip(ROWS, PROMPT_LENS)):
        alone = sequence_logprobs(model, *padded([row], [n]))
        longer = sequence_logprobs(model, *padded([row], [n], length=len(row) + 4, pad_id=7))
        assert_close(alone, together[b:b + 1])
        assert_close(longer, together[b:b + 1])
    # the same rows in another order, padded further with another pad token
    order = [2, 0, 1]
    shuffled = sequence_logprobs(model, *padded([ROWS[i] for i in order], [PROMPT_LENS[i] for i in order],
                                                length=11, pad_id=5))
    assert_close(shuffled, together[order])


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_sequence_logprobs_score_the_response_only_and_pass_the_gradient():
    model = tiny_lm(2)
    ids, attention, response = padded(ROWS, PROMPT_LENS)
    # no response token: nothing is scored
    assert_close(sequence_logprobs(model, ids, attention, torch.zeros_like(response)), [0.0, 0.0, 0.0])
    # the whole row taken as the response: every token after the first
    whole = torch.zeros_like(response)
    whole[:, 1:] = attention[:, 1:]
    assert_close(sequence_logprobs(model, ids, attention, whole),
                 [sum(brute_token_logprobs(model, row, 1)) for row in ROWS])
    # differentiable: its gradient is that of the same sum assembled token by token
    got = sequence_logprobs(model, ids, attention, response)
    logits = model(input_ids=ids, attention_mask=attention).logits
    expected = 0.0
    for b, (row, n) in enumerate(zip(ROWS, PROMPT_LENS)):
        for t in range(n, len(row)):
            expected = expected + logits[b, t - 1, row[t]] - logits[b, t - 1].exp().sum().log()
    weight = model.transformer.wte.weight
    (g_got,) = torch.autograd.grad(got.sum(), [weight])
    (g_expected,) = torch.autograd.grad(expected, [weight])
    torch.testing.assert_close(g_got, g_expected, rtol=1e-8, atol=1e-10)
### END HIDDEN TESTS


# --------------------------------------------------------------------------- sft_loss


@pytest.mark.points(3)
def test_sft_loss_is_the_mean_cross_entropy_over_all_response_tokens():
    model = tiny_lm(3)
    batch = padded(ROWS, PROMPT_LENS)
    # 4 + 2 + 5 = 11 response tokens, one mean over all of them (not a mean of the three
    # sequences' means, which would weigh the 2-token response like the 5-token one)
    per_token = [lp for row, n in zip(ROWS, PROMPT_LENS) for lp in brute_token_logprobs(model, row, n)]
    assert len(per_token) == 11
    loss = sft.sft_loss(model, *batch)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0, "the loss is one number: a scalar tensor"
    assert loss.item() == pytest.approx(-sum(per_token) / 11, abs=1e-10)
    # padded further, with another pad token: the same loss
    longer = padded(ROWS, PROMPT_LENS, length=12, pad_id=9)
    assert sft.sft_loss(model, *longer).item() == pytest.approx(loss.item(), abs=1e-10)
    # the gradient reaches the model
    loss.backward()
    assert model.transformer.wte.weight.grad is not None and model.transformer.wte.weight.grad.abs().sum() > 0


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_sft_loss_counts_no_prompt_token():
    model = tiny_lm(4)
    # the same rows, the prompts lengthened by one token each: that token is no longer scored
    lens = [n + 1 for n in PROMPT_LENS]
    per_token = [lp for row, n in zip(ROWS, lens) for lp in brute_token_logprobs(model, row, n)]
    assert len(per_token) == 8
    assert sft.sft_loss(model, *padded(ROWS, lens)).item() == pytest.approx(-sum(per_token) / 8, abs=1e-10)
### END HIDDEN TESTS


# --------------------------------------------------------------------------- reward_loss


@pytest.mark.points(2)
def test_reward_loss_accuracy_and_margin_by_hand():
    # d = r_w − r_l = (1, 0, −2, 4, −2); −log σ(d) = log(1 + e^(−d))
    r_w = f64([2.0, 0.5, -1.0, 3.0, 0.0]).requires_grad_()
    r_l = f64([1.0, 0.5, 1.0, -1.0, 2.0]).requires_grad_()
    d = [1.0, 0.0, -2.0, 4.0, -2.0]
    out = reward.reward_loss(r_w, r_l)
    assert isinstance(out.loss, torch.Tensor) and out.loss.ndim == 0, "the loss is a scalar tensor"
    assert out.loss.item() == pytest.approx(sum(math.log1p(math.exp(-x)) for x in d) / 5, abs=1e-12)
    # pairs 0 and 3 are ranked right; the tie (pair 1) is not: r_w > r_l, strictly
    assert out.accuracy.item() == pytest.approx(2 / 5, abs=1e-12)
    assert out.margin.item() == pytest.approx((1 + 0 - 2 + 4 - 2) / 5, abs=1e-12)
    assert not out.accuracy.requires_grad and not out.margin.requires_grad, "accuracy and margin are detached"
    # ∂L/∂r_w = −σ(−d) / 5 and ∂L/∂r_l = +σ(−d) / 5
    out.loss.backward()
    assert_close(r_w.grad, [-sigmoid(-x) / 5 for x in d], tol=1e-12)
    assert_close(r_l.grad, [sigmoid(-x) / 5 for x in d], tol=1e-12)


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_reward_loss_stays_finite_for_large_margins():
    # d = (−1000, 800): −log σ(−1000) = 1000 (to 1e-400), −log σ(800) = 0; the mean is 500
    r_w = f64([0.0, 800.0]).requires_grad_()
    r_l = f64([1000.0, 0.0])
    out = reward.reward_loss(r_w, r_l)
    assert math.isfinite(out.loss.item()), "log σ(d) must not be computed as log(sigmoid(d))"
    assert out.loss.item() == pytest.approx(500.0, abs=1e-9)
    out.loss.backward()
    assert_close(r_w.grad, [-0.5, 0.0], tol=1e-12)
    assert out.accuracy.item() == pytest.approx(0.5) and out.margin.item() == pytest.approx(-100.0)
### END HIDDEN TESTS


# --------------------------------------------------------------------------- dpo_loss

# β = 0.5. log-ratios log π_θ − log π_ref: chosen (1, −1, 0), rejected (−1, 2, 0.5), so
# h = (2, −3, −0.5) and βh = (1, −1.5, −0.25)
POLICY_CHOSEN, REF_CHOSEN = [-3.0, -6.0, -2.0], [-4.0, -5.0, -2.0]
POLICY_REJECTED, REF_REJECTED = [-5.0, -4.0, -7.0], [-4.0, -6.0, -7.5]
H = [2.0, -3.0, -0.5]


def dpo_inputs():
    """(π_θ(y_w), π_θ(y_l), π_ref(y_w), π_ref(y_l)); the policy's two require a gradient."""
    return (f64(POLICY_CHOSEN).requires_grad_(), f64(POLICY_REJECTED).requires_grad_(),
            f64(REF_CHOSEN), f64(REF_REJECTED))


@pytest.mark.points(1)
@pytest.mark.parametrize("beta", [0.1, 2.0])
def test_dpo_loss_is_ln2_at_the_reference(beta):
    # π_θ = π_ref: h = 0, −log σ(0) = ln 2 whatever β and ε, every implicit reward is 0;
    # the IPO loss is (0 − 1/(2β))²
    logp_w, logp_l = f64([-3.0, -7.5, -1.0]), f64([-4.0, -2.0, -6.0])
    for smoothing in (0.0, 0.3):
        out = dpo.dpo_loss(logp_w, logp_l, logp_w, logp_l, beta, "sigmoid", smoothing)
        assert out.loss.item() == pytest.approx(math.log(2), abs=1e-12)
        assert_close(out.chosen_rewards, [0.0, 0.0, 0.0])
        assert_close(out.rejected_rewards, [0.0, 0.0, 0.0])
        assert out.reward_accuracy.item() == 0 and out.reward_margin.item() == 0
    ipo = dpo.dpo_loss(logp_w, logp_l, logp_w, logp_l, beta, "ipo")
    assert ipo.loss.item() == pytest.approx(1 / (2 * beta) ** 2, rel=1e-12)


@pytest.mark.points(3)
def test_dpo_sigmoid_loss_and_implicit_rewards_by_hand():
    pw, pl, rw, rl = dpo_inputs()
    out = dpo.dpo_loss(pw, pl, rw, rl, 0.5)
    # L = mean −log σ(βh) = mean log(1 + e^(−βh)), βh = (1, −1.5, −0.25)
    assert isinstance(out.loss, torch.Tensor) and out.loss.ndim == 0, "the loss is a scalar tensor"
    assert out.loss.item() == pytest.approx(sum(-log_sigmoid(0.5 * h) for h in H) / 3, abs=1e-12)
    # implicit rewards β (log π_θ − log π_ref): chosen (0.5, −0.5, 0), rejected (−0.5, 1, 0.25)
    assert_close(out.chosen_rewards, [0.5, -0.5, 0.0])
    assert_close(out.rejected_rewards, [-0.5, 1.0, 0.25])
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad, \
        "the implicit rewards are detached"
    # chosen − rejected = (1, −1.5, −0.25): one pair of three ranked right, mean margin −0.25
    assert out.reward_accuracy.item() == pytest.approx(1 / 3, abs=1e-12)
    assert out.reward_margin.item() == pytest.approx(-0.25, abs=1e-12)
    # ∂L/∂log π_θ(y_w) = −β σ(−βh) / 3 and ∂L/∂log π_θ(y_l) = +β σ(−βh) / 3
    out.loss.backward()
    assert_close(pw.grad, [-0.5 * sigmoid(-0.5 * h) / 3 for h in H], tol=1e-12)
    assert_close(pl.grad, [0.5 * sigmoid(-0.5 * h) / 3 for h in H], tol=1e-12)


@pytest.mark.points(1)
def test_cdpo_label_smoothing_by_hand():
    # ε = 0.2: L = mean [−0.8 log σ(βh) − 0.2 log σ(−βh)]
    pw, pl, rw, rl = dpo_inputs()
    out = dpo.dpo_loss(pw, pl, rw, rl, 0.5, "sigmoid", 0.2)
    expected = sum(-0.8 * log_sigmoid(0.5 * h) - 0.2 * log_sigmoid(-0.5 * h) for h in H) / 3
    assert out.loss.item() == pytest.approx(expected, abs=1e-12)
    assert_close(out.chosen_rewards, [0.5, -0.5, 0.0])      # the implicit rewards do not change
    # ∂/∂h of each term: β [−0.8 σ(−βh) + 0.2 σ(βh)]
    out.loss.backward()
    assert_close(pw.grad, [0.5 * (-0.8 * sigmoid(-0.5 * h) + 0.2 * sigmoid(0.5 * h)) / 3 for h in H], tol=1e-12)


@pytest.mark.points(2)
def test_ipo_loss_by_hand():
    # L = mean (h − 1/(2β))², 1/(2β) = 1: ((2 − 1)² + (−3 − 1)² + (−0.5 − 1)²) / 3 = 19.25 / 3
    pw, pl, rw, rl = dpo_inputs()
    out = dpo.dpo_loss(pw, pl, rw, rl, 0.5, "ipo")
    assert out.loss.item() == pytest.approx(19.25 / 3, abs=1e-12)
    assert_close(out.chosen_rewards, [0.5, -0.5, 0.0])
    assert_close(out.rejected_rewards, [-0.5, 1.0, 0.25])
    # ∂L/∂log π_θ(y_w) = 2 (h − 1) / 3 = (2/3, −8/3, −1)
    out.loss.backward()
    assert_close(pw.grad, [2 / 3, -8 / 3, -1.0], tol=1e-12)
    assert_close(pl.grad, [-2 / 3, 8 / 3, 1.0], tol=1e-12)
    # another β moves the target: β = 0.25, 1/(2β) = 2: (0 + 25 + 6.25) / 3
    assert dpo.dpo_loss(*dpo_inputs(), 0.25, "ipo").loss.item() == pytest.approx(31.25 / 3, abs=1e-12)


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_dpo_loss_on_random_pairs_matches_a_pair_by_pair_sum():
    g = torch.Generator().manual_seed(7)
    logps = [-10 * torch.rand(20, generator=g, dtype=F64) for _ in range(4)]
    for beta, kind, smoothing in ((0.1, "sigmoid", 0.0), (0.3, "sigmoid", 0.1), (0.2, "ipo", 0.0)):
        out = dpo.dpo_loss(*logps, beta, kind, smoothing)
        total, right, margin = 0.0, 0, 0.0
        for i in range(20):
            cw = float(logps[0][i] - logps[2][i])
            cl = float(logps[1][i] - logps[3][i])
            h = cw - cl
            if kind == "ipo":
                total += (h - 1 / (2 * beta)) ** 2
            else:
                total += -(1 - smoothing) * log_sigmoid(beta * h) - smoothing * log_sigmoid(-beta * h)
            right += beta * cw > beta * cl
            margin += beta * h
        assert out.loss.item() == pytest.approx(total / 20, abs=1e-10)
        assert out.reward_accuracy.item() == pytest.approx(right / 20, abs=1e-12)
        assert out.reward_margin.item() == pytest.approx(margin / 20, abs=1e-10)
### END HIDDEN TESTS


# --------------------------------------------------------------------------- per_token_rewards

# Three rows on a grid of T = 6 columns: row 0 a prompt column, 3 response tokens, 2 padding;
# row 1 a response that runs to the last column; row 2 a response of one token.
MASK = torch.tensor([[0, 1, 1, 1, 0, 0],
                     [0, 0, 1, 1, 1, 1],
                     [0, 0, 0, 1, 0, 0]]).bool()


@pytest.mark.points(2)
def test_per_token_rewards_by_hand():
    # log π − log π_ref everywhere (off the mask too, where it must be ignored)
    diff = f64([[0.4, 1.0, -2.0, 0.6, 3.0, -1.0],
                [2.0, -0.8, 0.2, 0.4, -1.2, 1.6],
                [1.0, 1.0, 1.0, -3.0, 5.0, 0.3]])
    ref_logp = -torch.linspace(0.5, 3.0, 18, dtype=F64).reshape(3, 6)
    logp = ref_logp + diff
    scores = f64([2.0, -1.0, 0.5])
    # β = 0.5: r_t = −0.5 (log π − log π_ref) on the response, plus R on the row's last token
    expected = [[0, -0.5, 1.0, -0.3 + 2.0, 0, 0],
                [0, 0, -0.1, -0.2, 0.6, -0.8 - 1.0],
                [0, 0, 0, 1.5 + 0.5, 0, 0]]
    got = ppo.per_token_rewards(logp, ref_logp, scores, MASK, 0.5)
    assert_close(got, expected, tol=1e-12)
    # a row's return is R − β k1, k1 = Σ_t m_t (log π − log π_ref) = (−0.4, 1.0, −3.0)
    assert_close(got.sum(-1), [2.0 - 0.5 * (-0.4), -1.0 - 0.5 * 1.0, 0.5 - 0.5 * (-3.0)], tol=1e-12)
    # β = 0: only the scores remain, each on its row's last response token
    assert_close(ppo.per_token_rewards(logp, ref_logp, scores, MASK, 0.0),
                 [[0, 0, 0, 2.0, 0, 0], [0, 0, 0, 0, 0, -1.0], [0, 0, 0, 0.5, 0, 0]], tol=1e-12)


def random_grid(seed: int, B: int = 4, T: int = 9):
    """A mask of contiguous response tokens (prompt before, padding after) and numbers
    everywhere, off the mask too: what lies there must not matter."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, T, dtype=torch.bool)
    spans = [(1, 4), (2, T), (0, 6), (5, 6)][:B]    # [first, last + 1): ends inside, at T, one token
    for b, (first, stop) in enumerate(spans):
        mask[b, first:stop] = True
    numbers = [torch.randn(B, T, generator=g, dtype=F64) for _ in range(3)]
    return mask, numbers, torch.randn(B, generator=g, dtype=F64)


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_per_token_rewards_match_a_token_by_token_loop():
    mask, (logp, ref_logp, _), scores = random_grid(3)
    before = [logp.clone(), ref_logp.clone(), scores.clone()]
    beta = 0.37
    got = ppo.per_token_rewards(logp, ref_logp, scores, mask, beta)
    expected = torch.zeros_like(logp)
    for b in range(mask.shape[0]):
        columns = [t for t in range(mask.shape[1]) if mask[b, t]]
        for t in columns:
            expected[b, t] = -beta * (float(logp[b, t]) - float(ref_logp[b, t]))
        expected[b, columns[-1]] += float(scores[b])
    assert_close(got, expected, tol=1e-12)
    for tensor, kept in zip((logp, ref_logp, scores), before):
        assert torch.equal(tensor, kept), "an input was changed in place"
### END HIDDEN TESTS


# --------------------------------------------------------------------------- token_advantages


def brute_token_gae(rewards, values, mask, gamma: float, lam: float):
    """Â_t = Σ_{k=t}^{e} (γλ)^(k−t) δ_k over a row's response tokens t … e (its last), with
    δ_k = r_k + γ V_{k+1} − V_k and no V_{k+1} at k = e; G_t = Â_t + V_t; 0 off the mask."""
    B, T = rewards.shape
    A, G = [[0.0] * T for _ in range(B)], [[0.0] * T for _ in range(B)]
    for b in range(B):
        columns = [t for t in range(T) if mask[b, t]]
        last = columns[-1]

        def delta(k):
            future = 0.0 if k == last else float(values[b, k + 1])
            return float(rewards[b, k]) + gamma * future - float(values[b, k])

        for t in columns:
            A[b][t] = sum((gamma * lam) ** (k - t) * delta(k) for k in range(t, last + 1))
            G[b][t] = A[b][t] + float(values[b, t])
    return A, G


@pytest.mark.points(2)
def test_token_advantages_by_hand():
    # one row: a prompt column, response tokens at columns 1, 2, 3, a padding column; γ = 0.9,
    # λ = 0.5, so γλ = 0.45. The 5, 9, 7 and −4 lie off the mask: they must play no part.
    rewards = f64([[5.0, 1.0, 0.0, 2.0, 9.0]])
    values = f64([[7.0, 0.5, 1.0, -1.0, -4.0]])
    mask = torch.tensor([[False, True, True, True, False]])
    # δ_3 = 2 − (−1) = 3                          (the last token: nothing after it)
    # δ_2 = 0 + 0.9 · (−1) − 1 = −1.9
    # δ_1 = 1 + 0.9 · 1 − 0.5 = 1.4
    # Â_3 = 3, Â_2 = −1.9 + 0.45 · 3 = −0.55, Â_1 = 1.4 + 0.45 · (−0.55) = 1.1525
    # G = Â + V: 1.6525, 0.45, 2
    advantages, returns = ppo.token_advantages(rewards, values, mask, 0.9, 0.5)
    assert_close(advantages, [[0.0, 1.1525, -0.55, 3.0, 0.0]], tol=1e-12)
    assert_close(returns, [[0.0, 1.6525, 0.45, 2.0, 0.0]], tol=1e-12)


@pytest.mark.points(3)
@pytest.mark.parametrize("seed, gamma, lam", [(0, 1.0, 0.95), (1, 0.9, 0.6), (2, 0.7, 1.0)])
def test_token_advantages_match_a_gae_loop_over_each_row(seed, gamma, lam):
    mask, (rewards, values, _), _ = random_grid(seed)
    values = values + 3.0 * (~mask)             # large values off the mask: using one shows
    advantages, returns = ppo.token_advantages(rewards, values, mask, gamma, lam)
    A, G = brute_token_gae(rewards, values, mask, gamma, lam)
    assert_close(advantages, A)
    assert_close(returns, G)


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_token_advantages_at_lambda_0_and_1():
    mask, (rewards, values, _), _ = random_grid(11)
    # λ = 1, γ = 1: Â_t = (Σ_{k ≥ t} r_k) − V_t over the row's response tokens
    advantages, returns = ppo.token_advantages(rewards, values, mask, 1.0, 1.0)
    # λ = 0: Â_t = δ_t, G_t = r_t + γ V_{t+1} (r_t at the last token)
    td, td_returns = ppo.token_advantages(rewards, values, mask, 0.8, 0.0)
    for b in range(mask.shape[0]):
        columns = [t for t in range(mask.shape[1]) if mask[b, t]]
        for i, t in enumerate(columns):
            to_go = sum(float(rewards[b, k]) for k in columns[i:])
            assert float(advantages[b, t]) == pytest.approx(to_go - float(values[b, t]), abs=1e-10)
            assert float(returns[b, t]) == pytest.approx(to_go, abs=1e-10)
            future = float(values[b, t + 1]) if i + 1 < len(columns) else 0.0
            assert float(td_returns[b, t]) == pytest.approx(float(rewards[b, t]) + 0.8 * future, abs=1e-10)
            assert float(td[b, t]) == pytest.approx(float(rewards[b, t]) + 0.8 * future - float(values[b, t]),
                                                    abs=1e-10)
    assert not advantages[~mask].any() and not returns[~mask].any() and not td[~mask].any()
### END HIDDEN TESTS


# --------------------------------------------------------------------------- ppo_rlhf_loss

# rollouts: prompts of 2, 3 and 1 tokens, responses of 4, 3 and 5; SFT rows for the ptx term
PPO_ROWS = [[1, 6, 3, 9, 2, 5], [2, 7, 7, 4, 10, 11], [1, 8, 5, 5, 3, 9]]
PPO_PROMPT_LENS = [2, 3, 1]
PTX_ROWS = [[1, 4, 4, 6, 2], [1, 3, 9, 10, 11, 5, 8]]
PTX_PROMPT_LENS = [2, 3]


def ppo_setup(seed: int):
    """A policy with a random value head, and a minibatch collected by an older policy.

    log π_θold is the policy's own log-prob moved by noise, so the ratios spread on both
    sides of 1 ± ε; V_old likewise, so some moves of the critic are inside ±0.2 and some
    outside. Off the mask every field holds numbers that must play no part.
    """
    policy = ppo.PolicyWithValue(tiny_lm(seed))
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        policy.v_head.weight.copy_(0.5 * torch.randn(policy.v_head.weight.shape, generator=g, dtype=F64))
        policy.v_head.bias.fill_(0.1)
    batch = padded(PPO_ROWS, PPO_PROMPT_LENS, length=8)
    mask = batch.response_mask[:, 1:].bool()
    logp, values = hand_logp_and_values(policy, batch, 1.0)
    shape = mask.shape
    with torch.no_grad():
        logp_old = logp + 0.3 * torch.randn(shape, generator=g, dtype=F64)
        values_old = values + 0.3 * torch.randn(shape, generator=g, dtype=F64)
    advantages = torch.randn(shape, generator=g, dtype=F64)
    returns = values_old + torch.randn(shape, generator=g, dtype=F64)
    ref_logp = logp_old + 0.1 * torch.randn(shape, generator=g, dtype=F64)
    scores = torch.randn(len(PPO_ROWS), generator=g, dtype=F64)
    kl = ((logp_old - ref_logp) * mask).sum(-1)
    return policy, ppo.Experience(batch, mask, logp_old, ref_logp, values_old, advantages, returns, scores, kl)


def hand_logp_and_values(policy, batch: TokenBatch, temperature: float):
    """log π(x_{t+1} | x_{≤t}) (logits / τ) and V(x_{≤t}), each [B, L − 1], from the GPT-2 itself."""
    out = policy.lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    log_probs = torch.log_softmax(out.logits[:, :-1] / temperature, -1)
    logp = log_probs.gather(-1, batch.input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    values = policy.v_head(out.hidden_states[-1][:, :-1]).squeeze(-1)
    return logp, values


def hand_rlhf_loss(policy, mb, clip_range: float, vf_coef: float, clip_range_vf, temperature: float = 1.0,
                   ptx_batch=None, ptx_coef: float = 0.0):
    """(L, L^CLIP, L_V, L_ptx), each term summed here token by token over the response tokens."""
    logp, values = hand_logp_and_values(policy, mb.batch, temperature)
    tokens = [(b, t) for b in range(mb.mask.shape[0]) for t in range(mb.mask.shape[1]) if mb.mask[b, t]]
    n = len(tokens)
    lo, hi = 1 - clip_range, 1 + clip_range
    policy_loss, value_loss = 0.0, 0.0
    for b, t in tokens:
        r = torch.exp(logp[b, t] - float(mb.logp_old[b, t]))
        adv = float(mb.advantages[b, t])
        term = r * adv
        r_clip = r if lo <= r.item() <= hi else torch.tensor(lo if r.item() < lo else hi, dtype=F64)
        if (r_clip * adv).item() < term.item():
            term = r_clip * adv
        policy_loss = policy_loss - term / n
        v, v_old, y = values[b, t], float(mb.values_old[b, t]), float(mb.returns[b, t])
        error = (v - y) ** 2
        if clip_range_vf is not None:
            move = v.item() - v_old
            v_clip = v if abs(move) <= clip_range_vf else torch.tensor(
                v_old + math.copysign(clip_range_vf, move), dtype=F64)
            if ((v_clip - y) ** 2).item() > error.item():
                error = (v_clip - y) ** 2
        value_loss = value_loss + error / n
    loss = policy_loss + vf_coef * value_loss
    ptx_loss = torch.zeros((), dtype=F64)
    if ptx_batch is not None:
        # −mean log π over the SFT rows' response tokens, at temperature 1
        ptx_logp, _ = hand_logp_and_values(policy, ptx_batch, 1.0)
        ptx_mask = ptx_batch.response_mask[:, 1:].bool()
        ptx_loss = -sum(ptx_logp[b, t] for b in range(ptx_mask.shape[0])
                        for t in range(ptx_mask.shape[1]) if ptx_mask[b, t]) / int(ptx_mask.sum())
        loss = loss + ptx_coef * ptx_loss
    return loss, policy_loss, value_loss, ptx_loss


def check_terms(terms, expected, tol: float = 1e-6):
    # V comes out of PolicyWithValue in float32: the value terms are exact to about 1e-7
    for name, got, want in zip(("loss", "policy_loss", "value_loss", "ptx_loss"), terms, expected):
        assert isinstance(got, torch.Tensor) and got.ndim == 0, f"{name} should be a scalar tensor"
        assert got.item() == pytest.approx(want.item(), abs=tol), name


@pytest.mark.points(3)
@pytest.mark.parametrize("clip_range_vf", [None, 0.2])
def test_ppo_rlhf_loss_term_by_term(clip_range_vf):
    policy, mb = ppo_setup(0)
    with torch.no_grad():
        logp, values = hand_logp_and_values(policy, mb.batch, 1.0)
        ratios = (logp - mb.logp_old)[mb.mask].exp()
        moves = (values - mb.values_old)[mb.mask].abs()
    # the batch has ratios inside and outside [0.9, 1.1], and critic moves inside and outside ±0.2
    assert ((ratios - 1).abs() > 0.1).any() and ((ratios - 1).abs() < 0.1).any()
    assert (moves > 0.2).any() and (moves < 0.2).any()
    config = ppo.PPOConfig(clip_range=0.1, vf_coef=0.3, clip_range_vf=clip_range_vf)
    terms = ppo.ppo_rlhf_loss(policy, mb, config)
    check_terms(terms, hand_rlhf_loss(policy, mb, 0.1, 0.3, clip_range_vf))


@pytest.mark.points(2)
def test_ppo_rlhf_loss_gradient_reaches_the_policy_and_the_value_head_as_claimed():
    policy, mb = ppo_setup(1)
    config = ppo.PPOConfig(clip_range=0.15, vf_coef=0.5, clip_range_vf=0.2, temperature=0.8)
    params = list(policy.parameters())
    got = torch.autograd.grad(ppo.ppo_rlhf_loss(policy, mb, config).loss, params, allow_unused=True)
    expected, *_ = hand_rlhf_loss(policy, mb, 0.15, 0.5, 0.2, temperature=0.8)
    for g, e in zip(got, torch.autograd.grad(expected, params)):
        assert g is not None, "a parameter of the policy or its value head gets no gradient"
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-8)


@pytest.mark.points(2)
def test_ppo_rlhf_loss_adds_the_ptx_term_at_temperature_1():
    policy, mb = ppo_setup(2)
    ptx_batch = padded(PTX_ROWS, PTX_PROMPT_LENS)
    config = ppo.PPOConfig(clip_range=0.2, vf_coef=0.1, clip_range_vf=None, temperature=0.7, ptx_coef=0.5)
    terms = ppo.ppo_rlhf_loss(policy, mb, config, ptx_batch)
    expected = hand_rlhf_loss(policy, mb, 0.2, 0.1, None, temperature=0.7, ptx_batch=ptx_batch, ptx_coef=0.5)
    check_terms(terms, expected)
    # ptx's −mean log π by hand, one prefix at a time: 3 + 4 response tokens
    per_token = [lp for row, n in zip(PTX_ROWS, PTX_PROMPT_LENS) for lp in brute_token_logprobs(policy.lm, row, n)]
    assert terms.ptx_loss.item() == pytest.approx(-sum(per_token) / 7, abs=1e-10)
    # without SFT rows, no ptx term
    alone = ppo.ppo_rlhf_loss(policy, mb, config)
    check_terms(alone, hand_rlhf_loss(policy, mb, 0.2, 0.1, None, temperature=0.7))
    assert alone.ptx_loss.item() == 0


### BEGIN HIDDEN TESTS
@pytest.mark.points(1)
def test_ppo_rlhf_loss_leaves_ptx_out_when_its_coefficient_is_0():
    policy, mb = ppo_setup(3)
    ptx_batch = padded(PTX_ROWS, PTX_PROMPT_LENS)
    config = ppo.PPOConfig(clip_range=0.25, vf_coef=0.2, clip_range_vf=0.1, ptx_coef=0.0)
    terms = ppo.ppo_rlhf_loss(policy, mb, config, ptx_batch)
    check_terms(terms, hand_rlhf_loss(policy, mb, 0.25, 0.2, 0.1))
    assert terms.ptx_loss.item() == 0
    # the gradient of the ptx term alone: γ_ptx × that of the SFT loss
    with_ptx = ppo.PPOConfig(clip_range=0.25, vf_coef=0.2, clip_range_vf=0.1, ptx_coef=2.0)
    weight = policy.lm.transformer.wte.weight
    (g_with,) = torch.autograd.grad(ppo.ppo_rlhf_loss(policy, mb, with_ptx, ptx_batch).loss, [weight])
    (g_without,) = torch.autograd.grad(ppo.ppo_rlhf_loss(policy, mb, config, ptx_batch).loss, [weight])
    *_, ptx_loss = hand_rlhf_loss(policy, mb, 0.25, 0.2, 0.1, ptx_batch=ptx_batch, ptx_coef=2.0)
    (g_ptx,) = torch.autograd.grad(ptx_loss, [weight])
    torch.testing.assert_close(g_with - g_without, 2.0 * g_ptx, rtol=1e-6, atol=1e-9)
### END HIDDEN TESTS
