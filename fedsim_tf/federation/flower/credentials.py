"""TLS certificates and SuperNode authentication keys for a local try-out of the Flower federation.

Layout of a credentials folder (:func:`generate`; generated, never committed):

* ``ca.crt`` / ``ca.key``: a self-signed certificate authority (EC P-384, 30 days);
* ``server.crt`` / ``server.key``: the SuperLink's TLS certificate, signed by the CA, valid for
  ``127.0.0.1``, ``::1`` and ``localhost`` (and any further host names given);
* ``<site>.key`` / ``<site>.pub``: each hospital's authentication key pair (EC P-384, OpenSSH format,
  as ``flower-supernode --auth-supernode-private-key`` and ``flwr supernode register`` read them).
  Only the public keys registered at the SuperLink may join (:mod:`fedsim_tf.federation.flower.launch`).

In a real deployment the hospitals' keys are generated at each hospital (only ``<site>.pub`` is sent to
the server's operator) and the server certificate comes from the operator's own CA.

Command: ``python -m fedsim_tf.federation.flower.credentials OUT_DIR SITE [SITE ...]``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedsim_tf.atomic import atomic_path
from fedsim_tf.errors import UserInputError

VALID_DAYS = 30
LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class Credentials:
    """Paths of a credentials folder (see the module docstring)."""

    folder: Path

    @property
    def ca_certificate(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def server_certificate(self) -> Path:
        return self.folder / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    def site_private_key(self, site: str) -> Path:
        return self.folder / f"{site}.key"

    def site_public_key(self, site: str) -> Path:
        return self.folder / f"{site}.pub"


def _write_private(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
        os.chmod(temporary, 0o600)


def _write(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
        os.chmod(temporary, 0o644)


def _certificate(subject: str, public_key: ec.EllipticCurvePublicKey, issuer: x509.Name | None,
                 signing_key: ec.EllipticCurvePrivateKey, hosts: Sequence[str], ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if hosts:
        entries: list[x509.GeneralName] = []
        for host in hosts:
            try:
                entries.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                entries.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    return builder.sign(signing_key, hashes.SHA384())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def generate(folder: str | os.PathLike[str], sites: Sequence[str], hosts: Sequence[str] = ()) -> Credentials:
    """Write a CA, the server's TLS certificate and one authentication key pair per site.

    Args:
        folder: the credentials folder (created; existing files are replaced).
        sites: the hospitals' names (file names of their key pairs).
        hosts: further host names or IP addresses of the server (besides the loopback ones).

    Raises:
        UserInputError: no site, or a site name that is not a plain file name.
    """
    if not sites:
        raise UserInputError("credentials: name at least one site")
    bad = [site for site in sites if not site or os.path.basename(site) != site or site.startswith(".")]
    if bad:
        raise UserInputError(f"credentials: site names {bad} are not plain file names")
    credentials = Credentials(Path(folder))
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = _certificate("fedsim-tf try-out CA", ca_key.public_key(), None, ca_key, (), ca=True)
    server_key = ec.generate_private_key(ec.SECP384R1())
    server = _certificate("fedsim-tf server", server_key.public_key(), ca.subject, ca_key,
                          [*LOOPBACK_ADDRESSES, *LOOPBACK_NAMES, *hosts], ca=False)
    _write_private(credentials.folder / "ca.key", _pem_key(ca_key))
    _write(credentials.ca_certificate, ca.public_bytes(serialization.Encoding.PEM))
    _write_private(credentials.server_key, _pem_key(server_key))
    _write(credentials.server_certificate, server.public_bytes(serialization.Encoding.PEM))
    for site in sites:
        key = ec.generate_private_key(ec.SECP384R1())
        _write_private(credentials.site_private_key(site), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
        _write(credentials.site_public_key(site), key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n")
    return credentials


def main(argv: Sequence[str]) -> None:
    if len(argv) < 2:
        raise UserInputError("usage: python -m fedsim_tf.federation.flower.credentials OUT_DIR SITE [SITE ...]")
    credentials = generate(argv[0], argv[1:])
    print(f"credentials for {', '.join(argv[1:])} -> {credentials.folder}")


if __name__ == "__main__":
    from fedsim_tf.cli import fail

    try:
        main(sys.argv[1:])
    except UserInputError as error:
        fail(str(error))
