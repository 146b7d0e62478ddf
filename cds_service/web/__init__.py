"""The HTTP edge: translate requests to calls on the core, and results to CDS Hooks JSON."""
