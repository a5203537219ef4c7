"""`/healthz` and `/readyz`."""
