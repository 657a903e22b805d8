#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what the tests need when it is
# missing, then runs every test (unit and integration) in the debug profile.
#   scripts/test.sh [cargo test arguments…]
set -euo pipefail
cd "$(dirname "$0")/.."

# tool → Debian package
declare -A need=(
  [gpg]=gnupg [xz]=xz-utils [zstd]=zstd [bzip2]=bzip2 [nginx]=nginx-light
  [systemd-nspawn]=systemd-container [skopeo]=skopeo [umoci]=umoci
  [setfattr]=attr [getfacl]=acl [lsattr]=e2fsprogs [curl]=curl
  [docker-registry]=docker-registry [htpasswd]=apache2-utils [debootstrap]=debootstrap
  [openssl]=openssl
  [busybox]=busybox-static
  [mkfs.btrfs]=btrfs-progs [mkfs.xfs]=xfsprogs [groff]=groff-base [script]=util-linux
)
missing=()
for tool in "${!need[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("${need[$tool]}")
done
# PyYAML reads YAML as cloud-init does (1.1): a test checks composed cloud-configs with it.
/usr/bin/python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
# pynacl and cryptography write cosign's encrypted key format and check ECDSA signatures
# independently of the Rust code (tests/it/oci_signing.rs).
/usr/bin/python3 -c 'import nacl.secret' 2>/dev/null || missing+=(python3-nacl)
/usr/bin/python3 -c 'import cryptography.hazmat.primitives.asymmetric.ec' 2>/dev/null || missing+=(python3-cryptography)
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing test dependencies: ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

exec cargo test --all-targets "$@"
