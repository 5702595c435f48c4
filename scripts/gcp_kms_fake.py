#!/usr/bin/env python3
"""A protocol fake of Google Cloud KMS v1 (HTTP/JSON), for cmek's tests.

Written from Google's public Cloud KMS v1 REST reference, for exactly the
calls cmek makes and its tests need: GetCryptoKey, Encrypt, Decrypt,
CreateKeyRing, CreateCryptoKey, GetCryptoKeyVersion, UpdateCryptoKeyVersion,
CreateCryptoKeyVersion, UpdateCryptoKeyPrimaryVersion, and
DestroyCryptoKeyVersion / RestoreCryptoKeyVersion. It is not Google's
service: see docs/GCP_KMS.md for what it does not model.

* Key versions hold real AES-256-GCM keys (pyca/cryptography); a ciphertext
  is `u32be(version id) || nonce (12) || AES-GCM(plaintext)` with the key's
  name and the request's additional authenticated data as GCM associated
  data, so another key, another version's key or other associated data
  fails to decrypt.
* CRC32C (google-crc32c) is honoured as Google documents: a request checksum
  that does not match is INVALID_ARGUMENT; Encrypt answers
  verifiedPlaintextCrc32c / verifiedAdditionalAuthenticatedDataCrc32c and
  ciphertextCrc32c, Decrypt answers plaintextCrc32c.
* Errors have Google's shape: {"error": {"code", "message", "status"}}.
* Enums are accepted as names or numbers (the Rust client sends numbers)
  and answered as names; int64 fields as JSON strings; bytes as base64.

Test-only controls live under /_fake/, never under /v1/ (every control
takes and returns JSON; `key` scopes it to one CryptoKey, so tests running
in parallel do not disturb each other):

  GET  /_fake/calls?key=NAME     API calls naming the key (all keys without it)
  POST /_fake/deny               {"key", "permission", "denied": bool}
  POST /_fake/corrupt            {"key", "field", "count"}: damage the next
                                 answers' field (ciphertext, ciphertextCrc32c,
                                 plaintext, plaintextCrc32c,
                                 verifiedPlaintextCrc32c,
                                 verifiedAdditionalAuthenticatedDataCrc32c)
  POST /_fake/fail               {"key", "status", "count"}: answer the next
                                 calls with UNAVAILABLE, RESOURCE_EXHAUSTED, ...
  POST /_fake/version-state      {"version", "state"}: set any state, also
                                 those the API cannot reach (PENDING_IMPORT,
                                 DESTROYED, GENERATION_FAILED)

With the environment variable CMEK_GCP_KMS_FAKE_TOKEN=T set, every API
call must carry `Authorization: Bearer T` (401 UNAUTHENTICATED otherwise).
Usage: gcp_kms_fake.py PORT
"""

import base64
import datetime
import json
import os
import re
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import google_crc32c
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAX_DATA = 64 * 1024

STATES = {
    0: "CRYPTO_KEY_VERSION_STATE_UNSPECIFIED",
    5: "PENDING_GENERATION",
    1: "ENABLED",
    2: "DISABLED",
    3: "DESTROYED",
    4: "DESTROY_SCHEDULED",
    6: "PENDING_IMPORT",
    7: "IMPORT_FAILED",
    8: "GENERATION_FAILED",
    9: "PENDING_EXTERNAL_DESTRUCTION",
    10: "EXTERNAL_DESTRUCTION_FAILED",
}
PURPOSES = {
    0: "CRYPTO_KEY_PURPOSE_UNSPECIFIED",
    1: "ENCRYPT_DECRYPT",
    5: "ASYMMETRIC_SIGN",
    6: "ASYMMETRIC_DECRYPT",
    7: "RAW_ENCRYPT_DECRYPT",
    9: "MAC",
}
ALGORITHMS = {0: "CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED", 1: "GOOGLE_SYMMETRIC_ENCRYPTION"}
HTTP_OF = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

