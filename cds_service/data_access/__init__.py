"""Gathering the patient's data: the prefetch the EHR sent, then its FHIR server where it did not.

`prefetch` reads prefetch templates and bundles (pure); `fhir_policy` decides which FHIR servers
a call may fetch from; `fhir_client` fetches with a bound on time and size; `gather` puts them
together for one call.
"""
