"""The Responses API (`POST /v1/responses`): its wire types, and its rendering of the one generation
core that chat completions use too."""
