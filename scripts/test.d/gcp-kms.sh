# The Google Cloud KMS protocol fake (scripts/gcp_kms_fake.py) for the
# gcp-kms tests: tests/provider_gcp_kms.rs, tests/cli_gcp_kms.rs. It wants
# this bearer token, which the tests and the CLI send.
gcp_kms_port=$(free_port)
export CMEK_GCP_KMS_ACCESS_TOKEN="cmek-test-token"
start_server gcp-kms-fake "$gcp_kms_port" \
  env CMEK_GCP_KMS_FAKE_TOKEN="$CMEK_GCP_KMS_ACCESS_TOKEN" "$python" scripts/gcp_kms_fake.py "$gcp_kms_port"
export CMEK_GCP_KMS_ENDPOINT="http://127.0.0.1:$gcp_kms_port"
