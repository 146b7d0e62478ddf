"""The deployment examples in `deploy/` parse with the tools that will read them.

`systemd-analyze verify` checks the units and `nginx -t` the proxy configuration, each where the
tool is installed (`scripts/test` installs them on Debian when it can); otherwise the test is
skipped with the reason, visibly.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cds_service.settings import PROJECT_ROOT, Settings

DEPLOY = PROJECT_ROOT / "deploy"
UNITS = ["cds-service.service", "cds-service-purge.service", "cds-service-purge.timer"]
RELEASE = "/opt/cds-service"


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/test installs it on Debian when it can)")
    return path


def verify_problems(folder: Path, units: list[str]) -> list[str]:
    """What `systemd-analyze verify` says about these units (not about the host's own)."""
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", *(str(folder / unit) for unit in units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [
        line
        for line in result.stderr.splitlines()
        if any(unit in line for unit in units) and "user" not in line.lower()
    ]


def test_the_systemd_units_verify(tmp_path):
    for unit in UNITS:  # the release path made real: verify checks that programs exist
        text = (DEPLOY / "systemd" / unit).read_text().replace(RELEASE, str(PROJECT_ROOT))
        (tmp_path / unit).write_text(text)
    assert verify_problems(tmp_path, UNITS) == []
    broken = (tmp_path / UNITS[1]).read_text().replace("/.venv/bin/", "/no-such-venv/bin/")
    (tmp_path / "broken.service").write_text(broken)
    assert verify_problems(tmp_path, ["broken.service"]), "verify finds a missing program"


def test_the_unit_runs_serve_on_loopback_with_its_metrics_folder():
    unit = (DEPLOY / "systemd" / "cds-service.service").read_text()
    assert "cds-service serve --host 127.0.0.1 --port 8080" in unit
    assert "PROMETHEUS_MULTIPROC_DIR=/run/cds-service/metrics" in unit
    assert "RuntimeDirectory=cds-service" in unit


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cds.example-hospital.org")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert, private = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, private


def test_the_nginx_example_passes_nginx_t(tmp_path):
    nginx = tool("nginx")
    cert, key = self_signed(tmp_path)
    site = (
        (DEPLOY / "nginx" / "cds-service.conf")
        .read_text()
        .replace("/etc/ssl/certs/cds.example-hospital.org.pem", str(cert))
        .replace("/etc/ssl/private/cds.example-hospital.org.key", str(key))
        .replace("/var/log/nginx/", f"{tmp_path}/")
    )
    (tmp_path / "site.conf").write_text(site)
    for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / temp).mkdir()
    main = f"""
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    access_log {tmp_path}/access.log;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/site.conf;
}}
"""
    (tmp_path / "nginx.conf").write_text(main)
    result = subprocess.run(
        [
            nginx,
            "-t",
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "error.log"),
            "-c",
            str(tmp_path / "nginx.conf"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


def test_the_nginx_example_sends_what_the_service_reads_and_logs_no_secret():
    site = (DEPLOY / "nginx" / "cds-service.conf").read_text()
    assert "proxy_set_header Host $host;" in site
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in site
    assert "server 127.0.0.1:8080;" in site
    assert "$http_authorization" not in site.replace("never add $http_authorization", "")
    assert "client_max_body_size 10m;" in site  # CDS_MAX_BODY_BYTES, 10 MiB
    assert Settings.model_fields["max_body_bytes"].default == 10 * 1024 * 1024


def test_the_environment_example_names_only_real_settings():
    text = (DEPLOY / "cds-service.env.example").read_text()
    names = {
        line.lstrip("# ").split("=", 1)[0]
        for line in text.splitlines()
        if line.lstrip("# ").startswith("CDS_") and "=" in line
    }
    known = {f"CDS_{name.upper()}" for name in Settings.model_fields}
    assert names and names <= known, names - known
