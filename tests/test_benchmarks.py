"""Smoke test of the benchmarks: they run and report, whatever the speed of the machine."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_tabular_benchmark_quick_runs_and_prints_ratios():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tabular.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ratios = re.findall(r"^ratio (\S+): rlcourse is [\d.]+x faster", proc.stdout, flags=re.MULTILINE)
    assert ratios == ["rlcourse/Corridor-v0", "FrozenLake-v1"], proc.stdout
    # the two implementations are the same algorithm: same seed, same Q-table
    assert proc.stdout.count("final Q-tables identical") == 2, proc.stdout


def test_dqn_benchmark_quick_runs_and_prints_the_table():
    # Stable-Baselines3 is an optional benchmark dependency: the smoke run leaves it out
    # one update thread: the suite runs on two busy cores, where a second thread only waits
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dqn.py"), "--quick", "--no-sb3",
                           "--threads", "1", "--steps", "2000", "--eval-every", "1000"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^(rlcourse \((?:RL Zoo|defaults)\))\s+\S+.*\s(\d+)\s*$", proc.stdout, flags=re.MULTILINE)
    assert [label for label, _ in rows] == ["rlcourse (RL Zoo)", "rlcourse (defaults)"], proc.stdout
    assert "steps/s" in proc.stdout


@pytest.mark.parametrize("env_id, threshold, sb3", [("CartPole-v1", "475", "SB3"),
                                                     ("Pendulum-v1", "-250", "SB3 (gSDE)")])
def test_ppo_benchmark_quick_runs_and_prints_the_table(env_id, threshold, sb3):
    # with Stable-Baselines3 where it is installed (an optional dependency), so that the
    # ratio and target lines are checked too; without it, rlcourse's row alone
    with_sb3 = importlib.util.find_spec("stable_baselines3") is not None
    command = [sys.executable, str(ROOT / "benchmarks" / "ppo.py"), "--quick", "--envs", env_id,
               "--steps", "1024", "--eval-every", "512"]
    proc = subprocess.run(command + ([] if with_sb3 else ["--no-sb3"]),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^(rlcourse|SB3(?: \((?:no )?gSDE\))?) {2,}\S.*\s(\d+)\s*$", proc.stdout, flags=re.MULTILINE)
    assert [label for label, _ in rows] == (["rlcourse", sb3] if with_sb3 else ["rlcourse"]), proc.stdout
    assert f"steps to {threshold} (median)" in proc.stdout
    if with_sb3:
        assert re.search(rf"^same settings, rlcourse / {re.escape(sb3)}: [\d.]+x the steps per second",
                         proc.stdout, flags=re.MULTILINE), proc.stdout
        assert re.search(rf"^target on {env_id}: steps to {threshold} no more than SB3's .*: "
                         rf"(met|NOT met|undecided.*); at least 2x SB3's steps per second \([\d.]+x\): (met|NOT met)$",
                         proc.stdout, flags=re.MULTILINE), proc.stdout


def test_ppo_surrogates_benchmark_quick_runs_and_prints_the_table():
    # one task: the table's rows and the comparison with the paper are the same code for any number
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ppo_surrogates.py"), "--quick",
                           "--tasks", "CartPole-v1", "--steps", "2048", "--workers", "2", "--random-episodes", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout.split("average normalised score", 1)[1]
    # the paper's eleven rows, in its order, each with our average and the paper's number
    rows = re.findall(r"^(no clipping or penalty|clipping, eps=[\d.]+|adaptive KL, d_targ=[\d.]+|"
                      r"fixed KL, beta=[\d.]+) +(-?[\d.]+) +(-?[\d.]+)", table, flags=re.MULTILINE)
    assert [label for label, _, _ in rows] == [
        "no clipping or penalty", "clipping, eps=0.1", "clipping, eps=0.2", "clipping, eps=0.3",
        "adaptive KL, d_targ=0.003", "adaptive KL, d_targ=0.01", "adaptive KL, d_targ=0.03",
        "fixed KL, beta=0.3", "fixed KL, beta=1", "fixed KL, beta=3", "fixed KL, beta=10"], proc.stdout
    assert [float(paper) for _, _, paper in rows][:3] == [-0.39, 0.76, 0.82]
    assert re.search(r"^(agrees with the paper|partly agrees with the paper|does not agree with the paper|"
                     r"cannot compare with the paper): ", table, flags=re.MULTILINE), proc.stdout
    assert "11 runs in" in proc.stdout


def test_rlhf_benchmark_quick_runs_and_prints_tokens_per_second_and_memory():
    # TRL is an optional benchmark dependency: the smoke run leaves it out
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rlhf.py"), "--quick", "--no-trl",
                           "--stages", "sft", "dpo"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^(sft|dpo)\s+\d+\s+[\d,]+\s+[\d.]+\s+([\d,]+)\s+[\d,]+\s+[\d.]+\s+[\d,]+\s+(\d+)", proc.stdout,
                      flags=re.MULTILINE)
    assert [stage for stage, _, _ in rows] == ["sft", "dpo"], proc.stdout
    assert all(int(tps.replace(",", "")) > 0 and int(mb) > 0 for _, tps, mb in rows)
    assert "TRL DPOTrainer: skipped" in proc.stdout


def test_grader_benchmark_quick_grades_the_reference_fully_and_the_hanging_submission_to_zero():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "grader.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^(reference|hanging)\s+5\s+(\d+)\s+(\S+) / (\S+)\s+(\d+)\s+([\d.]+)$", proc.stdout,
                      flags=re.MULTILINE)
    assert [r[0] for r in rows] == ["reference", "hanging"], proc.stdout
    (_, _, score, most, timed_out, _), hanging = rows
    assert score == most and int(timed_out) == 0
    assert hanging[2] == "0" and int(hanging[4]) == int(hanging[1]), proc.stdout     # every test timed out


def test_trl_grpo_benchmark_quick_prints_the_settings_the_throughput_and_the_rewards():
    # with TRL where it is installed (the bench extra), so that its column, row and ratio are checked too
    with_trl = importlib.util.find_spec("trl") is not None
    command = [sys.executable, str(ROOT / "benchmarks" / "trl_grpo.py"), "--quick", "--updates", "2"]
    proc = subprocess.run(command + ([] if with_trl else ["--no-trl"]), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"^group size G +group_size=8" + (" +num_generations=8$" if with_trl else "$"), out,
                     flags=re.MULTILINE), out
    rows = re.findall(r"^(rlcourse|TRL [\d.]+) +1 +2 +[\d,]+ +[\d.]+ +([\d,]+) ", out, flags=re.MULTILINE)
    assert [label for label, _ in rows] == (["rlcourse", rows[-1][0]] if with_trl else ["rlcourse"]), out
    assert all(int(tps.replace(",", "")) > 0 for _, tps in rows)
    assert re.findall(r"^(1-1|2-2) +[\d.]+", out, flags=re.MULTILINE) == ["1-1", "2-2"], out
    if with_trl:
        assert rows[-1][0].startswith("TRL ")
        assert "advantage=grpo, aggregation=sequence-mean  loss_type=grpo, scale_rewards=group" in out
        assert re.search(r"^ratio rlcourse / TRL [\d.]+: [\d.]+x the generated tokens per second .*"
                         r"(meets|BELOW) the 1.5x target", out, flags=re.MULTILINE), out
        assert out.count("no claim from fewer than 5 seeds") == 2, out      # one seed: nothing is claimed
    else:
        assert "TRL GRPOTrainer: skipped" in out


def _trl_grpo_module(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("trl_grpo", ROOT / "benchmarks" / "trl_grpo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method, loss_type, scale_rewards", [("grpo", "grpo", "group"),
                                                              ("dr_grpo", "dr_grpo", "none")])
def test_trl_grpo_benchmark_gives_trl_rlcourse_s_settings(monkeypatch, method, loss_type, scale_rewards):
    module = _trl_grpo_module(monkeypatch)
    rl = module.rl_settings(method, updates=7, seed=3, kl_coef=0.05)
    trl = module.trl_settings(rl)
    # one generation of P x G answers per update, cut into the same minibatches, mu passes over them
    assert trl["num_generations"] == rl.group_size == 8
    assert trl["per_device_train_batch_size"] * trl["steps_per_generation"] == rl.prompts_per_iteration * 8
    assert trl["steps_per_generation"] == rl.minibatches and trl["num_iterations"] == rl.epochs
    assert trl["max_steps"] == 7 * rl.epochs * rl.minibatches and trl["logging_steps"] == rl.epochs * rl.minibatches
    assert (trl["loss_type"], trl["scale_rewards"]) == (loss_type, scale_rewards)
    assert (trl["learning_rate"], trl["epsilon"], trl["beta"], trl["max_completion_length"], trl["seed"]) == (
        rl.lr, rl.clip_range, 0.05, rl.max_new_tokens, 3)
    assert trl["lr_scheduler_type"] == "constant" and trl["weight_decay"] == 0 and not trl["use_bias_correction_kl"]
    with pytest.raises(ValueError, match="no loss"):
        module.trl_settings(module.rl_settings("rloo", updates=1, seed=0, kl_coef=0.0))


def test_trl_grpo_benchmark_scores_trl_s_answers_as_rlcourse_scores_its_own(monkeypatch):
    from rlcourse.rlhf.batching import from_pieces, prompt_ids, response_text
    from rlcourse.rlvr import arithmetic
    from rlcourse.rlvr.pipeline import verifier

    module = _trl_grpo_module(monkeypatch)
    tokenizer = arithmetic.tokenizer()
    eos, sep = tokenizer.eos_token_id, tokenizer.sep_token_id
    problem = arithmetic.prompt(47, 38, 2)
    answers = [[*tokenizer.encode("8 5"), eos], tokenizer.encode("8 5"), [*tokenizer.encode("8"), sep, *tokenizer.encode("5"), eos],
               [*tokenizer.encode("0 8 5"), eos], [*tokenizer.encode("8 6"), eos]]
    calls = []
    rewards = module.trl_reward(tokenizer, calls)(prompts=None, completions=None, completion_ids=answers,
                                                   problem=[problem] * len(answers))
    # rlcourse's own path: the same tokens in its batch layout, written out by response_text, scored by verifier()
    batch = from_pieces([(prompt_ids(tokenizer, problem), ids) for ids in answers], tokenizer.pad_token_id)
    expected = verifier()([problem] * len(answers), response_text(tokenizer, batch)).tolist()
    assert rewards == expected == [1.0, 1.0, 0.0, 0.0, 0.0]       # "8 <sep> 5" is no number, as in rlcourse
    assert calls[0]["reward"] == pytest.approx(0.4) and calls[0]["tokens"] == sum(map(len, answers))


def test_ceiling_benchmark_prints_the_ceilings_and_the_ratio():
    # with Stable-Baselines3 where it is installed (an optional dependency); without it, its column is nan
    with_sb3 = importlib.util.find_spec("stable_baselines3") is not None
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ceiling.py"), "--envs", "CartPole-v1",
                           "--steps", "512", *([] if with_sb3 else ["--no-sb3"])],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = re.search(r"^\| CartPole-v1 \| 512 \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+|nan) \| "
                    r"(\S+)× \| (\d+)% \|$", proc.stdout, flags=re.MULTILINE)
    assert row, proc.stdout
    alone, with_policy, ours = (float(row[i].replace(",", "")) for i in (1, 2, 3))
    # each ceiling is a part of the work the next one does: drawing actions from the policy can only slow
    # the environment down, and training collects with the policy and then updates
    assert alone > with_policy > ours > 0
    assert (row[4] != "nan") == with_sb3
    # the two ratios are those of the printed figures (each rounded to a whole step per second)
    assert abs(int(row[6]) - 100 * ours / with_policy) <= 0.5 + 100 * 0.5 / with_policy
    if with_sb3:
        assert float(row[5]) == pytest.approx(ours / float(row[4].replace(",", "")), abs=0.006)
    else:
        assert row[5] == "nan"
