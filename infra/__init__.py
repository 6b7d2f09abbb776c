"""lintas."""
