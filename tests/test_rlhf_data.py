"""Lesson 7's foundations: the toy task's reward and labels, the tokenizer, the JSONL files."""

import json
import math

import numpy as np
import pytest

from rlcourse.rlhf import task
from rlcourse.rlhf.data import (DataError, expand_ranking, make_toy_files, read_preferences,
                                read_sft, write_jsonl)
from rlcourse.rlhf.tokenizer import WordTokenizer, load_tokenizer


# ---- the ground-truth reward ------------------------------------------------------------

def test_reward_by_hand():
    # 2 positive, 1 negative, 1 neutral word: (2 - 1) / 4
    assert task.reward("praise the food", "great lovely awful food") == pytest.approx(0.25)
    assert task.reward("criticise the food", "great lovely awful food") == pytest.approx(-0.25)
    assert task.reward(["criticise", "the", "film"], ["dull", "boring", "the"]) == pytest.approx(2 / 3)
    assert task.reward("praise the film", "the film was") == 0.0
    assert task.reward("praise the film", "") == 0.0
    assert task.reward("praise the film", []) == 0.0
    # punctuation and case do not matter, unknown words are neutral
    assert task.reward("Praise the film.", "Great! Zebra") == pytest.approx(0.5)


def test_best_response_under_praise_is_worst_under_criticise():
    best = " ".join(task.POSITIVE[:6])
    assert task.reward("praise the book", best) == 1.0
    assert task.reward("criticise the book", best) == -1.0
    worst = " ".join(task.NEGATIVE[:6])
    assert task.reward("criticise the book", worst) == 1.0
    assert task.reward("praise the book", worst) == -1.0


def test_prompt_must_begin_with_an_instruction():
    with pytest.raises(ValueError, match="must begin with an instruction word"):
        task.reward("the food", "great")
    with pytest.raises(ValueError, match="begins with 'nothing'"):
        task.reward("", "great")


def test_prompts_and_vocabulary():
    prompts = task.sample_prompts(200, np.random.default_rng(0))
    assert {p.split()[0] for p in prompts} == {"praise", "criticise"}
    assert all(3 <= len(p.split()) <= 4 for p in prompts)
    assert len(set(task.VOCABULARY)) == len(task.VOCABULARY)
    assert len(task.POSITIVE) == len(task.NEGATIVE) == 20 and len(task.NEUTRAL) >= 20


def test_sft_corpus_is_mildly_negative():
    rows = task.sft_corpus(2000, np.random.default_rng(1))
    rewards = [task.reward(r["prompt"], r["completion"]) for r in rows]
    assert -0.5 < np.mean(rewards) < 0
    assert np.mean(rewards) == pytest.approx(-0.2, abs=0.03)  # E[r] = p_aligned - p_opposed
    assert np.std(rewards) > 0.1  # enough spread for preference pairs to mean something
    vocab = set(task.VOCABULARY)
    assert all(set(r["prompt"].split()) | set(r["completion"].split()) <= vocab for r in rows)
    assert all(4 <= len(r["completion"].split()) <= 8 for r in rows)


def test_everything_is_deterministic_given_the_seed(tmp_path):
    for seed in (0, 1):
        a = task.sft_corpus(50, np.random.default_rng(seed))
        b = task.sft_corpus(50, np.random.default_rng(seed))
        assert a == b
    assert task.sft_corpus(50, np.random.default_rng(0)) != task.sft_corpus(50, np.random.default_rng(1))
    first = make_toy_files(tmp_path / "a", 30, 30, seed=3, noise_temperature=0.1)
    second = make_toy_files(tmp_path / "b", 30, 30, seed=3, noise_temperature=0.1)
    for key in ("sft", "preferences"):
        assert first[key].read_bytes() == second[key].read_bytes()


# ---- Bradley-Terry labels ---------------------------------------------------------------

def test_noiseless_labels_follow_the_ground_truth():
    rng = np.random.default_rng(0)
    prompt, good, bad = "praise the room", "lovely and nice", "dull room"
    assert task.label_pair(prompt, good, bad, rng) == (good, bad)
    assert task.label_pair(prompt, bad, good, rng) == (good, bad)
    assert task.label_pair("criticise the room", good, bad, rng) == (bad, good)


