"""Data-parallel SFT, DPO and reward-model training (rlcourse.rlhf.distributed) and the
device/precision helpers.

The main test starts 2 CPU processes on the gloo backend, as torchrun would (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), runs a short SFT, then DPO from the
SFT model, and a reward model, in each, and compares with 1 process on the same global
batches. The global batches were chosen so that the split is uneven: SFT's ranks hold
different numbers of response tokens at every step and its last global batch has one row
(rank 0's slice is empty); DPO's and the reward model's last global batch has 3 pairs (1
and 2). :func:`beside_one_process` is the harness; tests/test_rlvr_distributed.py uses it
for GRPO.

Tolerances. The two runs differ only in the order of floating-point sums (each rank pads
its slice to its own longest sequence, and the gradients are added rank by rank), so every
logged number (loss, grad_norm, rewards, accuracy, margin, ...) agrees to within 5e-7
(measured) and the trained models' log-probabilities (the reward model's scores) to within
1e-6: the test allows TOL = 1e-5 for both.
The parameters agree to 1e-7 almost everywhere, but AdamW divides each gradient by its own
running scale, and where the true gradient is zero or nearly so, the rounding noise gets a
step of up to lr too. The attention *key* bias is such a parameter (softmax ignores a shift
of all the scores of a query, so its gradient is exactly 0 in exact arithmetic): after
6 SFT and 4 DPO steps with lr = 3e-3 its entries differ by up to 1.7e-5, without changing
what the model computes. The parameters are allowed TOL_PARAMS = 1e-4 (3% of one step). The reward model has two
more such parameters, wholly: the Bradley–Terry loss sees only differences r_w − r_l, so
the head's bias and the final layer norm's bias (which shift every score by the same amount)
have a zero gradient, and their rounding noise gets AdamW steps of up to lr (5.9e-4 apart
after 4 steps, measured). The test holds them to 4 steps × lr and compares the reward
models' scores up to that common shift (minus their mean), to TOL.
Since AdamW hardly sees the scale of the gradient, the logged loss and grad_norm are what
catch a mis-weighted sum over the ranks.
"""

import contextlib
import os
import socket

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from rlcourse.rlhf import distributed, task
from rlcourse.rlhf.data import toy_pairs
from rlcourse.rlhf.dpo import DPOConfig, train_dpo
from rlcourse.rlhf.model import autocast, frozen_copy, tiny_gpt2, token_logprobs
from rlcourse.rlhf.reward import RewardConfig, RewardModel, train_reward
from rlcourse.rlhf.sft import SFTConfig, train_sft
from rlcourse.rlhf.tokenizer import WordTokenizer

WORLD = 2
TOL, TOL_PARAMS = 1e-5, 1e-4
TOKENIZER = WordTokenizer.toy()
SFT_ROWS, DPO_PAIRS = 41, 27                      # with batch_size 8: last batches of 1 and of 3
SFT = SFTConfig(lr=3e-3, epochs=1, batch_size=8)
DPO = DPOConfig(beta=0.2, lr=3e-3, epochs=1, batch_size=8, precompute_reference=False)
REWARD = RewardConfig(lr=3e-3, epochs=1, batch_size=8)
STAGES = ("sft", "dpo", "reward")
SHIFTS_EVERY_SCORE = ("head.bias", "body.ln_f.bias")  # the reward model's parameters with a zero gradient


def tiny():
    return tiny_gpt2(len(TOKENIZER), n_embd=32, n_layer=2, n_head=2, bos_token_id=TOKENIZER.bos_token_id,
                     eos_token_id=TOKENIZER.eos_token_id, pad_token_id=TOKENIZER.pad_token_id)


def params(model):
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def reward_model() -> RewardModel:
    torch.manual_seed(0)                          # the head's initial weights
    return RewardModel.from_lm(tiny())


def lesson7_stages() -> dict:
    """A short SFT, then DPO from the SFT model, and a reward model: the logs and the parameters after each."""
    torch.set_num_threads(1)
    model = tiny()
    sft_log = train_sft(model, TOKENIZER, task.sft_corpus(SFT_ROWS, np.random.default_rng(0)), SFT)
    after_sft = params(model)
    pairs = toy_pairs(DPO_PAIRS, np.random.default_rng(3))
    dpo_log = train_dpo(model, frozen_copy(model), TOKENIZER, pairs, DPO)
    rm = reward_model()
    reward_log = train_reward(rm, TOKENIZER, pairs, REWARD)
    return {"sft_log": sft_log.drop(columns="time"), "sft_params": after_sft,
            "dpo_log": dpo_log.drop(columns="time"), "dpo_params": params(model),
            "reward_log": reward_log.drop(columns="time"), "reward_params": params(rm)}


