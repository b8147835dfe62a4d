"""Encryption at rest for stored mailbox credentials."""

from mailaccounts_server.credentials.crypto import (
    KEY_SIZE,
    KEYS_ENV_VAR,
    TOKEN_KEY_ID_PREFIX,
    ConfigurationError,
    CredentialCipher,
    CredentialDecryptError,
    build_cipher,
    generate_key,
    key_id_for,
    load_or_create_key_file,
    parse_keys,
    token_key_id,
)

__all__ = [
    "KEY_SIZE",
    "KEYS_ENV_VAR",
    "TOKEN_KEY_ID_PREFIX",
    "ConfigurationError",
    "CredentialCipher",
    "CredentialDecryptError",
    "build_cipher",
    "generate_key",
    "key_id_for",
    "load_or_create_key_file",
    "parse_keys",
    "token_key_id",
]
