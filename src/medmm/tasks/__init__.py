"""Tasks: one package per task (model + loss + batching + predictions + metrics + hooks).

Each package's `task.py` registers its Task (@register_task) and a torch-free `file_scorer.py`
registers what `medmm score` runs for it. Importing this package imports neither (so a file
scorer loads without torch): installed copies of medmm find both through the `medmm.tasks` and
`medmm.scorers` entry points of pyproject.toml, and `medmm.plugins.load()` imports them directly.
The engine never imports this package.
"""
