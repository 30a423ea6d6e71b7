"""HTTPS for a phone on the local network: browsers give the camera only to secure pages
(`https://`, or `http://localhost`). Without a certificate of the user's own, one is made locally
with `cryptography` (self-signed, for this machine's names and addresses) and kept for reuse."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from roadscene.errors import InputError
from roadscene.io import atomic_write

CERT_FILE, KEY_FILE = "roadscene-serve.crt", "roadscene-serve.key"
VALID_DAYS = 365


def default_cert_dir() -> Path:
    """`$XDG_CONFIG_HOME/roadscene/tls` (default `~/.config/roadscene/tls`)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "roadscene" / "tls"


def lan_addresses() -> list[str]:
    """This machine's address on its default route (what a phone on the same network uses);
    nothing is sent: connecting a UDP socket only picks the route."""
    found: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            address = probe.getsockname()[0]
            if not ipaddress.ip_address(address).is_loopback:
                found.append(address)
    except OSError:
        pass
    return found


def certificate_names(host: str) -> list[str]:
    """Names a certificate for a server bound to `host` must cover."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    if host not in ("0.0.0.0", "::"):
        names.append(host)
    names += lan_addresses()
    return list(dict.fromkeys(names))


def _covers(cert_path: Path, names: Iterable[str]) -> bool:
    """Whether the saved certificate is still valid for a day and names all of `names`."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have = set(san.get_values_for_type(x509.DNSName))
    have |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    fresh = cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    return fresh and set(names) <= have


def self_signed_certificate(folder: Path, names: list[str]) -> tuple[Path, Path]:
    """(certificate, key) in `folder`: reused when still valid for `names`, else made anew
    (ECDSA P-256, valid a year; the key readable by its owner only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if key_path.is_file() and _covers(cert_path, names):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "roadscene serve")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(key_path, "wb") as handle:
            os.chmod(handle.name, 0o600)
            handle.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        with atomic_write(cert_path, "wb") as handle:
            handle.write(cert.public_bytes(serialization.Encoding.PEM))
    except OSError as err:
        raise InputError(f"cannot write the certificate: {err}", path=folder) from None
    return cert_path, key_path


def check_pem_pair(cert: Path, key: Path) -> None:
    """A user-given certificate and key must be readable PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError) as err:
        raise InputError(f"not a readable PEM certificate: {err}", path=cert) from None
    try:
        serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise InputError(f"not a readable unencrypted PEM key: {err}", path=key) from None
