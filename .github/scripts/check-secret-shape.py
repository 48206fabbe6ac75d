#!/usr/bin/env python3
"""Preflight of a deploy: does the runtime secret have the shape the service needs?

  check-secret-shape.py SECRET_NAME --store postgres|memory [--environment NAME]

With `store: postgres` a pod needs the database keys, or it crashes at start-up and the
deploy rolls back with no hint; a secret that does not exist, has no value, or is not a
JSON object does the same. This reads the secret once with the AWS CLI (the caller's
credentials) and checks key names and types only. No value is ever printed: the output
names keys, never their contents.

The service reads (service/src/secrets/format.rs):
  database_url                     a string, or the RDS format:
  host, username, password         strings (port, dbname, engine optional)
  api_keys                         an array of keys, each a string (read and write) or
                                   {"id": …, "key": …, "scopes": ["read", "write"]};
                                   without it every read and write is refused

Exit status 0 when the shape is right, 1 with one `::error::` line that says what to create
or add, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

EXAMPLE = '{"database_url":"postgres://USER:PASSWORD@HOST:5432/DB","api_keys":["KEY"]}'
RDS_KEYS = ("host", "username", "password")


class Unusable(Exception):
    """The secret cannot serve the service; the message says what to do."""


def fetch(secret: str) -> str:
    """The SecretString; the CLI's own error (which never holds the value) on failure."""
    result = subprocess.run(
        ["aws", "secretsmanager", "get-secret-value", "--secret-id", secret, "--query", "SecretString", "--output", "text"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        return result.stdout.rstrip("\n")
    error = result.stderr.strip()
    put = f"aws secretsmanager put-secret-value --secret-id {secret} --secret-string '{EXAMPLE}'"
    if "can't find the specified secret value" in error or "secret value for staging label" in error:
        raise Unusable(f"secret {secret} has no value yet: {put}")
    if "ResourceNotFoundException" in error:
        raise Unusable(f"secret {secret} does not exist: apply infra/aws (it creates it), then {put}")
    if "AccessDenied" in error:
        raise Unusable(f"cannot read secret {secret} with this role (needs secretsmanager:GetSecretValue and kms:Decrypt on it)")
    last = error.splitlines()[-1] if error else f"aws exited {result.returncode}"
    raise Unusable(f"cannot read secret {secret}: {last}")


def check(secret: str, text: str, store: str) -> list[str]:
    """The key names, when the shape is usable for this store."""
    if text in ("", "None"):  # the CLI prints None for a SecretBinary-only secret
        raise Unusable(f"secret {secret} has no SecretString: put a JSON object, e.g. {EXAMPLE}")
    try:
        fields = json.loads(text)
    except ValueError:
        raise Unusable(f"secret {secret} is not JSON: put a JSON object, e.g. {EXAMPLE}") from None
    if not isinstance(fields, dict):
        raise Unusable(f"secret {secret} is JSON but not an object: put a JSON object, e.g. {EXAMPLE}")
    keys = sorted(fields)
    have = f"(it has keys: {', '.join(keys) or 'none'})"

    def is_text(key: str) -> bool:
        return isinstance(fields.get(key), str) and fields[key].strip() != ""

    api_keys = fields.get("api_keys")
    if api_keys is not None and not (isinstance(api_keys, list) and all(is_api_key(k) for k in api_keys)):
        raise Unusable(
            f'secret {secret}: api_keys must be an array of strings or of objects like '
            f'{{"id":"ID","key":"KEY","scopes":["read"]}}, e.g. "api_keys":["KEY"] {have}'
        )
    if store == "postgres":
        if "database_url" in fields:
            if not is_text("database_url"):
                raise Unusable(f"secret {secret}: database_url must be a non-empty string {have}")
        elif any(k in fields for k in RDS_KEYS):
            missing = [k for k in RDS_KEYS if not is_text(k)]
            if missing:
                raise Unusable(f"secret {secret}: the RDS format needs {', '.join(missing)} as non-empty strings {have}")
        else:
            raise Unusable(
                f"secret {secret} has no database settings for store=postgres: add database_url "
                f"(or host, username, password) {have}"
            )
    if not api_keys:
        raise Unusable(f'secret {secret} has no api_keys: every write would be refused; add "api_keys":["KEY"] {have}')
    return keys


def is_api_key(entry) -> bool:
    """A plain key, or an id with a key and its scopes (service/src/auth/keys.rs)."""
    if isinstance(entry, str):
        return True
    if not isinstance(entry, dict):
        return False
    scopes = entry.get("scopes")
    return (
        isinstance(entry.get("id"), str)
        and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", entry["id"]) is not None
        and isinstance(entry.get("key"), str)
        and entry["key"].strip() != ""
        and isinstance(scopes, list)
        and scopes != []
        and all(scope in ("read", "write") for scope in scopes)
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Check the runtime secret's key names before a deploy.")
    parser.add_argument("secret", help="secret name or ARN (infra/aws output app_secret_names)")
    parser.add_argument("--store", required=True, choices=["memory", "postgres"], help="the chart's config.store")
    args = parser.parse_args(argv)
    try:
        keys = check(args.secret, fetch(args.secret), args.store)
    except Unusable as err:
        print(f"::error::preflight: {err}", file=sys.stderr)
        return 1
    print(f"preflight: secret {args.secret} has {', '.join(keys)} (store={args.store}): ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
