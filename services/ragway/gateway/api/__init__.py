"""ragway package."""
