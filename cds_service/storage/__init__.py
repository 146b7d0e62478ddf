"""What the service keeps in its database: the audit trail, clinicians' feedback, the report.

`database` makes the engine and runs the migrations; `models` holds every table (migrated by
Alembic); `audit_trail` writes the call records off the request path; `feedback_store` stores
feedback synchronously; `report` reads both; `retention` purges what is past its keep.
"""
