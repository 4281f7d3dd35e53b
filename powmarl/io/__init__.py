"""Run directories and metric logging."""
