"""The shared sign-in store: Azure Table Storage through the managed identity, encrypted by the gateway.

Why Table Storage, and not a database on the Flexible Server or a file share (Azure Files):
- it is independent of the authentication mode and of adopted servers: the Flexible Server may
  be adopted, in password mode, or reachable only in its VNet, and the gateway must not need
  a role, a database or a firewall rule on a server it does not own to let users sign in;
- the gateway reaches it with its managed identity (Entra RBAC, "Storage Table Data
  Contributor"), with the account's shared keys off: no key or connection string exists to
  leak (https://learn.microsoft.com/en-us/azure/storage/tables/authorize-managed-identity);
  Azure Files over SMB needs the account key in the environment's storage definition;
- any replica reads any sign-in (registrations, transactions, the upstream tokens and the
  JTI mappings that fastmcp's OAuthProxy keeps), so replicas need no session affinity and a
  restart loses nothing; per-file stores on a share would race on concurrent writes;
- what is stored is encrypted at rest by Storage and, before it leaves the process, by the
  gateway's own key (GATEWAY_STORE_KEY, a Fernet key derived from it): Storage's readers
  (or a leaked SAS) see only ciphertext.

Keys are sanitized for Table Storage (CIMD client IDs are URLs; `/` is not allowed in a RowKey):
py-key-value's AzureTablesSanitizationStrategy hashes such keys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from azure.core.credentials_async import AsyncTokenCredential
from azure.data.tables.aio import TableClient
from key_value.aio.protocols import AsyncKeyValue
from key_value.aio.stores.azure_tables import AzureTablesStore
from key_value.aio.stores.azure_tables.store import AzureTablesSanitizationStrategy
from key_value.aio.wrappers.encryption import FernetEncryptionWrapper

from gateway.config import Settings

# A fixed salt: the key must derive identically on every replica and after every restart; the
# secret's strength is in GATEWAY_STORE_KEY (>= 32 characters from Key Vault).
SALT = "postgres-mcp-gateway-store-v1"


def table_client(settings: Settings, credential: AsyncTokenCredential) -> TableClient:
    return TableClient(endpoint=settings.store_endpoint, table_name=settings.store_table, credential=credential)


def build_store(settings: Settings, client: TableClient) -> AsyncKeyValue:
    raw = AzureTablesStore(
        client=client,
        collection_sanitization_strategy=AzureTablesSanitizationStrategy(),
        key_sanitization_strategy=AzureTablesSanitizationStrategy(),
        # The stack declares the table (azure-native storage.Table) and grants the app's identity "Storage Table
        # Data Contributor" on that table only. Creating a table is an operation on the account's table service
        # (Create Table, `POST https://<account>.table.core.windows.net/Tables`,
        # https://learn.microsoft.com/rest/api/storageservices/create-table), outside the scope of a role assigned
        # on one table (https://learn.microsoft.com/azure/storage/tables/authorize-access-azure-active-directory,
        # "Resource scope"): Storage may refuse it with 403 rather than answer 409 for the existing table, and
        # py-key-value tolerates only the latter, failing the store's setup. So the store checks that the table
        # exists (one single-entity read, key_value/aio/stores/azure_tables/store.py `_setup`) and never creates it.
        auto_create=False,
    )
    # An entry that does not decrypt (another key) reads as missing, as in fastmcp's own default
    # store: the client registers again rather than failing.
    return FernetEncryptionWrapper(raw, source_material=settings.store_key, salt=SALT, raise_on_decryption_error=False)


# How long one answer of the store check is served again: a probe or a dashboard polling every few seconds
# costs one Table Storage read per replica per this period.
STORE_CHECK_SECONDS = 30.0
STORE_CHECK_TIMEOUT = 5.0


class StoreCheck:
    """Whether the store's table answers a read by the app's identity: at most one entity, its keys only
    (Query Entities with $top=1 and $select, https://learn.microsoft.com/rest/api/storageservices/query-entities),
    nothing decrypted. The answer is cached STORE_CHECK_SECONDS; concurrent callers share one read."""

    def __init__(
        self, client: TableClient, ttl: float = STORE_CHECK_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self.reads = 0
        self._lock = asyncio.Lock()
        self._answer: tuple[str | None, float] | None = None  # (problem, when)

    async def check(self) -> tuple[str | None, float]:
        """(None, age in seconds) when the table answered, else (why not, age)."""
        async with self._lock:
            now = self.clock()
            if self._answer is None or now - self._answer[1] >= self.ttl:
                self._answer = (await self._read(), now)
            problem, when = self._answer
            return problem, now - when

    async def _read(self) -> str | None:
        self.reads += 1
        try:
            async with asyncio.timeout(STORE_CHECK_TIMEOUT):
                async for _ in self.client.list_entities(results_per_page=1, select=["PartitionKey"]):
                    break
        except Exception as error:  # noqa: BLE001 (any failure of the read means "not healthy")
            # Azure's errors name the status, the code and the request; never a token (azure-core redacts
            # Authorization) or an entity (none was read).
            if isinstance(error, TimeoutError):
                return f"table {self.client.table_name}: no answer within {STORE_CHECK_TIMEOUT:.0f} s"
            first = str(error).splitlines()[0] if str(error) else ""
            return f"table {self.client.table_name}: {type(error).__name__}: {first}"[:300]
        return None