def worker(rank: int, port: int, out: str, job) -> None:
    """One rank of the group, set up as torchrun would; saves ``job()`` to ``out/rank{rank}.pt``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.setup(cuda=False)
    try:
        assert distributed.world_size() == WORLD and distributed.rank() == rank
        result = job()
    finally:
        distributed.teardown()
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def beside_one_process(job, out) -> tuple[dict, list[dict]]:
    """``job()`` in a group of WORLD gloo processes and, meanwhile, in this one (no process group):
    (this process's result, [the result of rank 0, rank 1, ...])."""
    # fork where there is one: the children inherit torch and transformers instead of importing them
    # again (seconds each); the ranks run on one thread, which is what makes forking torch safe
    start_method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    group = mp.start_processes(worker, args=(free_port(), str(out), job), nprocs=WORLD, join=False,
                               start_method=start_method)
    single = job()
    while not group.join():
        pass
    return single, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(one-process results, [results of rank 0, rank 1])."""
    return beside_one_process(lesson7_stages, tmp_path_factory.mktemp("ddp"))


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def probe(stage: str, state: dict) -> torch.Tensor:
    """What the trained model computes on fixed random sequences: token log-probs (the reward model: scores)."""
    model = reward_model() if stage == "reward" else tiny()
    model.load_state_dict(state)
    ids = torch.randint(4, len(TOKENIZER), (8, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if stage == "reward":
            scores = model(ids, torch.ones_like(ids))
            return scores - scores.mean()         # what Bradley-Terry identifies: differences of scores
        return token_logprobs(model, ids, torch.ones_like(ids))


@pytest.mark.parametrize("stage", STAGES)
def test_two_processes_take_the_one_process_steps(runs, stage):
    single, ranks = runs
    pd.testing.assert_frame_equal(ranks[0][f"{stage}_log"], single[f"{stage}_log"], check_exact=False,
                                  rtol=0, atol=TOL)
    one, two = dict(single[f"{stage}_params"]), dict(ranks[0][f"{stage}_params"])
    if stage == "reward":
        shifts = [one.pop(name) - two.pop(name) for name in SHIFTS_EVERY_SCORE]
        assert max(float(d.abs().max()) for d in shifts) < len(single["reward_log"]) * REWARD.lr
    assert max_abs_diff(one, two) < TOL_PARAMS
    outputs = [probe(stage, result[f"{stage}_params"]) for result in (single, ranks[0])]
    assert float((outputs[0] - outputs[1]).abs().max()) < TOL


def test_the_ranks_stay_identical_and_log_the_same(runs):
    _, (rank0, rank1) = runs
    for stage in STAGES:
        assert max_abs_diff(rank0[f"{stage}_params"], rank1[f"{stage}_params"]) == 0
        pd.testing.assert_frame_equal(rank0[f"{stage}_log"], rank1[f"{stage}_log"], check_exact=True)


def test_the_logs_count_the_global_batch(runs):
    single, (rank0, _) = runs
    assert rank0["sft_log"].tokens.tolist() == single["sft_log"].tokens.tolist()
    assert len(rank0["sft_log"]) == -(-SFT_ROWS // SFT.batch_size) and SFT_ROWS % SFT.batch_size == 1
    assert len(rank0["dpo_log"]) == -(-DPO_PAIRS // DPO.batch_size) and DPO_PAIRS % DPO.batch_size == 3
    assert rank0["dpo_log"].loss.iloc[0] == pytest.approx(np.log(2), abs=1e-6)
    assert len(rank0["reward_log"]) == len(rank0["dpo_log"])


# ---------------------------------------------------------------- without a process group

def test_one_process_is_the_whole_batch(monkeypatch):
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.setup(cuda=False) == torch.device("cpu")
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.shard([4, 1, 3]) == [4, 1, 3]
    x = torch.tensor(2.0)
    assert distributed.all_reduce_sum(x) is x
    distributed.teardown()


@pytest.mark.parametrize("n", [0, 1, 2, 7, 9])
def test_shard_cuts_contiguous_nearly_equal_slices(monkeypatch, n):
    index = list(range(100, 100 + n))
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    slices = []
    for k in range(3):
        monkeypatch.setattr(distributed, "rank", lambda k=k: k)
        slices.append(distributed.shard(index))
    assert sum(slices, []) == index
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_autocast_is_a_null_context_on_the_cpu():
    assert isinstance(autocast("cpu"), contextlib.nullcontext)
    assert isinstance(autocast(torch.device("cpu")), contextlib.nullcontext)


def test_token_logprobs_stay_float32_under_bf16_autocast():
    model = tiny()
    ids = torch.tensor([[1, 5, 6, 3, 7, 8, 2], [1, 9, 3, 10, 2, 0, 0]])
    mask = (torch.arange(7) < torch.tensor([[7], [5]])).long()
    with torch.no_grad():
        exact = token_logprobs(model, ids, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = token_logprobs(model, ids, mask)
    assert exact.dtype == mixed.dtype == torch.float32
    assert torch.allclose(mixed, exact, atol=0.05)
