"""The policy pack: `pulumi preview --policy-pack policy` runs this file.

The engine's Python analyzer runs the pack folder as `__main__` (`python -m pulumi.policy`,
which uses `runpy.run_path`). Constructing PolicyPack starts the pack's gRPC server and
serves until the engine stops it, so it happens only then: importing this module (a tool,
a test collector) neither starts a server nor blocks.
"""

import sys
from pathlib import Path

# CrossGuard runs this file from the policy folder; the rules live in the `policy` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from policy.pack import PACK_NAME, policies

if __name__ == "__main__":
    PolicyPack(name=PACK_NAME, policies=policies())
