import numpy as np
import pytest
import torch

from rlcourse.rlhf import batching, task
from rlcourse.rlhf.model import sequence_logprobs, tiny_gpt2
from rlcourse.rlhf.tokenizer import WordTokenizer

TOK = WordTokenizer.toy()


def model(seed: int = 0):
    return tiny_gpt2(TOK.vocab_size, n_embd=32, n_layer=2, n_head=2, seed=seed, bos_token_id=TOK.bos_token_id,
                     eos_token_id=TOK.eos_token_id, pad_token_id=TOK.pad_token_id)


def test_encode_lays_out_prompt_response_eos_and_right_padding():
    batch = batching.encode(TOK, ["praise the food", "criticise the film"], ["good great", "bad"])
    bos, sep, eos, pad = TOK.bos_token_id, TOK.sep_token_id, TOK.eos_token_id, TOK.pad_token_id
    first = [bos, *TOK.encode("praise the food"), sep, *TOK.encode("good great"), eos]
    second = [bos, *TOK.encode("criticise the film"), sep, *TOK.encode("bad"), eos]
    assert batch.input_ids[0].tolist() == first
    assert batch.input_ids[1].tolist() == second + [pad] * (len(first) - len(second))
    assert batch.attention_mask[1].tolist() == [1] * len(second) + [0] * (len(first) - len(second))
    assert batch.response_mask[0].tolist() == [0] * 5 + [1, 1, 1]            # "good great <eos>"
    assert batch.response_mask[1].tolist() == [0] * 5 + [1, 1] + [0]          # "bad <eos>", then padding
    cut = batching.encode(TOK, ["praise the food"], ["good great nice"], max_length=7)
    assert cut.input_ids.shape == (1, 7) and cut.response_mask.sum() == 2
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        batching.encode(TOK, ["praise the food", "praise the film"], ["good"])


def test_sample_is_reproducible_stops_at_eos_and_scores_like_encode():
    m = model()
    prompts = task.sample_prompts(40, np.random.default_rng(0))
    a = batching.sample(m, TOK, prompts, 6, generator=torch.Generator().manual_seed(1))
    b = batching.sample(m, TOK, prompts, 6, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for ids, response in zip(a.input_ids, a.response_mask):
        tokens = ids[response.bool()].tolist()
        assert 1 <= len(tokens) <= 6
        assert TOK.eos_token_id not in tokens[:-1]            # nothing is generated after <eos>
    # a sample laid out by `sample` is the same batch `encode` makes from its text, when it ended with <eos>
    texts = batching.response_text(TOK, a)
    special = {TOK.pad_token_id, TOK.bos_token_id, TOK.sep_token_id}   # a random model can sample these too
    ended = [i for i, (ids, r) in enumerate(zip(a.input_ids, a.response_mask))
             if ids[r.bool()][-1] == TOK.eos_token_id and not special & set(ids[r.bool()].tolist())]
    assert ended
    again = batching.encode(TOK, [prompts[i] for i in ended], [texts[i] for i in ended])
    torch.testing.assert_close(sequence_logprobs(m, *again),
                               sequence_logprobs(m, *(x[ended][:, :again.input_ids.shape[1]] for x in a)))


def test_sample_follows_the_temperature():
    # at a low temperature the samples concentrate on the most likely token
    m = model(seed=3)
    prompts = ["praise the food"] * 200
    cold = batching.sample(m, TOK, prompts, 1, temperature=1e-3, generator=torch.Generator().manual_seed(0))
    warm = batching.sample(m, TOK, prompts, 1, temperature=1.0, generator=torch.Generator().manual_seed(0))
    first = lambda batch: batch.input_ids[batch.response_mask.bool()].view(200, -1)[:, 0]  # noqa: E731
    assert len(set(first(cold).tolist())) <= 2 < len(set(first(warm).tolist()))
    with pytest.raises(ValueError, match=r"temperature = 0 is out of range"):
        batching.sample(m, TOK, prompts[:1], 1, temperature=0)
