"""Trusting CDS clients (CDS Hooks 2.0 "Trusting CDS Clients" and its best-practice checklist).

- `clients`: the trusted-clients file, one entry per EHR (issuer, keys, allowed `jku`, tenants).
- `keys`: a client's signing keys, inline or fetched from an allowed URL, cached.
- `tokens`: the bearer JWT check: algorithm, key, issuer, audience, lifetime, `jti`, tenant.
- `replay`: a `jti` is accepted once per issuer, across every worker and instance (database).

None of this imports Flask; `cds_service.web.security` applies it to the routes.
"""
