"""Re-export of the local FHIR search for the tests."""

from cds_service.local_search import prefetch_for, search

__all__ = ["prefetch_for", "search"]
