"""The key/value-cached sampler draws what the uncached one draws, and scores what it drew.

Same model, same prompts (of different lengths, so the left padding differs per row), same
generator seed: the cached path (the prompt once, then one token per step reading the
cache) and the uncached path (the whole prefix every step) must give the same tokens and
the same log-probabilities; and those log-probabilities must be the ones
``token_logprobs`` gives the finished right-padded batch at the same temperature.
"""

import pytest
import torch

from rlcourse.rlhf.batching import generate, left_padded, sample
from rlcourse.rlhf.model import tiny_gpt2, token_logprobs
from rlcourse.rlhf.ppo import action_mask
from rlcourse.rlhf.tokenizer import WordTokenizer

PROMPTS = ["praise the film", "criticise the old film", "praise", "criticise the"] * 2


@pytest.fixture(scope="module")
def lm():
    torch.set_num_threads(1)
    tokenizer = WordTokenizer.toy()
    model = tiny_gpt2(tokenizer.vocab_size, n_embd=32, seed=1, bos_token_id=1, eos_token_id=2, pad_token_id=0).eval()
    return model, tokenizer


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_cached_and_uncached_draw_the_same_tokens(lm, temperature):
    model, tokenizer = lm
    ids, mask = left_padded(tokenizer, PROMPTS)
    out = {}
    for cache in (True, False):
        g = torch.Generator().manual_seed(3)
        out[cache] = generate(model, ids, mask, 16, tokenizer.eos_token_id, 0, temperature, g, use_cache=cache)
    assert out[True][0].shape[1] > 4
    assert torch.equal(out[True][0], out[False][0])
    torch.testing.assert_close(out[True][1], out[False][1], atol=1e-5, rtol=1e-5)


def test_sampling_log_probs_are_the_scoring_log_probs(lm):
    model, tokenizer = lm
    for temperature in (1.0, 0.7):
        batch = sample(model, tokenizer, PROMPTS, 12, temperature, torch.Generator().manual_seed(5))
        ids, mask = left_padded(tokenizer, PROMPTS)
        tokens, logps = generate(model, ids, mask, 12, 2, 0, temperature, torch.Generator().manual_seed(5))
        scored = token_logprobs(model, batch.input_ids, batch.attention_mask, temperature)
        actions = action_mask(batch)
        for row in range(len(PROMPTS)):
            n = int(actions[row].sum())
            assert torch.equal(batch.input_ids[row, 1:][actions[row]], tokens[row, :n])
            torch.testing.assert_close(scored[row][actions[row]], logps[row, :n], atol=1e-5, rtol=1e-5)


def test_one_row_alone_or_in_a_batch(lm):
    """Left padding is invisible: a prompt sampled alone or beside longer ones gets the same distribution."""
    model, tokenizer = lm
    tokens = torch.tensor([tokenizer.ids["good"]])
    for prompts in (["praise"], ["praise", "criticise the old film"]):
        ids, mask = left_padded(tokenizer, prompts)
        ids = torch.cat([ids, tokens.expand(len(prompts), 1)], 1)
        mask = torch.cat([mask, torch.ones(len(prompts), 1, dtype=torch.long)], 1)
        _, logp = generate(model, ids, mask, 1, 2, 0, 1.0, torch.Generator().manual_seed(0))
        if len(prompts) == 1:
            alone = logp[0]
    torch.testing.assert_close(logp[0], alone, atol=1e-5, rtol=1e-5)
