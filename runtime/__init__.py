"""pyrun: a small container runtime that shows its work."""
