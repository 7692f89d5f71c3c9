"""radshare: share radiology studies through a secure, expiring link."""
