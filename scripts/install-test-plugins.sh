#!/usr/bin/env bash
# Fetch the test VST3 plugins (zam-plugins, dragonfly-reverb-vst3) from Debian's packages and unpack them
# into a project-local folder. Nothing is installed system-wide. Idempotent: a second run does nothing.
#
# Debian 13 ships these packages; Debian 12 does not, so on Debian 12 we point a separate, temporary apt
# state at the same mirror as the system (suite "trixie") and only *download* the .deb files, then unpack
# them with `dpkg-deb -x`. They need libc6 >= 2.35, which Debian 12 has.
#
# Usage: scripts/install-test-plugins.sh [DEST]   (default: .plugins in the repository root)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/.plugins}"
packages=(zam-plugins dragonfly-reverb-vst3)
stamp="$dest/.installed"
want="${packages[*]}"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  touch "$stamp"
  echo "test plugins already in $dest/vst3"
  exit 0
fi

# The mirror the system already uses (first deb URI of the main archive), so no host is hard-coded here.
mirror=""
if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
  mirror="$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources | grep -v -- '-security' | head -n1 || true)"
fi
if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
  mirror="$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list || true)"
fi
if [[ -z "$mirror" ]]; then
  echo "error: could not find a Debian mirror in /etc/apt/sources.list(.d); cannot fetch ${want}" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
echo "deb $mirror trixie main" >"$work/sources.list"
apt_opts=(
  -o "Dir::Etc::sourcelist=$work/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::lists=$work/lists"
  -o "Dir::Cache=$work/cache"
  -o "APT::Get::List-Cleanup=0"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
)
echo "fetching ${want} (Debian 13 packages) from $mirror"
apt-get "${apt_opts[@]}" -qq update
(cd "$work/debs" && apt-get "${apt_opts[@]}" -qq download "${packages[@]}")

rm -rf "$dest/root" "$dest/vst3"
mkdir -p "$dest/root" "$dest/vst3"
for deb in "$work"/debs/*.deb; do
  dpkg-deb -x "$deb" "$dest/root"
done
# Flatten: every *.vst3 bundle from the packages goes into one folder, linked (relative) so moves are safe.
while IFS= read -r bundle; do
  ln -sfn "$(realpath --relative-to="$dest/vst3" "$bundle")" "$dest/vst3/$(basename "$bundle")"
done < <(find "$dest/root" -maxdepth 4 -type d -name '*.vst3' -path '*/vst3/*')
echo "$want" >"$stamp"
echo "installed $(ls "$dest/vst3" | wc -l) VST3 bundles into $dest/vst3"
