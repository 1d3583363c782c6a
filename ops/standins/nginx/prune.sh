#!/usr/bin/env bash
# Debian's default site listens on port 80; the official image has none there, and with
# the host network it would take the host's port 80.
set -o errexit -o nounset
rootfs=$1
rm -f "$rootfs"/etc/nginx/sites-enabled/* "$rootfs"/var/www/html/index.nginx-debian.html
