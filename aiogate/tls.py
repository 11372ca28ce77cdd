"""TLS: the server's ``ssl.SSLContext`` from the settings, and what a TLS connection
tells the app.

Owns: ``make_ssl_context`` (runs once, at startup: it reads the certificate and key
files) and ``tls_environ`` (runs on the event loop when a TLS connection is made: the
mod_ssl-style variables that go into every request's environ on it). Uses only the
standard library's ``ssl`` module.
"""

from __future__ import annotations

import ssl

from .config import CertReqs, TLSVersion
from .errors import ConfigError

__all__ = ["make_ssl_context", "tls_environ"]

_CERT_REQS = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def make_ssl_context(
    *,
    certfile: str,
    keyfile: str | None = None,
    password: str | None = None,
    ca_certs: str | None = None,
    cert_reqs: CertReqs = "none",
    ciphers: str = "",
    minimum_version: TLSVersion = "TLSv1.2",
) -> ssl.SSLContext:
    """A server context: our certificate chain, the minimum protocol version, and,
    with ``cert_reqs`` other than ``none``, client certificates checked against
    ``ca_certs``. Raises ``ConfigError`` with the reason when a file cannot be used."""
    # PROTOCOL_TLS_SERVER: modern defaults (no SSLv3, no compression), and
    # create_default_context's cipher list unless ``ciphers`` says otherwise.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = _VERSIONS[minimum_version]
    try:
        context.load_cert_chain(certfile, keyfile, password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"ssl_certfile/ssl_keyfile {certfile!r}/{keyfile!r}: {exc}"
        ) from None
    if ca_certs:
        try:
            context.load_verify_locations(ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"ssl_ca_certs {ca_certs!r}: {exc}") from None
    context.verify_mode = _CERT_REQS[cert_reqs]
    if ciphers:
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(f"ssl_ciphers {ciphers!r}: {exc}") from None
    return context


# getpeercert() attribute names -> the short names of RFC 4514 strings.
_DN_KEYS = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
}


def _distinguished_name(name: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    """``getpeercert()``'s subject as ``CN=client,O=Example`` (RFC 4514 order)."""
    return ",".join(
        "+".join(f"{_DN_KEYS.get(key, key)}={value}" for key, value in rdn)
        for rdn in reversed(name)
    )


def tls_environ(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, str]:
    """The environ variables of a TLS connection, with mod_ssl's names: ``HTTPS``,
    ``SSL_PROTOCOL``, ``SSL_CIPHER``, ``SSL_CLIENT_VERIFY`` and, when the client
    showed a certificate, ``SSL_CLIENT_CERT`` (PEM) and ``SSL_CLIENT_S_DN``/
    ``SSL_CLIENT_I_DN``."""
    env = {"HTTPS": "on"}
    if ssl_object is None:
        return env
    version = ssl_object.version()
    if version:
        env["SSL_PROTOCOL"] = version
    cipher = ssl_object.cipher()
    if cipher:
        env["SSL_CIPHER"] = cipher[0]
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        env["SSL_CLIENT_VERIFY"] = "NONE"
        return env
    # A certificate is only handed over once the handshake verified it.
    env["SSL_CLIENT_VERIFY"] = "SUCCESS"
    env["SSL_CLIENT_CERT"] = ssl.DER_cert_to_PEM_cert(der)
    details = ssl_object.getpeercert()
    if details:
        env["SSL_CLIENT_S_DN"] = _distinguished_name(details.get("subject", ()))  # type: ignore[arg-type]
        env["SSL_CLIENT_I_DN"] = _distinguished_name(details.get("issuer", ()))  # type: ignore[arg-type]
    return env
