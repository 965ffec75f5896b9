"""Assignments: mark solutions once, release the student version, grade with points.

See ``docs/instructors.md`` for the workflow.
"""
