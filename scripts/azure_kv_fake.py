#!/usr/bin/env python3
"""A protocol fake of the Azure Key Vault keys REST API, for cmek's tests.

Written from Microsoft's public Key Vault REST reference (keys, api-version
2025-07-01 as the Rust SDK sends it), for exactly the calls cmek makes and its
tests need: create key, get key (with and without a version), update key
(enabled, nbf, exp, key_ops), wrapKey and unwrapKey (RSA-OAEP-256, RSA-OAEP
and A128KW/A192KW/A256KW), sign (RSA keys: PS256/384/512 and RS256/384/512
over a digest the caller computed), all done for real with
pyca/cryptography, delete key (soft delete), get / purge / recover a deleted
key. A key's permitted operations (key_ops) are enforced as Key Vault does:
an operation the key does not allow is refused with 403 and the inner code
KeyOperationForbidden; a key created without key_ops allows every operation
of its type. Errors have the service's body
shape, {"error": {"code", "message", "innererror": {"code"}}}, and status
codes. Requests without a bearer token get the service's authentication
challenge (401 with WWW-Authenticate naming the resource
https://vault.azure.net); only the one token this server was given is
accepted.

It is NOT Key Vault: no RBAC or access-policy evaluation (a key's calls are
refused only when a test asks, through /_fake/deny), no throttling, no
Managed HSM specifics (oct-HSM keys are created on any "vault"), no key
rotation policies, releases, backups or tags, no purge protection, no
retention delay. See docs/AZURE_KEY_VAULT.md.

Usage: azure_kv_fake.py PORT DIR
  Serves HTTPS on 127.0.0.1:PORT with a certificate for 127.0.0.1 signed by a
  fresh test CA, written to DIR/ca.pem. The accepted token is read from the
  environment variable CMEK_AZURE_KV_TOKEN.

Test-only control endpoints, outside the API's paths and without auth:
  GET  /_fake/calls[?key=NAME]      {"total": N, "operations": {op: N}}, for
                                     every API request, or NAME's
  POST /_fake/deny?key=NAME[&op=OP]  answer 403 to NAME's calls (every
                                     operation, or OP: get, wrapKey,
                                     unwrapKey, sign, update, delete)
  POST /_fake/allow?key=NAME         undo every deny of NAME
"""

