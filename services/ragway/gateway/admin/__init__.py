"""`/v1/admin/...`: users, keys, credits and usage, for admin keys only."""
