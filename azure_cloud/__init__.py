"""Azure clouds and signing in to them from the deployer's machine: not components (they declare no resource).

`clouds`: one table of each cloud's endpoints and token audiences (Azure CLI's cloud definitions).
`deployer_credential`: the Entra token the role/grant step and the post-deploy verification use.
"""
