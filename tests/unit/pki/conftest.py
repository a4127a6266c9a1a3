"""Read certificates back with the real openssl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


class OpenSSL:
    def __init__(self, binary: str) -> None:
        self.binary = binary

    def run(self, *args: str, input: bytes | None = None) -> bytes:
        return subprocess.run([self.binary, *args], check=True, capture_output=True, input=input).stdout

    def text(self, cert: Path) -> str:
        return self.run("x509", "-noout", "-text", "-nameopt", "RFC2253", "-in", str(cert)).decode()

    def field(self, cert: Path, *flags: str) -> str:
        return self.run("x509", "-noout", *flags, "-in", str(cert)).decode().strip()

    @staticmethod
    def extension(text: str, name: str) -> tuple[bool, str]:
        """(critical, value) of an X509v3 extension in `x509 -text` output; value '' when absent."""
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith(f"X509v3 {name}:"):
                return line.strip().endswith("critical"), lines[i + 1].strip()
        return False, ""


@pytest.fixture(scope="session")
def openssl() -> OpenSSL:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.skip("openssl is not installed (make deps installs it)")
    return OpenSSL(binary)
