"""Lesson 3: value-function approximation, from linear features to DQN."""
