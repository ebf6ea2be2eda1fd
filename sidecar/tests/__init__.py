"""The sidecar programs tested as programs: subprocesses against the stand-ins in testing/."""
