"""A Fabric executor that hands every `-H` host to one on-call task call.

Plain Fabric runs a task once per `-H` host, each call on its own; an on-call check must
instead see all hosts at once, check them in parallel and give one table and one exit
code. fabric.yml selects this class (`tasks.executor_class`, an Invoke setting). Tasks
marked `all_hosts=True` get a HostsContext whose `cli_hosts` lists the `-H` hosts; any
other task runs as Fabric would run it.
"""

from fabric.executor import Executor
from invoke import Call, Context


class HostsContext(Context):
    """An Invoke Context that also carries the hosts given with `-H` (empty: none given)."""

    cli_hosts = ()


class HostsCall(Call):
    def __init__(self, *args, cli_hosts=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.cli_hosts = tuple(cli_hosts)

    def make_context(self, config):
        context = HostsContext(config=config)
        context.cli_hosts = self.cli_hosts
        return context

    def clone_data(self):
        data = super().clone_data()
        data["cli_hosts"] = self.cli_hosts
        return data


class OncallExecutor(Executor):
    def expand_calls(self, calls, apply_hosts=True):
        calls = [c if isinstance(c, Call) else Call(task=c) for c in calls]
        if not calls or not all(getattr(c.task, "all_hosts", False) for c in calls) or self.core.remainder:
            return super().expand_calls(calls, apply_hosts=apply_hosts)
        host_str = self.core[0].args.hosts.value if apply_hosts else None
        hosts = [h.strip() for h in (host_str or "").split(",") if h.strip()]
        expanded = []
        for call in calls:
            expanded.extend(super().expand_calls(call.pre, apply_hosts=False))
            expanded.append(HostsCall(
                task=call.task, called_as=call.called_as, args=call.args, kwargs=call.kwargs,
                cli_hosts=hosts,
            ))
            expanded.extend(super().expand_calls(call.post, apply_hosts=False))
        return expanded
