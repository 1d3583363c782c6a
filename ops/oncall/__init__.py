"""On-call checks for the chat stack, run as Fabric tasks (fabfile.py, docs/oncall.md).

Modules: config (settings from fabric.yml, a file and ONCALL_* variables), results
(statuses, results, perfdata), checks (one small function per check), targets (the
local machine or an SSH host with tunnels), docker_checks (Compose services through the
Docker SDK), runner (runs a task's checks on every host within its timeouts), report
(table, JSON, Nagios exit code) and executor (lets one task see every `-H` host).
"""
