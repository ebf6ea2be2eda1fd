"""Local stand-ins for Azure and the expiry drill that proves token mode with the real postgres-mcp.

Nothing here is deployed: it is what the tests and `python -m drill` run on one machine.
"""
