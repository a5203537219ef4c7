"""`POST /v1/completions`: OpenAI's (legacy) text completions, and the sampling fields, usage and
logprobs types chat completions extend.
"""
