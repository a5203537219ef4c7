"""Conversations: the history every generating API records into (`history`), and
`/v1/conversations`, where a user reads and edits theirs.
"""
