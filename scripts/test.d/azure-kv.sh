# The Azure Key Vault protocol fake (scripts/azure_kv_fake.py) for the
# azure-kv tests: HTTPS on a free loopback port with a test CA it writes
# into target/azure-kv-fake/, accepting one random bearer token.
azure_port=$(free_port)
export CMEK_AZURE_KV_TOKEN="cmek-test-$("$python" -c 'import secrets; print(secrets.token_hex(16))')"
rm -rf target/azure-kv-fake
start_server azure-kv-fake "$azure_port" "$python" scripts/azure_kv_fake.py "$azure_port" target/azure-kv-fake
export CMEK_AZURE_KV_VAULT="https://127.0.0.1:$azure_port"
export CMEK_AZURE_KV_CA_FILE="$PWD/target/azure-kv-fake/ca.pem"
