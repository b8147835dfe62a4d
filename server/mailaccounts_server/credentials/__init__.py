"""Encryption at rest for stored mailbox credentials."""

from mailaccounts_server.credentials.crypto import (
    KEY_SIZE,
    KEYS_ENV_VAR,
    ConfigurationError,
    CredentialCipher,
    CredentialDecryptError,
    build_cipher,
    generate_key,
    key_id_for,
    load_or_create_key_file,
    parse_keys,
)

__all__ = [
    "KEY_SIZE",
    "KEYS_ENV_VAR",
    "ConfigurationError",
    "CredentialCipher",
    "CredentialDecryptError",
    "build_cipher",
    "generate_key",
    "key_id_for",
    "load_or_create_key_file",
    "parse_keys",
]
