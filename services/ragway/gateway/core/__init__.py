"""The gateway's infrastructure, apart from its domain: settings, the database and its tables,
migrations, FastAPI dependencies, errors, middleware, draining, metrics, and the wire rules every
request type shares.
"""
