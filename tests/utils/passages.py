"""A small hand-made reranking set: questions a user would ask, each answered by one passage, and
passages on unrelated topics. Shared by the scoring tests and bench/rerank_bench.py."""

from __future__ import annotations

PASSAGES = {
    "python": (
        "To create a virtual environment in Python, run python -m venv followed by a folder name. "
        "Activate it with source .venv/bin/activate on Linux, and packages installed with pip then "
        "stay inside that environment instead of the system Python."
    ),
    "git": (
        "git rebase -i lets you rewrite the commits of a branch: squash several commits into one, "
        "reorder them or edit their messages. Never rebase commits that others have already pulled."
    ),
    "bread": (
        "A sourdough loaf needs a lively starter, flour, water and salt. Mix, let the dough rise for "
        "several hours with a few folds, shape it and bake it in a very hot covered pot."
    ),
    "tides": (
        "Ocean tides are caused mainly by the gravitational pull of the Moon, and to a lesser extent "
        "the Sun, on the rotating Earth, which produces two high tides roughly every day."
    ),
    "postgres": (
        "In PostgreSQL, VACUUM reclaims the storage occupied by dead rows left behind by updates and "
        "deletes. Autovacuum runs it in the background; VACUUM FULL rewrites the whole table."
    ),
}

# (question, the key of the passage that answers it)
QUESTIONS = [
    ("How do I create a virtual environment in Python?", "python"),
    ("How can I squash commits with git rebase?", "git"),
    ("What causes ocean tides?", "tides"),
    ("What does VACUUM do in PostgreSQL?", "postgres"),
    ("How do I bake a sourdough loaf?", "bread"),
]
