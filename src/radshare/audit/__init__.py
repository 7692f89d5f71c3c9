"""Audit trail. Import ``record`` from ``radshare.audit.services``."""
