"""Lesson 7: RLHF and DPO on GPT-2. The language model is the policy, a token an action,
the prompt plus the tokens generated so far the state.

``task`` ships a toy preference task that needs no downloads, ``tokenizer`` its word-level
tokenizer, ``data`` the JSONL formats (TRL's: ``prompt``/``completion`` for SFT,
``prompt``/``chosen``/``rejected`` for preferences), ``model`` GPT-2 (a tiny random one
offline, ``from_pretrained`` when the weights are at hand) and per-sequence log-probabilities,
``sft``, ``reward`` and ``dpo`` the stages' losses.
"""
