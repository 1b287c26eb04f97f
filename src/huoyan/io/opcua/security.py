"""Who may connect to the station's OPC UA server, and how.

Endpoints: ``basic256sha256`` offers Basic256Sha256 Sign&Encrypt with the server's
certificate (made once with asyncua's generator and kept in ``certificate_dir``);
``none`` adds an unencrypted endpoint. Identities: anonymous only when the recipe
allows it; user name and password for the users the recipe lists (each password is
read from the environment variable named there, never from the recipe file). If
``trusted_clients_dir`` is set, a client certificate must be one of the files there.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.server.user_managers import User, UserManager, UserRole
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from huoyan.core.recipe import OpcUaFeedback

log = logging.getLogger(__name__)


class PasswordUsers(UserManager):
    """User names with passwords from the environment; anonymous sessions only if allowed."""

    def __init__(self, passwords: dict[str, str], anonymous: bool) -> None:
        self.passwords = passwords
        self.anonymous = anonymous

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is None:
            return User(role=UserRole.User) if self.anonymous or certificate is not None else None
        expected = self.passwords.get(username)
        if expected is None or password is None or not hmac.compare_digest(expected.encode(), password.encode()):
            log.warning("opcua: login refused for user %r", username)
            return None
        return User(role=UserRole.User, name=username)


def user_passwords(cfg: OpcUaFeedback) -> dict[str, str]:
    out = {}
    for user, env in cfg.users.items():
        value = os.environ.get(env)
        if not value:
            raise ValueError(f"opcua: environment variable {env} (password of user {user!r}) is not set")
        out[user] = value
    return out


async def server_certificate(cert_dir: Path, app_uri: str) -> tuple[Path, Path]:
    cert_dir.mkdir(parents=True, exist_ok=True)
    key, cert = cert_dir / "server-key.pem", cert_dir / "server-cert.der"
    if not (key.exists() and cert.exists()):
        host = socket.gethostname()
        await setup_self_signed_certificate(
            key,
            cert,
            app_uri,
            host,
            [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
            {"commonName": f"Huoyan {host}", "organizationName": "Huoyan"},
        )
        log.info("opcua: made a self-signed server certificate in %s", cert_dir)
    return key, cert


def _fingerprints(folder: Path) -> set[bytes]:
    prints = set()
    for path in folder.iterdir():
        data = path.read_bytes()
        try:
            pem = b"-----BEGIN" in data
            cert = x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
        except ValueError:
            log.warning("opcua: %s is not a certificate; ignored", path)
            continue
        prints.add(cert.fingerprint(hashes.SHA256()))
    return prints


async def configure_security(server: Server, cfg: OpcUaFeedback, cert_dir: Path) -> None:
    policies = []
    if "none" in cfg.security:
        policies.append(ua.SecurityPolicyType.NoSecurity)
    if "basic256sha256" in cfg.security:
        policies.append(ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt)
    # asyncua's server application URI must match the certificate's.
    app_uri = "urn:huoyan:opcua:server"
    await server.set_application_uri(app_uri)
    key, cert = await server_certificate(cert_dir, app_uri)
    await server.load_certificate(str(cert))
    await server.load_private_key(str(key))
    server.set_security_policy(policies)
    tokens: list[type] = [ua.UserNameIdentityToken] if cfg.users else []
    if cfg.anonymous:
        tokens.append(ua.AnonymousIdentityToken)
    server.set_identity_tokens(tokens)
    server.iserver.set_user_manager(PasswordUsers(user_passwords(cfg), cfg.anonymous))
    if cfg.trusted_clients_dir is not None:
        trusted = _fingerprints(Path(cfg.trusted_clients_dir))

        async def validate(cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
            if cert.fingerprint(hashes.SHA256()) not in trusted:
                log.warning("opcua: client certificate of %s is not trusted", app.ApplicationUri)
                raise ua.UaStatusCodeError(ua.StatusCodes.BadCertificateUntrusted)

        server.set_certificate_validator(validate)