def test_label_noise_frequency_matches_bradley_terry():
    prompt = "praise the film"
    a, b = "great film", "the film was dull"  # r_a = 0.5, r_b = -0.25
    temperature, n = 0.5, 20_000
    p = 1 / (1 + math.exp(-(0.5 - (-0.25)) / temperature))
    assert task.preference_probability(0.5, -0.25, temperature) == pytest.approx(p)
    rng = np.random.default_rng(0)
    wins = sum(task.label_pair(prompt, a, b, rng, temperature)[0] == a for _ in range(n))
    tolerance = 4 * math.sqrt(p * (1 - p) / n)  # four binomial standard deviations
    assert abs(wins / n - p) < tolerance


def test_accuracy_ceiling_is_mean_of_max_p():
    rng = np.random.default_rng(2)
    r_a, r_b = rng.uniform(-1, 1, 500), rng.uniform(-1, 1, 500)
    temperature = 0.2
    p = 1 / (1 + np.exp(-(r_a - r_b) / temperature))
    ceiling = task.bt_accuracy_ceiling(r_a, r_b, temperature)
    assert ceiling == pytest.approx(np.mean(np.maximum(p, 1 - p)))
    # one pair: max(p, 1 - p) with p = sigma(0.75 / 0.5), either way round
    assert task.bt_accuracy_ceiling(0.5, -0.25, 0.5) == pytest.approx(1 / (1 + math.exp(-1.5)))
    assert task.bt_accuracy_ceiling(-0.25, 0.5, 0.5) == pytest.approx(1 / (1 + math.exp(-1.5)))
    assert task.bt_accuracy_ceiling(0.3, 0.1) == 1.0
    assert task.bt_accuracy_ceiling(0.3, 0.3) == 0.5
    # the ground truth itself, scored against noisy labels, reaches the ceiling on average
    correct = (rng.random((20, 500)) < p) == (r_a > r_b)
    assert abs(correct.mean() - ceiling) < 4 * math.sqrt(ceiling * (1 - ceiling) / correct.size)


def test_bad_temperature_is_rejected():
    with pytest.raises(ValueError, match=r"noise_temperature = 0 is out of range"):
        task.label_pair("praise the film", "great", "bad", np.random.default_rng(0), 0)


# ---- the tokenizer ----------------------------------------------------------------------

def test_tokenizer_round_trip_and_specials():
    tok = WordTokenizer.toy()
    assert tok.pad_token_id == 0 and tok.vocab_size == len(tok) == len(task.VOCABULARY) + 4
    assert (tok.bos_token_id, tok.eos_token_id, tok.sep_token_id) == (1, 2, 3)
    text = "praise the old film <sep> great and lovely <eos>"
    ids = tok.encode(text)
    assert tok.encode(text.split()) == ids
    assert tok.decode(ids) == text
    assert tok.decode([0, 0] + ids + [0]) == text  # padding is skipped
    assert tok.decode(ids, skip_special_tokens=True) == "praise the old film great and lovely"


def test_tokenizer_unknown_word():
    with pytest.raises(ValueError, match="unknown word 'zebra' at position 2"):
        WordTokenizer.toy().encode("praise the zebra")


def test_tokenizer_save_load(tmp_path):
    tok = WordTokenizer(["alpha", "beta"])
    tok.save(tmp_path)
    back = WordTokenizer.load(tmp_path)
    assert back.tokens == tok.tokens == ["<pad>", "<bos>", "<eos>", "<sep>", "alpha", "beta"]
    assert load_tokenizer(tmp_path).tokens == tok.tokens
    assert load_tokenizer("toy").tokens == WordTokenizer.toy().tokens
    with pytest.raises(ValueError, match="'alpha' more than once"):
        WordTokenizer(["alpha", "alpha"])


# ---- JSONL files ------------------------------------------------------------------------

