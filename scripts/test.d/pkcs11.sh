# SoftHSM2, the PKCS#11 provider's test token (sourced by scripts/test).
# No server: a token in a fresh directory under target/, and the variables
# the tests read. Installs the Debian package softhsm2 when it is missing.
pkcs11_module() {
  local m
  for m in /usr/lib/softhsm/libsofthsm2.so \
           /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/local/lib/softhsm/libsofthsm2.so; do
    [ -e "$m" ] && { echo "$m"; return; }
  done
}
if ! command -v softhsm2-util >/dev/null || [ -z "$(pkcs11_module)" ]; then
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q --no-install-recommends softhsm2 >/dev/null
fi
CMEK_PKCS11_MODULE=$(pkcs11_module)
[ -n "$CMEK_PKCS11_MODULE" ] || { echo "pkcs11: no libsofthsm2.so after installing softhsm2" >&2; exit 1; }
mkdir -p "$PWD/target"
pkcs11_dir=$(mktemp -d "$PWD/target/softhsm.XXXXXX")
mkdir -p "$pkcs11_dir/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$pkcs11_dir" > "$pkcs11_dir/softhsm2.conf"
export SOFTHSM2_CONF="$pkcs11_dir/softhsm2.conf"
# Test secrets for a throwaway token; the PIN reaches the tests in a file.
softhsm2-util --init-token --free --label cmek-test --so-pin 87654321 --pin 12345678 >/dev/null
( umask 077; printf '12345678\n' > "$pkcs11_dir/user.pin" )
# SoftHSM2 2.6 may fail an object creation that overlaps other calls of
# the process: the provider runs one call at a time on it
# (Pkcs11Options::serialize_calls).
export CMEK_PKCS11_MODULE CMEK_PKCS11_TOKEN=cmek-test CMEK_PKCS11_PIN_FILE="$pkcs11_dir/user.pin" \
  CMEK_PKCS11_SERIALIZE=1
