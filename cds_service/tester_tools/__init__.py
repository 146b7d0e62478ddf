"""Tools for testers and implementers: sample requests built from example charts (`samples`),
prefetch answered from local charts (`local_search`), and `cds-service try` (`tester`)."""
