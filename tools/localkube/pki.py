"""The local cluster's certificates and keys, made with the ``openssl`` command-line tool.

For: one throw-away CA per cluster, the apiserver serving certificate (SANs localhost and 127.0.0.1),
the admin client certificate (CN=admin, O=system:masters), the apiserver's client certificate for
kubelets (logs, exec), the service-account signing key, and on request more certificates signed by the
same CA (``issue``: a real node's kubelet serving and client certificates).
Must not: be used for anything but a throw-away local cluster (the keys are unencrypted on disk),
or reach the network.

Why the CLI and not the ``cryptography`` package: openssl is on every machine the project runs on,
while ``cryptography`` is not a declared dependency; a tool that works only where some other package
happens to have pulled it in would break on a clean machine.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# P-256 keys are generated in milliseconds (RSA-2048 takes a noticeable part of a second each), and every
# component involved (Go's TLS, Python's ssl, the apiserver's ES256 token signer) accepts them.
_CURVE = "prime256v1"
_DAYS = "3650"
_NEW_KEY = ("-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{_CURVE}", "-nodes")

# Our own openssl config, so the result does not depend on the machine's openssl.cnf (whose default
# extension sections differ between distributions and would clash with ours).
_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localkube
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, DNS:kubernetes, DNS:kubernetes.default, \
DNS:kubernetes.default.svc, IP:10.0.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""


class PkiError(RuntimeError):
    """openssl failed; the message carries its stderr."""


@dataclass(frozen=True, kw_only=True)
class Pki:
    """Paths of the PEM files of one cluster."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    # One EC key pair signs service-account tokens (apiserver and controller-manager get the private
    # key) and verifies them (the apiserver's --service-account-key-file, which wants the public half:
    # it does not read PKCS#8 private keys).
    service_account_key: Path
    service_account_public_key: Path
    # The apiserver's identity towards kubelets (logs, exec, port-forward): a member of system:masters,
    # so a kubelet that authorizes by webhook would allow it too.
    kubelet_client_cert: Path
    kubelet_client_key: Path


def create(directory: Path) -> Pki:
    """Write a fresh CA, serving and admin certificates and a service-account key into ``directory``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise PkiError("the openssl command is needed to make the local cluster's certificates")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openssl.cnf"
    config.write_text(_CONFIG)
    pki = Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        service_account_key=directory / "sa.key",
        service_account_public_key=directory / "sa.pub",
        kubelet_client_cert=directory / "apiserver-kubelet-client.crt",
        kubelet_client_key=directory / "apiserver-kubelet-client.key",
    )
    _run(
        openssl,
        *("req", "-x509", "-new", "-config", str(config), "-extensions", "ca", *_NEW_KEY),
        *("-keyout", str(pki.ca_key), "-out", str(pki.ca_cert), "-days", _DAYS, "-subj", "/CN=localkube-ca"),
    )
    _issue(openssl, config, pki, "serving", "/CN=kube-apiserver", pki.serving_cert, pki.serving_key)
    _issue(openssl, config, pki, "client", "/O=system:masters/CN=admin", pki.admin_cert, pki.admin_key)
    _issue(
        openssl,
        config,
        pki,
        "client",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
        pki.kubelet_client_cert,
        pki.kubelet_client_key,
    )
    _run(
        openssl,
        *("genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{_CURVE}"),
        *("-out", str(pki.service_account_key)),
    )
    _run(
        openssl,
        "pkey",
        "-in",
        str(pki.service_account_key),
        "-pubout",
        "-out",
        str(pki.service_account_public_key),
    )
    return pki


def issue(
    pki: Pki,
    *,
    subject: str,
    cert: Path,
    key: Path,
    server_ips: tuple[str, ...] = (),
    client: bool = False,
) -> None:
    """Sign one more certificate with the cluster's CA: a serving one for ``server_ips``, or a client one.

    ``subject`` is openssl's form, e.g. ``/O=system:nodes/CN=system:node:real-node-0``.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise PkiError("the openssl command is needed to make the local cluster's certificates")
    if client == bool(server_ips):
        raise ValueError("a certificate is either a client one or serves some IP addresses")
    # An extension section of its own: the SANs differ per certificate.
    usage = "clientAuth" if client else "serverAuth"
    sans = "" if client else "subjectAltName = " + ", ".join(f"IP:{ip}" for ip in server_ips) + "\n"
    config = cert.with_suffix(".cnf")
    config.write_text(
        _CONFIG
        + "[issued]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
        + f"extendedKeyUsage = {usage}\nauthorityKeyIdentifier = keyid\n{sans}"
    )
    _issue(openssl, config, pki, "issued", subject, cert, key)
    config.unlink()


def _issue(openssl: str, config: Path, pki: Pki, section: str, subject: str, cert: Path, key: Path) -> None:
    csr = cert.with_suffix(".csr")
    _run(
        openssl,
        *("req", "-new", "-config", str(config), *_NEW_KEY),
        *("-keyout", str(key), "-out", str(csr), "-subj", subject),
    )
    # A random serial instead of -CAcreateserial: no .srl state file, and Go rejects negative or zero
    # serials, which a positive 64-bit random value never is.
    serial = f"0x{secrets.randbits(63) | 1:x}"
    _run(
        openssl,
        *("x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key)),
        *("-set_serial", serial, "-days", _DAYS, "-extfile", str(config), "-extensions", section),
        *("-out", str(cert)),
    )
    csr.unlink()


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PkiError(f"{' '.join(argv[:3])} failed ({done.returncode}): {done.stderr.strip()}")
