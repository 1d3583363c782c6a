#!/usr/bin/env bash
# One-shot `migrate` service: apply migrations, report deployment warnings, exit.
# The backends start only after this exits 0 (service_completed_successfully).
set -o errexit -o pipefail -o nounset
cd /app
python stack/manage.py migrate --noinput
python stack/manage.py check --deploy --fail-level ERROR
echo "habitto-chat: migrations applied"
