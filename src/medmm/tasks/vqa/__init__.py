"""Visual question answering: image + question -> answer.

`task.py` holds the Task; answers, choices, decoder, routing, memory, rationale, floors and figures
each have their own module.
"""
