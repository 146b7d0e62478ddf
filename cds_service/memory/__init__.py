"""The service's memory: the audit trail of service calls, clinicians' feedback, the report.

`models` holds the tables (on `db.Base`, migrated by Alembic); `audit_trail` writes the call
records off the request path; `feedback_store` stores feedback synchronously; `report` reads both.
"""
