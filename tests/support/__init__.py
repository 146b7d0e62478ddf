"""What the tests share: request builders, signing clients, FHIR servers, served processes, scratch
databases. Imported as `support.<module>` (pyproject puts `tests/` on the import path)."""
