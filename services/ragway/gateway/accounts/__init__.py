"""Who is calling and what they may spend: API keys (`auth`), users (`users`), the ledger (`billing`),
the one metering path every spending route takes (`metering`), RPM/TPM windows (`limiter`), and
the caller's own `/v1/me` and `/v1/usage`.
"""
