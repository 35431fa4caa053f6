"""The try-out credentials: a CA, a server certificate it signed for the loopback addresses, and one P-384
authentication key pair per site in the OpenSSH format that Flower's SuperNode and CLI read."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedsim_tf.errors import UserInputError
from fedsim_tf.federation.flower.credentials import generate


def test_the_server_certificate_is_signed_by_the_ca_for_loopback(tmp_path: Path) -> None:
    credentials = generate(tmp_path / "creds", ["A", "B"], hosts=["server.example.org"])
    ca = x509.load_pem_x509_certificate(credentials.ca_certificate.read_bytes())
    server = x509.load_pem_x509_certificate(credentials.server_certificate.read_bytes())
    server.verify_directly_issued_by(ca)  # raises when the signature or issuer does not match
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert {"localhost", "server.example.org"} <= set(names.get_values_for_type(x509.DNSName))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(credentials.server_key.read_bytes(), None)
    assert key.public_key().public_numbers() == server.public_key().public_numbers()
    assert credentials.server_key.stat().st_mode & 0o077 == 0


def test_each_site_gets_a_p384_openssh_key_pair(tmp_path: Path) -> None:
    credentials = generate(tmp_path, ["A", "B"])
    publics = []
    for site in ("A", "B"):
        private = serialization.load_ssh_private_key(credentials.site_private_key(site).read_bytes(), None)
        public = serialization.load_ssh_public_key(credentials.site_public_key(site).read_bytes())
        assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp384r1"
        assert private.public_key().public_numbers() == public.public_numbers()
        publics.append(public.public_numbers())
    assert publics[0] != publics[1]


def test_bad_site_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="plain file names"):
        generate(tmp_path, ["../A"])
    with pytest.raises(UserInputError, match="at least one site"):
        generate(tmp_path, [])
