"""Lessons 1–2: tabular control, policy evaluation and planning."""