import base64
import datetime
import ipaddress
import json
import os
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CHALLENGE = (
    'Bearer authorization="https://login.microsoftonline.com/common", '
    'resource="https://vault.azure.net"'
)
RECOVERY_LEVEL = "Recoverable+Purgeable"
# The operations each key type allows, and so the default key_ops.
KEY_OPS = {
    "RSA": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
    "RSA-HSM": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
    "oct-HSM": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
}
# Signature algorithms of RSA keys: the hash, and whether PSS (salt as long
# as the hash, RFC 7518) or PKCS#1 v1.5 padding.
SIGN_ALGORITHMS = {
    "PS256": (hashes.SHA256, True),
    "PS384": (hashes.SHA384, True),
    "PS512": (hashes.SHA512, True),
    "RS256": (hashes.SHA256, False),
    "RS384": (hashes.SHA384, False),
    "RS512": (hashes.SHA512, False),
}
RECOVERABLE_DAYS = 90


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    if not isinstance(text, str):
        raise ValueError("not a string")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def int_bytes(n):
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class ApiError(Exception):
    def __init__(self, status, code, message, inner=None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.headers = headers or {}


def not_found(name):
    return ApiError(
        404,
        "KeyNotFound",
        f"A key with (name/id) {name} was not found in this key vault. If you "
        "recently deleted this key you may be able to recover it using the "
        "correct recovery command.",
    )


def bad(message):
    return ApiError(400, "BadParameter", message)


class Version:
    """One version of a key: its material and attributes."""

    def __init__(self, kty, size, key_ops):
        self.id = secrets.token_hex(16)
        self.kty = kty
        self.key_ops = key_ops
        now = int(time.time())
        self.attributes = {
            "enabled": True,
            "created": now,
            "updated": now,
            "recoveryLevel": RECOVERY_LEVEL,
            "recoverableDays": RECOVERABLE_DAYS,
        }
        if kty in ("RSA", "RSA-HSM"):
            self.private = rsa.generate_private_key(65537, size)
            self.secret = None
        else:
            self.private = None
            self.secret = os.urandom(size // 8)

    def bundle(self, base, name):
        key = {
            "kid": f"{base}/keys/{name}/{self.id}",
            "kty": self.kty,
            "key_ops": self.key_ops,
        }
        if self.private is not None:
            numbers = self.private.public_key().public_numbers()
            key["n"] = b64url(int_bytes(numbers.n))
            key["e"] = b64url(int_bytes(numbers.e))
        return {"key": key, "attributes": dict(self.attributes)}


class Vault:
    def __init__(self):
        self.lock = threading.Lock()
        self.keys = {}  # name -> [Version], oldest first
        self.deleted = {}  # name -> (versions, deleted date)
        self.denied = {}  # name -> set of operations, "*" for all
        self.calls = {}  # key name ("" for all) -> {operation: count}

    def count(self, operation, name):
        with self.lock:
            for scope in ("", name):
                ops = self.calls.setdefault(scope, {})
                ops[operation] = ops.get(operation, 0) + 1

    def counts(self, name):
        ops = dict(self.calls.get(name, {}))
        return {"total": sum(ops.values()), "operations": ops}

    def check_denied(self, name, operation):
        ops = self.denied.get(name, set())
        if "*" in ops or operation in ops:
            raise ApiError(
                403,
                "Forbidden",
                f"The user, group or application does not have keys {operation} "
                "permission on key vault.",
                inner="ForbiddenByPolicy",
            )

    def version(self, name, version):
        versions = self.keys.get(name)
        if not versions:
            raise not_found(name)
        if not version:
            return versions[-1]
        for v in versions:
            if v.id == version:
                return v
        raise not_found(f"{name}/{version}")


def check_window(v, operation):
    """Wraps outside the nbf/exp window are refused; unwraps are not."""
    now = time.time()
    nbf = v.attributes.get("nbf")
    exp = v.attributes.get("exp")
    if exp is not None and now >= exp:
        raise ApiError(
            403, "Forbidden", f"Operation {operation} is not allowed on an expired key."
        )
    if nbf is not None and now < nbf:
        raise ApiError(
            403, "Forbidden", f"Operation {operation} is not allowed on a key that is not yet valid."
        )


def check_key_ops(v, operation):
    if operation not in v.key_ops:
        raise ApiError(
            403,
            "Forbidden",
            f"Operation {operation} is not permitted on this key.",
            inner="KeyOperationForbidden",
        )


def sign(v, alg, digest):
    if v.private is None:
        raise bad(f"Invalid algorithm {alg} for key type {v.kty}.")
    if alg not in SIGN_ALGORITHMS:
        raise bad(f"Invalid algorithm {alg} for key type {v.kty}.")
    hash_type, pss = SIGN_ALGORITHMS[alg]
    if len(digest) != hash_type.digest_size:
        raise bad(f"The digest length is not valid for algorithm {alg}.")
    if pss:
        pad = padding.PSS(padding.MGF1(hash_type()), hash_type.digest_size)
    else:
        pad = padding.PKCS1v15()
    return v.private.sign(digest, pad, utils.Prehashed(hash_type()))


def check_enabled(v, operation):
    if not v.attributes.get("enabled", True):
        raise ApiError(
            403,
            "Forbidden",
            f"Operation {operation} is not allowed on a disabled key.",
            inner="KeyDisabled",
        )


def wrap(v, alg, value):
    if v.private is not None:
        if alg == "RSA-OAEP-256":
            pad = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
        elif alg == "RSA-OAEP":
            pad = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
        else:
            raise bad(f"Invalid algorithm {alg} for key type {v.kty}.")
        try:
            return v.private.public_key().encrypt(value, pad), pad
        except ValueError:
            raise bad("The value is too long for the key.")
    expected = {16: "A128KW", 24: "A192KW", 32: "A256KW"}[len(v.secret)]
    if alg != expected:
        raise bad(f"Invalid algorithm {alg} for key type {v.kty}.")
    if len(value) < 16 or len(value) % 8:
        raise bad("The value must be a multiple of 8 bytes, at least 16.")
    return aes_key_wrap(v.secret, value), None


def unwrap(v, alg, value):
    if v.private is not None:
        if alg == "RSA-OAEP-256":
            pad = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
        elif alg == "RSA-OAEP":
            pad = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
        else:
            raise bad(f"Invalid algorithm {alg} for key type {v.kty}.")
        try:
            return v.private.decrypt(value, pad)
        except ValueError:
            raise bad("Invalid ciphertext.")
    expected = {16: "A128KW", 24: "A192KW", 32: "A256KW"}[len(v.secret)]
    if alg != expected:
        raise bad(f"Invalid algorithm {alg} for key type {v.kty}.")
    try:
        return aes_key_unwrap(v.secret, value)
    except (InvalidUnwrap, ValueError):
        raise bad("Invalid ciphertext.")


def check_ops(kty, key_ops):
    if not isinstance(key_ops, list) or any(op not in KEY_OPS[kty] for op in key_ops):
        raise bad(f"Invalid key operations {key_ops!r} for key type {kty}.")
    return list(key_ops)


def make_handler(vault, token):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

        def base(self):
            return f"https://{self.headers.get('Host', '127.0.0.1')}"

        def send_json(self, status, body, headers=None):
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if body is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return {}
            try:
                value = json.loads(raw)
            except ValueError:
                raise bad("The request body is not JSON.")
            if not isinstance(value, dict):
                raise bad("The request body is not a JSON object.")
            return value

        def handle_any(self, method):
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
            try:
                if parts[:1] == ["_fake"]:
                    # Read (and ignore) any body, to keep the connection usable.
                    self.body()
                    return self.control(method, parts[1:], query)
                # Read the body before answering, whatever the answer.
                body = self.body()
                operation = self.operation(method, parts)
                vault.count(operation, parts[1].lower())
                if "api-version" not in query:
                    raise bad("The api-version query parameter is required.")
                self.authenticate()
                with vault.lock:
                    status, answer = self.api(method, parts, body, operation)
                self.send_json(status, answer)
            except ApiError as e:
                error = {"code": e.code, "message": e.message}
                if e.inner:
                    error["innererror"] = {"code": e.inner}
                self.send_json(e.status, {"error": error}, e.headers)

        def authenticate(self):
            auth = self.headers.get("Authorization")
            if auth is None:
                raise ApiError(
                    401,
                    "Unauthorized",
                    "AKV10000: Request is missing a Bearer or PoP token.",
                    headers={"WWW-Authenticate": CHALLENGE},
                )
            if auth != f"Bearer {token}":
                raise ApiError(
                    401,
                    "Unauthorized",
                    "AKV10022: Invalid audience or token.",
                    headers={"WWW-Authenticate": CHALLENGE},
                )

        @staticmethod
        def operation(method, parts):
            if parts[:1] == ["keys"] and len(parts) >= 2:
                last = parts[-1].lower()
                if method == "POST" and last == "create" and len(parts) == 3:
                    return "create"
                if method == "POST" and last in ("wrapkey", "unwrapkey", "sign"):
                    return {"wrapkey": "wrapKey", "unwrapkey": "unwrapKey", "sign": "sign"}[last]
                if method == "GET" and len(parts) in (2, 3):
                    return "get"
                if method == "PATCH" and len(parts) in (2, 3):
                    return "update"
                if method == "DELETE" and len(parts) == 2:
                    return "delete"
            if parts[:1] == ["deletedkeys"] and len(parts) >= 2:
                if method == "GET" and len(parts) == 2:
                    return "getDeleted"
                if method == "DELETE" and len(parts) == 2:
                    return "purge"
                if method == "POST" and len(parts) == 3 and parts[2] == "recover":
                    return "recover"
            raise ApiError(400, "BadParameter", f"Unsupported request {method} /{'/'.join(parts)}")

        def api(self, method, parts, body, operation):
            name = parts[1].lower()
            if operation == "create":
                return self.create(name, body)
            if operation in ("getDeleted", "purge", "recover"):
                entry = vault.deleted.get(name)
                if entry is None:
                    raise ApiError(404, "KeyNotFound", f"Deleted Key not found: {name}")
                versions, deleted_at = entry
                if operation == "purge":
                    del vault.deleted[name]
                    return 204, None
                if operation == "recover":
                    del vault.deleted[name]
                    vault.keys[name] = versions
                    return 200, versions[-1].bundle(self.base(), name)
                return 200, self.deleted_bundle(name, versions[-1], deleted_at)
            vault.check_denied(name, operation)
            if operation == "delete":
                versions = vault.keys.pop(name, None)
                if not versions:
                    raise not_found(name)
                deleted_at = int(time.time())
                vault.deleted[name] = (versions, deleted_at)
                return 200, self.deleted_bundle(name, versions[-1], deleted_at)
            version = parts[2] if len(parts) >= 3 and operation in ("get", "update") else None
            if operation in ("wrapKey", "unwrapKey", "sign") and len(parts) == 4:
                version = parts[2]
            v = vault.version(name, version)
            if operation == "get":
                return 200, v.bundle(self.base(), name)
            if operation == "update":
                attributes = body.get("attributes") or {}
                if not isinstance(attributes, dict):
                    raise bad("attributes must be an object")
                for field in ("enabled", "nbf", "exp"):
                    if field in attributes:
                        v.attributes[field] = attributes[field]
                        if attributes[field] is None:
                            del v.attributes[field]
                if body.get("key_ops") is not None:
                    v.key_ops = check_ops(v.kty, body["key_ops"])
                v.attributes["updated"] = int(time.time())
                return 200, v.bundle(self.base(), name)
            check_enabled(v, operation)
            check_key_ops(v, operation)
            alg = body.get("alg")
            try:
                value = unb64url(body.get("value"))
            except (ValueError, TypeError):
                raise bad("value must be base64url")
            kid = f"{self.base()}/keys/{name}/{v.id}"
            if operation == "sign":
                check_window(v, operation)
                return 200, {"kid": kid, "value": b64url(sign(v, alg, value))}
            if operation == "wrapKey":
                check_window(v, operation)
                result, _ = wrap(v, alg, value)
                return 200, {"kid": kid, "value": b64url(result)}
            return 200, {"kid": kid, "value": b64url(unwrap(v, alg, value))}

        def create(self, name, body):
            if name in vault.deleted:
                raise ApiError(
                    409,
                    "Conflict",
                    f"Key {name} is currently in a deleted but recoverable state, and "
                    "its name cannot be reused; in this state, the key can only be "
                    "recovered or purged.",
                )
            kty = body.get("kty")
            if kty in ("RSA", "RSA-HSM"):
                size = body.get("key_size") or 2048
                if size not in (2048, 3072, 4096):
                    raise bad(f"Invalid key size {size} for RSA.")
            elif kty == "oct-HSM":
                size = body.get("key_size") or 256
                if size not in (128, 192, 256):
                    raise bad(f"Invalid key size {size} for oct-HSM.")
            else:
                raise bad(f"Unsupported key type {kty!r} in this test server.")
            key_ops = check_ops(kty, body.get("key_ops") or KEY_OPS[kty])
            v = Version(kty, size, key_ops)
            attributes = body.get("attributes") or {}
            for field in ("enabled", "nbf", "exp"):
                if field in attributes:
                    v.attributes[field] = attributes[field]
            vault.keys.setdefault(name, []).append(v)
            return 200, v.bundle(self.base(), name)

        def deleted_bundle(self, name, v, deleted_at):
            bundle = v.bundle(self.base(), name)
            bundle["recoveryId"] = f"{self.base()}/deletedkeys/{name}"
            bundle["deletedDate"] = deleted_at
            bundle["scheduledPurgeDate"] = deleted_at + RECOVERABLE_DAYS * 86400
            return bundle

        def control(self, method, parts, query):
            name = (query.get("key") or [""])[0].lower()
            with vault.lock:
                if method == "GET" and parts == ["calls"]:
                    return self.send_json(200, vault.counts(name))
                if method == "POST" and parts == ["deny"] and name:
                    op = (query.get("op") or ["*"])[0]
                    vault.denied.setdefault(name, set()).add(op)
                    return self.send_json(200, {"denied": sorted(vault.denied[name])})
                if method == "POST" and parts == ["allow"] and name:
                    vault.denied.pop(name, None)
                    return self.send_json(200, {"denied": []})
            raise ApiError(404, "NotFound", "unknown control request")

        def do_GET(self):
            self.handle_any("GET")

        def do_POST(self):
            self.handle_any("POST")

        def do_PATCH(self):
            self.handle_any("PATCH")

        def do_DELETE(self):
            self.handle_any("DELETE")

        def do_PUT(self):
            self.handle_any("PUT")

    return Handler


def certificates(directory):
    """A test CA (written to DIR/ca.pem) and a server certificate for
    127.0.0.1 it signed; returns the server's PEM paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cmek Key Vault test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    os.makedirs(directory, exist_ok=True)
    paths = {name: os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key")}
    with open(paths["ca.pem"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["server.pem"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["server.key"], "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths["server.pem"], paths["server.key"]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    port, directory = int(sys.argv[1]), sys.argv[2]
    token = os.environ.get("CMEK_AZURE_KV_TOKEN")
    if not token:
        sys.exit("CMEK_AZURE_KV_TOKEN must name the token to accept")
    cert, key = certificates(directory)
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(Vault(), token))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"Key Vault test server on https://127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
