"""Generation, whatever API asked for it: the plan, the prompt that fits the context, the sources
in the newest turn, and the metered, recorded run of the model.
"""
