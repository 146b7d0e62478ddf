"""The SSRF rule: which FHIR servers a call may use, with base URLs compared normalised."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cds_service.data_access.fhir_policy import AccessPolicy, is_loopback, is_under, normalise_base
from cds_service.settings import Settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://EHR.Example.org/fhir/r4/", "https://ehr.example.org/fhir/r4"),
        ("HTTPS://ehr.example.org:443/fhir", "https://ehr.example.org/fhir"),
        ("http://127.0.0.1:80/fhir", "http://127.0.0.1/fhir"),
        ("http://127.0.0.1:8080/fhir//", "http://127.0.0.1:8080/fhir"),
        ("https://ehr.example.org:8443/FHIR", "https://ehr.example.org:8443/FHIR"),
        ("https://ehr.example.org", "https://ehr.example.org"),
        ("http://[::1]:9000/fhir", "http://[::1]:9000/fhir"),
        ("  https://ehr.example.org/fhir  ", "https://ehr.example.org/fhir"),
    ],
)
def test_normalise_base(url, expected):
    assert normalise_base(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "ftp://ehr.example.org/fhir",
        "file:///etc/passwd",
        "/fhir",
        "ehr.example.org/fhir",
        "https://user:secret@ehr.example.org/fhir",
        "https://ehr.example.org/fhir?x=1",
        "https://ehr.example.org/fhir#frag",
        "https://ehr.example.org:99999/fhir",
        "https://:443/fhir",
        "",
    ],
)
def test_not_a_base(url):
    assert normalise_base(url) is None


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8080/fhir", True),
        ("http://127.8.9.10/fhir", True),
        ("http://localhost:8080/fhir", True),
        ("http://LOCALHOST/fhir", True),
        ("http://[::1]:8080/fhir", True),
        ("http://10.0.0.1/fhir", False),
        ("http://localhost.example.org/fhir", False),
        ("http://127.0.0.1.nip.io/fhir", False),
        ("http://0.0.0.0/fhir", False),
    ],
)
def test_is_loopback(url, loopback):
    assert is_loopback(url) is loopback


@pytest.mark.parametrize(
    ("url", "under"),
    [
        ("https://ehr.example.org/fhir/Condition?patient=1", True),
        ("https://EHR.example.org:443/fhir/Condition?patient=1&_page=2", True),
        ("https://ehr.example.org/fhir", True),
        ("https://ehr.example.org/fhirx/Condition", False),
        ("https://ehr.example.org/other/Condition", False),
        ("http://ehr.example.org/fhir/Condition", False),
        ("https://ehr.example.org:8443/fhir/Condition", False),
        ("https://evil.example.org/fhir/Condition", False),
        ("https://ehr.example.org.evil.example/fhir/Condition", False),
        ("https://user@ehr.example.org/fhir/Condition", False),
        ("https://ehr.example.org/fhir/../admin", False),
        ("https://ehr.example.org/fhir/%2e%2e/admin", False),
        ("https://ehr.example.org/fhir/./Condition?_page=2", True),
        ("/fhir/Condition", False),
    ],
)
def test_is_under(url, under):
    assert is_under(url, "https://ehr.example.org/fhir/") is under


HTTPS = "https://ehr.example.org/fhir"
LOOP = "http://127.0.0.1:8080/fhir"


def test_a_listed_https_server_with_a_token_is_allowed():
    policy = AccessPolicy.of([HTTPS])
    assert policy.refusal(HTTPS, has_token=True) is None
    assert policy.refusal("https://EHR.example.org:443/fhir/", has_token=True) is None


def test_an_unlisted_server_is_refused_even_with_a_token():
    policy = AccessPolicy.of([HTTPS])
    assert "not an allowed" in (policy.refusal("https://other.example.org/fhir", True) or "")
    assert policy.refusal("https://ehr.example.org/fhir/r5", True) is not None
    assert policy.refusal("https://ehr.example.org", True) is not None


def test_https_listed_does_not_allow_http_on_the_same_host():
    policy = AccessPolicy.of([HTTPS])
    assert policy.refusal("http://ehr.example.org/fhir", True) is not None


def test_an_http_entry_allows_that_exact_http_server():
    policy = AccessPolicy.of([LOOP])
    assert policy.refusal(LOOP, True) is None
    assert policy.refusal("http://127.0.0.1:8081/fhir", True) is not None


def test_production_needs_a_token():
    policy = AccessPolicy.of([HTTPS])
    assert "fhirAuthorization" in (policy.refusal(HTTPS, has_token=False) or "")


def test_development_allows_open_listed_servers_and_loopback_http():
    policy = AccessPolicy.of([HTTPS], development=True)
    assert policy.refusal(HTTPS, has_token=False) is None
    assert policy.refusal("http://127.0.0.1:9999/fhir", has_token=False) is None
    assert policy.refusal("http://localhost:9999/fhir", has_token=True) is None


def test_development_does_not_open_other_servers():
    policy = AccessPolicy.of([], development=True)
    assert policy.refusal("https://other.example.org/fhir", False) is not None
    assert policy.refusal("http://10.1.2.3/fhir", False) is not None
    assert policy.refusal("http://169.254.169.254/latest", True) is not None


def test_the_allowed_list_merges_caller_and_configuration():
    policy = AccessPolicy.of(["https://a.example.org/fhir/"], ["HTTPS://b.example.org/fhir"])
    assert policy.allowed == ("https://a.example.org/fhir", "https://b.example.org/fhir")
    assert policy.refusal("https://b.example.org/fhir", True) is None


@pytest.mark.parametrize("bad", [None, "", "not a url", "https://u:p@ehr.example.org/fhir"])
def test_no_or_bad_fhir_server_is_refused(bad):
    assert AccessPolicy.of([HTTPS], development=True).refusal(bad, True) is not None


def test_the_setting_is_comma_separated(monkeypatch):
    monkeypatch.setenv("CDS_ALLOWED_FHIR_SERVERS", f" {HTTPS}/ ,{LOOP},")
    assert Settings().allowed_fhir_servers == (f"{HTTPS}/", LOOP)


def test_the_setting_refuses_what_is_not_a_base_url(monkeypatch):
    monkeypatch.setenv("CDS_ALLOWED_FHIR_SERVERS", "ehr.example.org/fhir")
    with pytest.raises(ValidationError, match="not an http"):
        Settings()
