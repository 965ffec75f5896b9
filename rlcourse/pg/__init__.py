"""Lessons 4–6: policy gradients on one spine (rollouts, policies, Ψ, one objective)."""
