"""`POST /v1/chat/completions`: its wire types, the plan a request becomes, and the renderer that
writes a run as OpenAI's body or SSE chunks (text completions use it too).
"""
