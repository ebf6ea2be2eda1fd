"""What must hold before any resource is declared: the stack's records, adoption and the create-only guards.

`run(config)` is the one call the program makes; `export_records` writes what the next run reads back.
"""

from preflight.checks import Preflight, export_records, run

__all__ = ["Preflight", "export_records", "run"]
