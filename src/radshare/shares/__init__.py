"""Shares: the share dialog and API, share codes, preparation, life cycle."""
