"""A KMS-compatible test server on loopback: moto's server, with one fix.

moto stores the key id inside its ciphertext blobs in a fixed 36-byte field.
Its multi-region key ids are 40 characters ("mrk-" and a dashed UUID), so
they are cut short there, and a ciphertext made under a multi-region key can
then be decrypted nowhere, not even by its own key's replica. This launcher
widens the field to 40 bytes and strips the padding when reading it back,
then starts moto's server unchanged.

Usage: python kms_test_server.py PORT
"""

import sys

import moto.kms.utils as kms_utils
from moto.server import main

WIDE_KEY_ID_LEN = 40


def widen_key_id_field() -> None:
    kms_utils.KEY_ID_LEN = WIDE_KEY_ID_LEN
    kms_utils.HEADER_LEN = WIDE_KEY_ID_LEN + kms_utils.IV_LEN + kms_utils.TAG_LEN
    kms_utils.CIPHERTEXT_HEADER_FORMAT = (
        f">{WIDE_KEY_ID_LEN}s{kms_utils.IV_LEN}s{kms_utils.TAG_LEN}s"
    )
    read = kms_utils._deserialize_ciphertext_blob

    def read_unpadded(ciphertext_blob: bytes) -> "kms_utils.Ciphertext":
        ciphertext = read(ciphertext_blob)
        return ciphertext._replace(key_id=ciphertext.key_id.rstrip("\0"))

    kms_utils._deserialize_ciphertext_blob = read_unpadded


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: kms_test_server.py PORT")
    widen_key_id_field()
    main(["-H", "127.0.0.1", "-p", sys.argv[1]])
