# Sourced by scripts/test: starts PyKMIP's KMIP server on a loopback port,
# over mutual TLS with certificates made here in a temporary directory (a
# CA, the server's certificate, a client certificate for the tests and a
# second client certificate, of another identity, for access checks), and
# exports what tests/provider_kmip.rs and tests/cli_kmip.rs read:
#   CMEK_KMIP_ENDPOINT   host:port of the server
#   CMEK_KMIP_CA         the CA certificate that signed the server's (PEM)
#   CMEK_KMIP_CERT       the client certificate (PEM)
#   CMEK_KMIP_KEY        the client's private key (PEM, PKCS#8)
#   CMEK_KMIP_OTHER_CERT, CMEK_KMIP_OTHER_KEY  a client of another identity
#   CMEK_KMIP_LOG        the server's log (it names every operation it serves)
# PyKMIP serves TLS 1.2 with ECDHE-ECDSA AES-GCM suites, so the keys are
# ECDSA P-256.
kmip_dir=$(mktemp -d "${TMPDIR:-/tmp}/cmek-kmip.XXXXXX")
kmip_port=$(free_port)
"$python" - "$kmip_dir" <<'PY'
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

out = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc)

def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

def write(stem, key, cert):
    with open(f"{out}/{stem}.key", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(f"{out}/{stem}.pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))

ca_key = ec.generate_private_key(ec.SECP256R1())
ca = (x509.CertificateBuilder().subject_name(name("cmek test KMIP CA"))
      .issuer_name(name("cmek test KMIP CA")).public_key(ca_key.public_key())
      .serial_number(x509.random_serial_number())
      .not_valid_before(now - datetime.timedelta(hours=1))
      .not_valid_after(now + datetime.timedelta(days=2))
      .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
      .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
      .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
      .sign(ca_key, hashes.SHA256()))
write("ca", ca_key, ca)

def leaf(stem, cn, usage, san=None):
    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    write(stem, key, b.sign(ca_key, hashes.SHA256()))

import ipaddress
leaf("server", "localhost", ExtendedKeyUsageOID.SERVER_AUTH,
     [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
leaf("client", "cmek-test", ExtendedKeyUsageOID.CLIENT_AUTH)
leaf("other", "cmek-other", ExtendedKeyUsageOID.CLIENT_AUTH)
PY
mkdir -p "$kmip_dir/policies"
cat > "$kmip_dir/server.conf" <<CONF
[server]
hostname=127.0.0.1
port=$kmip_port
certificate_path=$kmip_dir/server.pem
key_path=$kmip_dir/server.key
ca_path=$kmip_dir/ca.pem
auth_suite=TLS1.2
policy_path=$kmip_dir/policies
enable_tls_client_auth=True
logging_level=DEBUG
database_path=$kmip_dir/pykmip.db
CONF
start_server kmip-test-server "$kmip_port" \
  "$python" -c 'import sys; from kmip.services.server import server; sys.exit(server.main())' \
  -f "$kmip_dir/server.conf" -l "$kmip_dir/server.log"
export CMEK_KMIP_ENDPOINT="127.0.0.1:$kmip_port"
export CMEK_KMIP_CA="$kmip_dir/ca.pem"
export CMEK_KMIP_CERT="$kmip_dir/client.pem" CMEK_KMIP_KEY="$kmip_dir/client.key"
export CMEK_KMIP_OTHER_CERT="$kmip_dir/other.pem" CMEK_KMIP_OTHER_KEY="$kmip_dir/other.key"
export CMEK_KMIP_LOG="$kmip_dir/server.log"
