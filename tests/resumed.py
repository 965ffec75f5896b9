"""A run stopped by Ctrl-C and resumed from its last checkpoint, beside the same run never stopped."""

import pandas as pd


def stop_at(limit: int):
    """A training callback that presses Ctrl-C once the run has taken ``limit`` env steps."""

    def stop(env_steps, _model):
        if env_steps >= limit:
            raise KeyboardInterrupt

    return stop


def assert_resumes_bit_for_bit(train, env_id, config, out, *, steps: int, every: int, stop: int, seed: int = 3):
    """Train straight through; train again, stopped at ``stop`` and resumed from ``out``; the logs must agree
    bit for bit. Returns (straight, resumed)."""
    straight = train(env_id, config, steps=steps, seed=seed)
    stopped = train(env_id, config, steps=steps, seed=seed, out=out, checkpoint_every=every, callback=stop_at(stop))
    assert stopped.status == "interrupted" and stopped.steps < steps
    resumed = train(env_id, config, steps=steps, seed=seed, out=out, checkpoint_every=every, resume=True)
    pd.testing.assert_frame_equal(resumed.log, straight.log, check_exact=True)
    return straight, resumed
