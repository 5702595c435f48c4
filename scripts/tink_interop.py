#!/usr/bin/env python3
"""Encrypts and decrypts with Python Tink's AES-GCM-HKDF Streaming AEAD.

The other side of cmek's stream interoperability tests. Keys are raw 32-byte
values turned into a Tink keyset (JSON keyset format, one
AesGcmHkdfStreamingKey: HKDF-SHA256, 32-byte derived key, the given
ciphertext segment size = cmek chunk size, RAW output prefix).

Usage:
  tink_interop.py batch MANIFEST.json
      MANIFEST is a JSON list of jobs:
        {"op": "encrypt" | "decrypt", "key": hex, "aad": hex,
         "chunk_size": int, "input": path, "output": path}
      Runs them all in this one process and prints a JSON list of results,
      one per job: {"ok": true} or {"ok": false, "error": "..."}.
  tink_interop.py vectors OUT
      Writes known-answer vectors (Tink ciphertexts of fixed keys and
      plaintexts) in the text format read by cmek's tests.
"""

import base64
import io
import json
import sys

import tink
import tink.secret_key_access
from tink import streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2

streaming_aead.register()

TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"
CHUNK = 1 << 20


def primitive(raw_key: bytes, chunk_size: int) -> streaming_aead.StreamingAead:
    """A StreamingAead for a raw key, built through the JSON keyset format."""
    if len(raw_key) != 32:
        raise ValueError("key must be 32 bytes")
    params = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=chunk_size,
        derived_key_size=32,
        hkdf_hash_type=common_pb2.SHA256,
    )
    key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(
        version=0, params=params, key_value=raw_key
    )
    keyset = {
        "primaryKeyId": 1,
        "key": [
            {
                "keyData": {
                    "typeUrl": TYPE_URL,
                    "value": base64.b64encode(key.SerializeToString()).decode(),
                    "keyMaterialType": "SYMMETRIC",
                },
                "status": "ENABLED",
                "keyId": 1,
                "outputPrefixType": "RAW",
            }
        ],
    }
    handle = tink.json_proto_keyset_format.parse(
        json.dumps(keyset), tink.secret_key_access.TOKEN
    )
    return handle.primitive(streaming_aead.StreamingAead)


def encrypt(p, aad: bytes, plaintext: bytes) -> bytes:
    sink = io.BytesIO()
    # Tink closes the destination on close; keep the bytes before that.
    sink.close = lambda: None
    with p.new_encrypting_stream(sink, aad) as enc:
        for i in range(0, len(plaintext), CHUNK):
            enc.write(plaintext[i : i + CHUNK])
    return sink.getvalue()


def decrypt(p, aad: bytes, ciphertext: bytes) -> bytes:
    out = bytearray()
    with p.new_decrypting_stream(io.BytesIO(ciphertext), aad) as dec:
        while True:
            chunk = dec.read(CHUNK)
            if not chunk:
                break
            out += chunk
    return bytes(out)


def run_batch(manifest_path: str) -> None:
    with open(manifest_path) as f:
        jobs = json.load(f)
    results = []
    for job in jobs:
        try:
            p = primitive(bytes.fromhex(job["key"]), int(job["chunk_size"]))
            aad = bytes.fromhex(job["aad"])
            with open(job["input"], "rb") as f:
                data = f.read()
            if job["op"] == "encrypt":
                out = encrypt(p, aad, data)
            elif job["op"] == "decrypt":
                out = decrypt(p, aad, data)
            else:
                raise ValueError("unknown op " + job["op"])
            with open(job["output"], "wb") as f:
                f.write(out)
            results.append({"ok": True})
        except Exception as e:  # report every failure to the caller
            results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout)


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


def write_vectors(out_path: str) -> None:
    cases = [
        # (segment size, plaintext length, aad, key seed)
        (4096, 0, b"", 1),
        (4096, 1, b"aad", 2),
        (4096, 4040, b"", 3),  # exactly the first segment
        (4096, 4041, b"segment 7", 4),  # one byte into the second
        (4096, 8120, b"", 5),  # exactly two segments
        (4096, 10000, b"zone/segment-42", 6),  # three segments, short last
        (65536, 70000, b"64 KiB segments", 7),
        (1024, 3000, b"1 KiB segments", 8),  # four segments, short last
    ]
    lines = [
        "# Known-answer vectors for cmek::stream, produced by Python tink 1.16.1",
        "# (AES-GCM-HKDF Streaming, HKDF-SHA256, 32-byte derived key) with",
        "# scripts/tink_interop.py vectors. Plaintext byte i = (7 * i + seed) % 251.",
        "",
    ]
    for seg, n, aad, seed in cases:
        key = bytes((seed * 31 + i) % 256 for i in range(32))
        pt = pattern(n, seed)
        ct = encrypt(primitive(key, seg), aad, pt)
        assert decrypt(primitive(key, seg), aad, ct) == pt
        lines += [
            f"chunk_size = {seg}",
            f"key = {key.hex()}",
            f"aad = {aad.hex()}",
            f"plaintext_len = {n}",
            f"plaintext_seed = {seed}",
            f"ciphertext = {ct.hex()}",
            "",
        ]
    with open(out_path, "w") as f:
        f.write("\n".join(lines))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "batch":
        run_batch(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "vectors":
        write_vectors(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
