"""The ``aws`` adapters: boto3 behind the ports, with injected, lazily created clients."""