ID = r"[a-zA-Z0-9_-]{1,63}"
LOCATION = r"projects/[a-z0-9.:-]+/locations/[a-z0-9-]+"
RING = LOCATION + r"/keyRings/" + ID
KEY = RING + r"/cryptoKeys/" + ID
VERSION = KEY + r"/cryptoKeyVersions/[0-9]+"


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def enum_name(value, names, field):
    if isinstance(value, int) and value in names:
        return names[value]
    if isinstance(value, str) and value in names.values():
        return value
    raise ApiError("INVALID_ARGUMENT", f"Invalid value at '{field}': {value!r}")


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def crc(data):
    return google_crc32c.value(data)


def b64(data):
    return base64.b64encode(data).decode()


def unb64(body, field):
    value = body.get(field, "")
    try:
        return base64.b64decode(value, validate=True)
    except Exception:
        raise ApiError("INVALID_ARGUMENT", f"Invalid value at '{field}': not base64")


def int64(body, field):
    value = body.get(field)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError("INVALID_ARGUMENT", f"Invalid value at '{field}': {value!r}")


class Kms:
    def __init__(self):
        self.lock = threading.Lock()
        self.rings = {}
        self.keys = {}
        self.calls = {}
        self.denied = set()  # (key or "*", permission)
        self.corrupt = {}  # (key, field) -> count
        self.failing = {}  # key -> (status, count)

    # -- resources -------------------------------------------------------

    def key(self, name):
        key = self.keys.get(name)
        if key is None:
            raise ApiError("NOT_FOUND", f"CryptoKey {name} not found.")
        return key

    def version_json(self, key_name, vid):
        v = self.keys[key_name]["versions"][vid]
        out = {
            "name": f"{key_name}/cryptoKeyVersions/{vid}",
            "state": v["state"],
            "protectionLevel": "SOFTWARE",
            "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
            "createTime": v["createTime"],
        }
        return out

    def key_json(self, name):
        key = self.keys[name]
        out = {
            "name": name,
            "purpose": key["purpose"],
            "createTime": key["createTime"],
            "versionTemplate": {
                "protectionLevel": "SOFTWARE",
                "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
            },
        }
        if key["primary"] is not None:
            out["primary"] = self.version_json(name, key["primary"])
        return out

    def new_version(self, name):
        key = self.keys[name]
        vid = len(key["versions"]) + 1
        key["versions"][vid] = {
            "state": "ENABLED",
            "material": AESGCM.generate_key(bit_length=256),
            "createTime": now(),
        }
        return vid

    def split_version(self, version_name):
        key_name, _, vid = version_name.rpartition("/cryptoKeyVersions/")
        key = self.key(key_name)
        vid = int(vid)
        if vid not in key["versions"]:
            raise ApiError("NOT_FOUND", f"CryptoKeyVersion {version_name} not found.")
        return key_name, key, vid

    # -- the API ---------------------------------------------------------

    def get_crypto_key(self, name, query, body):
        self.key(name)
        return self.key_json(name)

    def encrypt(self, name, query, body):
        key = self.key(name)
        plaintext = unb64(body, "plaintext")
        aad = unb64(body, "additionalAuthenticatedData")
        if len(plaintext) > MAX_DATA or len(aad) > MAX_DATA:
            raise ApiError("INVALID_ARGUMENT", "The plaintext or additional authenticated data is too large.")
        pt_crc = int64(body, "plaintextCrc32c")
        aad_crc = int64(body, "additionalAuthenticatedDataCrc32c")
        if pt_crc is not None and pt_crc != crc(plaintext):
            raise ApiError("INVALID_ARGUMENT", "The checksum in field plaintext_crc32c did not match the data in field plaintext.")
        if aad_crc is not None and aad_crc != crc(aad):
            raise ApiError("INVALID_ARGUMENT", "The checksum in field additional_authenticated_data_crc32c did not match the data in field additional_authenticated_data.")
        if key["purpose"] != "ENCRYPT_DECRYPT":
            raise ApiError("FAILED_PRECONDITION", f"{name} is not a symmetric encryption key.")
        if key["primary"] is None:
            raise ApiError("FAILED_PRECONDITION", f"{name} has no primary version.")
        vid = key["primary"]
        version = key["versions"][vid]
        if version["state"] != "ENABLED":
            raise ApiError("FAILED_PRECONDITION", f"{name}/cryptoKeyVersions/{vid} is not enabled, current state is: {version['state']}.")
        nonce = os.urandom(12)
        sealed = AESGCM(version["material"]).encrypt(nonce, plaintext, name.encode() + b"\0" + aad)
        ciphertext = struct.pack(">I", vid) + nonce + sealed
        return {
            "name": f"{name}/cryptoKeyVersions/{vid}",
            "ciphertext": ciphertext,
            "ciphertextCrc32c": str(crc(ciphertext)),
            "verifiedPlaintextCrc32c": pt_crc is not None,
            "verifiedAdditionalAuthenticatedDataCrc32c": aad_crc is not None,
            "protectionLevel": "SOFTWARE",
        }

    def decrypt(self, name, query, body):
        key = self.key(name)
        ciphertext = unb64(body, "ciphertext")
        aad = unb64(body, "additionalAuthenticatedData")
        ct_crc = int64(body, "ciphertextCrc32c")
        aad_crc = int64(body, "additionalAuthenticatedDataCrc32c")
        if ct_crc is not None and ct_crc != crc(ciphertext):
            raise ApiError("INVALID_ARGUMENT", "The checksum in field ciphertext_crc32c did not match the data in field ciphertext.")
        if aad_crc is not None and aad_crc != crc(aad):
            raise ApiError("INVALID_ARGUMENT", "The checksum in field additional_authenticated_data_crc32c did not match the data in field additional_authenticated_data.")
        failed = ApiError("INVALID_ARGUMENT", "Decryption failed: verify that 'name' refers to the correct CryptoKey.")
        if len(ciphertext) < 4 + 12 + 16:
            raise failed
        (vid,) = struct.unpack(">I", ciphertext[:4])
        version = key["versions"].get(vid)
        if version is None:
            raise failed
        if version["state"] != "ENABLED":
            raise ApiError("FAILED_PRECONDITION", f"{name}/cryptoKeyVersions/{vid} is not enabled, current state is: {version['state']}.")
        try:
            plaintext = AESGCM(version["material"]).decrypt(
                ciphertext[4:16], ciphertext[16:], name.encode() + b"\0" + aad
            )
        except Exception:
            raise failed
        return {
            "plaintext": plaintext,
            "plaintextCrc32c": str(crc(plaintext)),
            "usedPrimary": vid == key["primary"],
            "protectionLevel": "SOFTWARE",
        }

    def create_key_ring(self, parent, query, body):
        ring_id = query.get("keyRingId", [""])[0]
        name = f"{parent}/keyRings/{ring_id}"
        if not re.fullmatch(RING, name):
            raise ApiError("INVALID_ARGUMENT", f"Invalid key ring id {ring_id!r}.")
        if name in self.rings:
            raise ApiError("ALREADY_EXISTS", f"KeyRing {name} already exists.")
        self.rings[name] = {"name": name, "createTime": now()}
        return self.rings[name]

    def create_crypto_key(self, parent, query, body):
        key_id = query.get("cryptoKeyId", [""])[0]
        name = f"{parent}/cryptoKeys/{key_id}"
        if parent not in self.rings:
            raise ApiError("NOT_FOUND", f"KeyRing {parent} not found.")
        if not re.fullmatch(KEY, name):
            raise ApiError("INVALID_ARGUMENT", f"Invalid crypto key id {key_id!r}.")
        if name in self.keys:
            raise ApiError("ALREADY_EXISTS", f"CryptoKey {name} already exists.")
        purpose = enum_name(body.get("purpose", 0), PURPOSES, "crypto_key.purpose")
        if purpose == "CRYPTO_KEY_PURPOSE_UNSPECIFIED":
            raise ApiError("INVALID_ARGUMENT", "crypto_key.purpose must be specified.")
        template = body.get("versionTemplate") or {}
        algorithm = enum_name(template.get("algorithm", 1), ALGORITHMS, "crypto_key.version_template.algorithm")
        if purpose == "ENCRYPT_DECRYPT" and algorithm != "GOOGLE_SYMMETRIC_ENCRYPTION":
            raise ApiError("INVALID_ARGUMENT", "ENCRYPT_DECRYPT keys use GOOGLE_SYMMETRIC_ENCRYPTION.")
        self.keys[name] = {"purpose": purpose, "versions": {}, "primary": None, "createTime": now()}
        skip = query.get("skipInitialVersionCreation", ["false"])[0] == "true"
        if not skip:
            vid = self.new_version(name)
            if purpose == "ENCRYPT_DECRYPT":
                self.keys[name]["primary"] = vid
        return self.key_json(name)

    def get_crypto_key_version(self, name, query, body):
        key_name, _, vid = self.split_version(name)
        return self.version_json(key_name, vid)

    def update_crypto_key_version(self, name, query, body):
        key_name, key, vid = self.split_version(name)
        mask = query.get("updateMask", [""])[0]
        if mask != "state":
            raise ApiError("INVALID_ARGUMENT", f"Unsupported update_mask {mask!r}: only 'state' may be updated here.")
        state = enum_name(body.get("state", 0), STATES, "crypto_key_version.state")
        version = key["versions"][vid]
        if state not in ("ENABLED", "DISABLED") or version["state"] not in ("ENABLED", "DISABLED"):
            raise ApiError("FAILED_PRECONDITION", f"{name} is not enabled or disabled, current state is: {version['state']}.")
        version["state"] = state
        return self.version_json(key_name, vid)

    def create_crypto_key_version(self, parent, query, body):
        self.key(parent)
        vid = self.new_version(parent)
        return self.version_json(parent, vid)

    def update_primary_version(self, name, query, body):
        key = self.key(name)
        vid = int(body.get("cryptoKeyVersionId", "0"))
        version = key["versions"].get(vid)
        if version is None:
            raise ApiError("NOT_FOUND", f"CryptoKeyVersion {name}/cryptoKeyVersions/{vid} not found.")
        if version["state"] != "ENABLED":
            raise ApiError("FAILED_PRECONDITION", f"{name}/cryptoKeyVersions/{vid} is not enabled, current state is: {version['state']}.")
        key["primary"] = vid
        return self.key_json(name)

    def destroy_version(self, name, query, body):
        key_name, key, vid = self.split_version(name)
        version = key["versions"][vid]
        if version["state"] not in ("ENABLED", "DISABLED"):
            raise ApiError("FAILED_PRECONDITION", f"{name} is not enabled or disabled, current state is: {version['state']}.")
        version["state"] = "DESTROY_SCHEDULED"
        return self.version_json(key_name, vid)

    def restore_version(self, name, query, body):
        key_name, key, vid = self.split_version(name)
        version = key["versions"][vid]
        if version["state"] != "DESTROY_SCHEDULED":
            raise ApiError("FAILED_PRECONDITION", f"{name} is not scheduled for destruction, current state is: {version['state']}.")
        version["state"] = "DISABLED"
        return self.version_json(key_name, vid)


