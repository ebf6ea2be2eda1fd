"""postgres-mcp on Azure Container Apps against a Flexible Server, signed in with Entra ID.

config --> preflight (records, adoption, create-only guards) --> monitoring --> network + environment
       --> identity + Key Vault --> database --> role and grants --> MCP app (+ token refresher)
       --> token alerts --> outputs, then the records the next run reads back

An existing server or environment (existingServerId, existingEnvironmentId) is looked up before anything
is declared and never declared itself: the program adds only its own children to it.

The steps are in program.py, importable, so that the tests run the very same `main()` under mocks.
"""

import program

program.main()
