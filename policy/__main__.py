"""The policy pack: `pulumi preview --policy-pack policy` loads this file.

Constructing PolicyPack starts the pack's server and blocks: nothing imports this module.
"""

import sys
from pathlib import Path

# CrossGuard runs this file from the policy folder; the rules live in the `policy` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from policy.pack import policies

PolicyPack(name="postgres-mcp-azure", policies=policies())