# (method, path pattern, handler, permission, the group naming the key or None)
ROUTES = [
    ("GET", rf"/v1/(?P<name>{KEY})", "get_crypto_key", "cloudkms.cryptoKeys.get"),
    ("POST", rf"/v1/(?P<name>{KEY}):encrypt", "encrypt", "cloudkms.cryptoKeyVersions.useToEncrypt"),
    ("POST", rf"/v1/(?P<name>{KEY}):decrypt", "decrypt", "cloudkms.cryptoKeyVersions.useToDecrypt"),
    ("POST", rf"/v1/(?P<name>{KEY}):updatePrimaryVersion", "update_primary_version", "cloudkms.cryptoKeys.update"),
    ("POST", rf"/v1/(?P<name>{LOCATION})/keyRings", "create_key_ring", "cloudkms.keyRings.create"),
    ("POST", rf"/v1/(?P<name>{RING})/cryptoKeys", "create_crypto_key", "cloudkms.cryptoKeys.create"),
    ("POST", rf"/v1/(?P<name>{KEY})/cryptoKeyVersions", "create_crypto_key_version", "cloudkms.cryptoKeyVersions.create"),
    ("GET", rf"/v1/(?P<name>{VERSION})", "get_crypto_key_version", "cloudkms.cryptoKeyVersions.get"),
    ("PATCH", rf"/v1/(?P<name>{VERSION})", "update_crypto_key_version", "cloudkms.cryptoKeyVersions.update"),
    ("POST", rf"/v1/(?P<name>{VERSION}):destroy", "destroy_version", "cloudkms.cryptoKeyVersions.destroy"),
    ("POST", rf"/v1/(?P<name>{VERSION}):restore", "restore_version", "cloudkms.cryptoKeyVersions.restore"),
]


