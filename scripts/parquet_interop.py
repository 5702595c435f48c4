"""PyArrow's side of the Parquet interop tests (tests/parquet_pyarrow.rs).

Reads a JSON list of jobs on stdin and prints one JSON result per job on
stdout. Each job writes or reads an encrypted Parquet file with
pyarrow.parquet.encryption.CryptoFactory and a KMS client for AWS KMS
(boto3) that speaks cmek's wrapped-key string:

    cmek1:<n>:<base64 of KMS CiphertextBlob>

where the KMS plaintext is the n-byte Parquet key followed by 32 - n zero
bytes, encrypted with the encryption context
{"cmek:purpose": "parquet-key", "cmek:key-length": "<n>"} (docs/PARQUET.md).

Job fields:
  op                 "write" or "read"
  path               the Parquet file
  endpoint, region   the KMS endpoint and region
  footer_key         master key id of the footer (write)
  column_keys        {master key id: [column, ...]} (write)
  plaintext_footer   bool (write)
  double_wrapping    bool (write)
  data_key_bits      128 or 256 (write)
  external           bool: key material beside the file (write and read)
  use_key            if set, the client uses this key whatever master key
                     id it is given: a misconfigured client, i.e. a wrong
                     master key
Result: {"ok": true, "columns": {name: [values]}} for a read,
{"ok": true} for a write, {"ok": false, "error": "..."} on failure.
"""

import base64
import datetime
import json
import sys

import boto3
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe

PREFIX = "cmek1"
PADDED_LEN = 32


def context(n):
    return {"cmek:purpose": "parquet-key", "cmek:key-length": str(n)}


class CmekAwsKmsClient(pe.KmsClient):
    """A Parquet KMS client for AWS KMS in cmek's wrapped-key format."""

    def __init__(self, endpoint, region, use_key):
        super().__init__()
        self.kms = boto3.client(
            "kms",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.use_key = use_key

    def key(self, master_key_identifier):
        return self.use_key or master_key_identifier

    def wrap_key(self, key_bytes, master_key_identifier):
        n = len(key_bytes)
        if n not in (16, 24, 32):
            raise ValueError(f"a Parquet key is 16, 24 or 32 bytes, not {n}")
        blob = self.kms.encrypt(
            KeyId=self.key(master_key_identifier),
            Plaintext=bytes(key_bytes) + bytes(PADDED_LEN - n),
            EncryptionContext=context(n),
        )["CiphertextBlob"]
        return f"{PREFIX}:{n}:" + base64.b64encode(blob).decode("ascii")

    def unwrap_key(self, wrapped_key, master_key_identifier):
        if isinstance(wrapped_key, bytes):
            wrapped_key = wrapped_key.decode("ascii")
        parts = wrapped_key.split(":", 2)
        if len(parts) != 3 or parts[0] != PREFIX or parts[1] not in ("16", "24", "32"):
            raise ValueError("not a cmek1 wrapped key")
        n = int(parts[1])
        plain = self.kms.decrypt(
            KeyId=self.key(master_key_identifier),
            CiphertextBlob=base64.b64decode(parts[2], validate=True),
            EncryptionContext=context(n),
        )["Plaintext"]
        if len(plain) != PADDED_LEN or any(plain[n:]):
            raise ValueError("the unwrapped key is not padded as cmek1 says")
        return plain[:n]


def factory(job):
    def make(_config):
        return CmekAwsKmsClient(job["endpoint"], job["region"], job.get("use_key"))

    return pe.CryptoFactory(make)


def table():
    return pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "name": pa.array(["a", "b", "c"]),
            "ssn": pa.array(["111", "222", "333"]),
        }
    )


def write(job):
    config = pe.EncryptionConfiguration(
        footer_key=job["footer_key"],
        column_keys=job.get("column_keys", {}),
        plaintext_footer=job.get("plaintext_footer", False),
        double_wrapping=job.get("double_wrapping", True),
        data_key_length_bits=job.get("data_key_bits", 128),
        internal_key_material=not job.get("external", False),
        cache_lifetime=datetime.timedelta(seconds=1),
    )
    kms_config = pe.KmsConnectionConfig()
    fs = pyarrow.fs.LocalFileSystem()
    props = factory(job).file_encryption_properties(
        kms_config, config, job["path"], fs
    )
    # Uncompressed: the Rust side's parquet is built without codecs.
    with pq.ParquetWriter(
        job["path"],
        table().schema,
        encryption_properties=props,
        filesystem=fs,
        compression="none",
    ) as writer:
        writer.write_table(table())
    return {"ok": True}


def read(job):
    config = pe.DecryptionConfiguration(cache_lifetime=datetime.timedelta(seconds=1))
    kms_config = pe.KmsConnectionConfig()
    fs = pyarrow.fs.LocalFileSystem()
    props = factory(job).file_decryption_properties(kms_config, config, job["path"], fs)
    t = pq.ParquetFile(job["path"], decryption_properties=props, filesystem=fs).read()
    return {"ok": True, "columns": t.to_pydict()}


def main():
    results = []
    for job in json.load(sys.stdin):
        try:
            results.append(write(job) if job["op"] == "write" else read(job))
        except Exception as e:  # the test checks the message
            results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
