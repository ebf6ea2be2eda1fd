"""The policy pack's rules; CrossGuard loads the pack from policy/__main__.py."""
