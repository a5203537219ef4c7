"""`/v1/files`: OpenAI's Files API, and where an upload's bytes live (`storage`)."""