def key_of(name):
    """The CryptoKey a resource name is or is inside, else the name."""
    m = re.match(KEY, name)
    return m.group(0) if m else name


class Handler(BaseHTTPRequestHandler):
    kms = None
    token = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("gcp-kms-fake: " + (fmt % args) + "\n")

    def send_json(self, code, doc):
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, status, message):
        code = HTTP_OF.get(status, 500)
        self.send_json(code, {"error": {"code": code, "message": message, "status": status}})

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            doc = json.loads(raw)
        except ValueError:
            raise ApiError("INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not isinstance(doc, dict):
            raise ApiError("INVALID_ARGUMENT", "Invalid JSON payload received.")
        return doc

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def dispatch(self, method):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        try:
            body = self.body()
            if url.path.startswith("/_fake/"):
                return self.control(method, url.path, query, body)
            return self.api(method, url.path, query, body)
        except ApiError as e:
            self.send_error_json(e.status, e.message)

    def api(self, method, path, query, body):
        kms = self.kms
        for route_method, pattern, handler, permission in ROUTES:
            m = re.fullmatch(pattern, path)
            if route_method != method or not m:
                continue
            name = m.group("name")
            key = key_of(name)
            with kms.lock:
                kms.calls[key] = kms.calls.get(key, 0) + 1
                if self.token is not None and self.headers.get("Authorization") != f"Bearer {self.token}":
                    raise ApiError("UNAUTHENTICATED", "Request had invalid authentication credentials.")
                if (key, permission) in kms.denied or ("*", permission) in kms.denied:
                    raise ApiError("PERMISSION_DENIED", f"Permission '{permission}' denied on resource '{name}' (or it may not exist).")
                failing = kms.failing.get(key)
                if failing and failing[1] > 0:
                    kms.failing[key] = (failing[0], failing[1] - 1)
                    raise ApiError(failing[0], f"The service answered {failing[0]} (injected).")
                out = getattr(kms, handler)(name, query, body)
                out = self.damage(key, dict(out))
            for field in ("ciphertext", "plaintext"):
                if isinstance(out.get(field), bytes):
                    out[field] = b64(out[field])
            return self.send_json(200, out)
        raise ApiError("NOT_FOUND", f"The requested URL {path} was not found on this server.")

    def damage(self, key, out):
        for field in list(out):
            n = self.kms.corrupt.get((key, field), 0)
            if n <= 0:
                continue
            self.kms.corrupt[(key, field)] = n - 1
            value = out[field]
            if isinstance(value, bytes):
                out[field] = bytes([value[0] ^ 1]) + value[1:] if value else b"\x01"
            elif isinstance(value, bool):
                out[field] = False
            else:
                out[field] = str((int(value) + 1) % (1 << 32))
        return out

    def control(self, method, path, query, body):
        kms = self.kms
        with kms.lock:
            if method == "GET" and path == "/_fake/calls":
                key = query.get("key", [None])[0]
                total = kms.calls.get(key, 0) if key else sum(kms.calls.values())
                return self.send_json(200, {"calls": total})
            if method == "POST" and path == "/_fake/deny":
                entry = (body.get("key", "*"), body["permission"])
                if body.get("denied", True):
                    kms.denied.add(entry)
                else:
                    kms.denied.discard(entry)
                return self.send_json(200, {})
            if method == "POST" and path == "/_fake/corrupt":
                kms.corrupt[(body["key"], body["field"])] = int(body.get("count", 1))
                return self.send_json(200, {})
            if method == "POST" and path == "/_fake/fail":
                kms.failing[body["key"]] = (body["status"], int(body.get("count", 1)))
                return self.send_json(200, {})
            if method == "POST" and path == "/_fake/version-state":
                _, key, vid = kms.split_version(body["version"])
                key["versions"][vid]["state"] = enum_name(body["state"], STATES, "state")
                return self.send_json(200, {})
        raise ApiError("NOT_FOUND", f"no control {method} {path}")


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    port = int(args[0])
    token = os.environ.get("CMEK_GCP_KMS_FAKE_TOKEN") or None
    Handler.kms = Kms()
    Handler.token = token
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"gcp-kms-fake listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
