"""What every on-call Fabric task does: load the config, run the checks, print, exit."""

from invoke.exceptions import Exit

from . import config, report, runner


def hosts_of(c):
    """Hosts given with `fab -H`: all of them (OncallExecutor), or this call's one (plain Fabric)."""
    cli_hosts = getattr(c, "cli_hosts", None)
    if cli_hosts:
        return tuple(cli_hosts)
    original = getattr(c, "original_host", None)  # a fabric Connection: one host per call
    return (original,) if original else ()


def run_task(c, task, json_output=False, config_file=None):
    """Run one task and leave with its Nagios exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)."""
    try:
        cfg = config.load(c.config.get("oncall"), config_file=config_file)
        hosts = hosts_of(c)
        if hosts:
            cfg = cfg.with_hosts(config.parse_hosts(list(hosts)))
    except config.ConfigError as exc:
        outcome = runner.Run(task, [], error=str(exc))
    else:
        outcome = runner.run(task, cfg, c.config)
    try:
        print(report.render(outcome, json_output), flush=True)
    except BrokenPipeError:  # `fab health | head`: the reader left; the exit code still counts
        pass
    code = report.exit_code(outcome)
    if code:
        raise Exit(code=code)
