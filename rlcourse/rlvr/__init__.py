"""Lesson 8: RL with verifiable rewards — GRPO, RLOO and Dr. GRPO on a language model.

:mod:`~rlcourse.rlvr.arithmetic` is the task and its verifier, :mod:`~rlcourse.rlvr.grpo`
the critic-free policy gradient with a group baseline (the Ψ of :mod:`rlcourse.pg.psi`),
:mod:`~rlcourse.rlvr.passk` pass@k, :mod:`~rlcourse.rlvr.exact` the exact-gradient study
of the estimators' bias and variance, :mod:`~rlcourse.rlvr.pipeline` SFT then RL.
"""