def test_jsonl_round_trip(tmp_path):
    sft = [{"prompt": "praise the food", "completion": "great food"},
           {"prompt": "criticise the café", "completion": "stale"}]
    write_jsonl(tmp_path / "sft.jsonl", sft)
    assert read_sft(tmp_path / "sft.jsonl") == sft
    prefs = [{"prompt": "praise the food", "chosen": "great", "rejected": "awful"}]
    write_jsonl(tmp_path / "prefs.jsonl", prefs)
    assert read_preferences(tmp_path / "prefs.jsonl") == prefs


def test_toy_files(tmp_path):
    paths = make_toy_files(tmp_path, n_sft=40, n_pairs=30, seed=0)
    assert len(read_sft(paths["sft"])) == 40
    pairs = read_preferences(paths["preferences"])
    assert len(pairs) == 30
    # without noise every chosen response has the higher ground-truth reward
    assert all(task.reward(r["prompt"], r["chosen"]) > task.reward(r["prompt"], r["rejected"])
               for r in pairs)


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text('\n{"prompt": "praise the food", "completion": "good"}\n   \n\n')
    assert read_sft(path) == [{"prompt": "praise the food", "completion": "good"}]


GOOD = '{"prompt": "praise the food", "completion": "good"}'


@pytest.mark.parametrize("line, problem", [
    ('{"prompt": "praise", "completion": ', r"invalid JSON"),
    ('["praise the food", "good"]', r"expected a JSON object, got list"),
    ('{"prompt": "praise the food"}', r"field 'completion' is missing"),
    ('{"prompt": "praise the food", "completion": 3}', r"field 'completion' must be a string, got int"),
    ('{"prompt": "  ", "completion": "good"}', r"field 'prompt' is empty"),
])
def test_malformed_sft_row_names_its_line(tmp_path, line, problem):
    path = tmp_path / "sft.jsonl"
    path.write_text(f"{GOOD}\n\n{line}\n{GOOD}\n")
    with pytest.raises(DataError, match=rf"sft\.jsonl, line 3: .*{problem}"):
        read_sft(path)


@pytest.mark.parametrize("line, problem", [
    ('{"prompt": "p", "chosen": "a"}', r"field 'rejected' is missing"),
    ('{"prompt": "p", "chosen": "a", "rejected": "a"}', r"are the same response"),
    ('{"prompt": "p", "responses": ["a"]}', r"at least 2 responses"),
    ('{"prompt": "p", "responses": ["a", ""]}', r"responses\[1\] must be a non-empty string"),
    ('{"prompt": "p", "responses": ["a", "b", "a"]}', r"same response twice"),
])
def test_malformed_preference_row_names_its_line(tmp_path, line, problem):
    path = tmp_path / "prefs.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n' + line + "\n")
    with pytest.raises(DataError, match=rf"prefs\.jsonl, line 2: .*{problem}"):
        read_preferences(path)


def test_ranking_expands_to_all_pairs_best_first(tmp_path):
    ranked = ["r0", "r1", "r2", "r3"]
    pairs = expand_ranking("p", ranked)
    assert len(pairs) == 4 * 3 // 2
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [
        ("r0", "r1"), ("r0", "r2"), ("r0", "r3"), ("r1", "r2"), ("r1", "r3"), ("r2", "r3")]
    path = tmp_path / "ranked.jsonl"
    path.write_text(json.dumps({"prompt": "p", "responses": ranked}) + "\n"
                    + json.dumps({"prompt": "q", "chosen": "x", "rejected": "y"}) + "\n")
    rows = read_preferences(path)
    assert rows[:6] == pairs and rows[6] == {"prompt": "q", "chosen": "x", "rejected": "y"}


def test_read_prompts_takes_the_prompt_of_every_row_and_names_a_bad_line(tmp_path):
    from rlcourse.rlhf.data import read_prompts

    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "praise the food", "completion": "good"}\n\n{"prompt": "criticise the film"}\n')
    assert read_prompts(path) == ["praise the food", "criticise the film"]
    path.write_text('{"prompt": "praise the food"}\n{"chosen": "good"}\n')
    with pytest.raises(DataError, match=r"p.jsonl, line 2: field 'prompt' is missing"):
        read_prompts(path)
