#!/usr/bin/env bash
# The package's postinst may have created a default cluster; the entrypoint makes its own.
set -o errexit -o nounset
rootfs=$1
rm -rf "$rootfs"/var/lib/postgresql/15 "$rootfs"/etc/postgresql/15
