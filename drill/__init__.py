"""The expiry drill that proves token mode with the real postgres-mcp, on the stand-ins in `testing/`.

Nothing here is deployed: it is what the tests and `python -m drill` run on one machine.
"""
