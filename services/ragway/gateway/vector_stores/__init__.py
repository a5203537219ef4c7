"""`/v1/vector_stores`: OpenAI's Vector Stores API over ragway's collections, and the ingestion
worker that writes their files in the background.
"""
