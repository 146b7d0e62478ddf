"""The audit key the tests run the service with."""

#: 32+ characters, as the setting requires
TEST_AUDIT_KEY = "test-audit-key-0123456789abcdef-0123456789"
