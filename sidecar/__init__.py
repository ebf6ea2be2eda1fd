"""Programs that run inside the app's containers, beside the stock postgres-mcp image.

Each is standard-library Python, runnable on its own, shipped into its container by
components/mcp_app.py, and tested as a program in sidecar/tests/.
"""
