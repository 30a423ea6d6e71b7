"""HTTPS for the phone: the self-signed certificate covers this machine's names, is kept and
reused, is made anew when the names change; a user's own files are checked; the printed page
addresses carry the token in the fragment only."""

from __future__ import annotations

import pytest
from cryptography import x509

from roadscene.errors import InputError
from roadscene.serve import ServeSettings
from roadscene.serve.server import page_urls
from roadscene.serve.tls import CERT_FILE, KEY_FILE, check_pem_pair, self_signed_certificate


def _names(cert_path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def test_self_signed_certificate_is_made_once_and_reused(tmp_path) -> None:
    names = ["localhost", "127.0.0.1", "192.168.1.20"]
    cert, key = self_signed_certificate(tmp_path / "tls", names)
    assert (cert.name, key.name) == (CERT_FILE, KEY_FILE)
    assert _names(cert) == set(names)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    check_pem_pair(cert, key)
    first = cert.read_bytes()
    self_signed_certificate(tmp_path / "tls", names[:2])  # covered: reused as it is
    assert cert.read_bytes() == first
    self_signed_certificate(tmp_path / "tls", [*names, "10.0.0.7"])  # a new address: made anew
    assert cert.read_bytes() != first and "10.0.0.7" in _names(cert)


def test_user_certificate_files_are_checked(tmp_path) -> None:
    cert, key = self_signed_certificate(tmp_path, ["localhost"])
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(InputError, match="not a readable PEM certificate"):
        check_pem_pair(bad, key)
    with pytest.raises(InputError, match="not a readable unencrypted PEM key"):
        check_pem_pair(cert, bad)


def test_page_urls() -> None:
    assert page_urls(ServeSettings(), 8000) == ["http://localhost:8000/"]
    token = "t" * 20
    lan = ServeSettings(host="192.168.1.20", token=token, https=True)
    assert page_urls(lan, 8443) == [f"https://192.168.1.20:8443/#token={token}"]
    local_with_token = ServeSettings(token=token)
    assert page_urls(local_with_token, 8000) == [f"http://localhost:8000/#token={token}"]
    everywhere = page_urls(ServeSettings(host="0.0.0.0", token=token), 8000)
    assert everywhere[0] == f"http://localhost:8000/#token={token}"
