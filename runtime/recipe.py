"""The recipe of a run: every host-side step, in order, each with its phase. One list, three uses.

    container.start   journals and runs it             (steps.Journal: each undo written down first)
    run --verbose     traces it as it runs             (each command, with the time its own action took)
    run --explain     prints it as a bash script       (explain.py: the setup, and the teardown)

    phase     when                                           the steps
    create    before the fork: nothing of the container      ports, lease, id range, cgroup, layer,
              runs yet                                       /etc files, hosts entries
    spawn     while the intermediate unshares                the bridge (kept, as Docker keeps docker0)
              (process.spawn's MEANWHILE)
    attach    once PID 1 exists, before it is told "go"      cgroup join (in a thread, beside the rest),
              (each step gets PID 1's pid: Step.at)          netns name, veth, port guard, published ports
    teardown  the journal, newest first (Journal.undo)       each step's down()

To add a host-side step, write its Step class (actions and undo_actions, its
work as (command, function) pairs; the first line of its docstring is its
title in --explain) and add one line to recipe() below. Its journal record names its module, so `pyrun prune`
can read it back; the tests take the kinds they check from this list.

What PID 1 does meanwhile, in the container, is a list of its own (pid1.py, made by inside() below
from the same values): PID 1 runs it, --verbose traces it, --explain prints it as init.sh.

An OCI runtime's `create` is the three phases and the wait for "ready";
its `start` is "go" (process.ContainerProcess.go).
"""
import contextlib
import os
import sys
from dataclasses import dataclass, replace

from runtime import pid1, state, userns
from runtime.cgroups import Cgroup, CgroupJoin, DeviceRules
from runtime.network import dns
from runtime.rootfs import Layer, layer_dir
from runtime.spec import BUILT_IN, ContainerSpec
from runtime.steps import Journal, Step

CREATE, SPAWN, ATTACH = "create", "spawn", "attach"


@dataclass(frozen=True)
class Planned:
    phase: str
    step: Step
    beside: bool = False   # runs in a thread while the phase's next steps run (Journal.run_beside)


def recipe(spec: ContainerSpec, net, root: str, cid: str, name: str, address: str | None,
           id_base: int | None = None) -> list[Planned]:
    """The host-side steps that run SPEC as container CID called NAME, on the bridge network NET (None for
    --network none or host) at ADDRESS, with --userns=auto on host ids from ID_BASE. Nothing is done here:
    the steps are only made."""
    cdir = state.container_dir(root, cid)
    layer = layer_dir(cdir)
    res = spec.resources
    plan = []
    if net:
        from runtime.network import bridge, firewall, hostports, ipam, portguard, veth

        hostports.check_published(spec, net)
        end, mac = veth.host_end(cid), veth.mac_address(address)
        if spec.ports:  # first: a port taken is refused before anything is changed
            plan.append(Planned(CREATE, hostports.Ports(list(spec.ports))))
        plan.append(Planned(CREATE, ipam.Lease(net.bridge, address, cid)))  # see create()
    if spec.userns == "auto":
        plan.append(Planned(CREATE, userns.IdRange(id_base, cid)))  # see create()
    oci = spec.runtime != BUILT_IN  # an OCI runtime makes the container, its cgroup too (oci/client.py)
    # pyrun's own OCI runtime needs neither guard the engine keeps against runc: Bundle's user-file check, DeviceRules
    pyrun_oci = spec.runtime == "pyrun-oci"
    if not oci:
        plan.append(Planned(CREATE, Cgroup(cid, res.memory, res.cpus, res.pids_limit)))
    plan.append(Planned(CREATE, Layer(layer, id_base)))
    if oci:
        from runtime.oci import bundle, client

        reachable = bundle.Reachable(cid, id_base) if spec.userns == "auto" else None
        if reachable:
            plan.append(Planned(CREATE, reachable))
        overlay = bundle.Overlay(spec.rootfs, layer, reachable and reachable.path, id_base)
        plan.append(Planned(CREATE, overlay))
    plan.append(Planned(CREATE, dns.EtcFiles(layer, hostname(spec, cid), address, spec.network)))
    if net and net.user_defined:
        plan.append(Planned(CREATE, dns.HostsEntry(root, net.bridge, cid, name, address)))
    if oci:
        from runtime.oci import engine

        if spec.init:
            plan.append(Planned(CREATE, bundle.Tini(bundle.tini(), bundle.tini_copy(layer))))
        bundle_dir = os.path.join(cdir, "bundle")
        plan.append(Planned(CREATE, bundle.Bundle(bundle_dir, engine.config(spec, plan, cid, overlay.merged),
                                                   user_files=not pyrun_oci)))
    if net:
        plan.append(Planned(SPAWN, bridge.Bridge(net.name, net.bridge, net.subnet, **net.policy)))
    if oci:
        plan.append(Planned(SPAWN, client.RuntimeContainer(client.command(spec.runtime),
                                                           client.runtime_root(root, spec.runtime), cid, bundle_dir,
                                                           spec.interactive, spec.tty)))
        plan.append(Planned(ATTACH, bundle.Unexposed(overlay.merged)))
        if not pyrun_oci:  # pyrun-oci writes exactly config.json's device rules; runc 1.1 adds /dev/net/tun
            plan.append(Planned(ATTACH, DeviceRules(cid)))
    else:
        # Moving a process into a v1 cgroup waits out an RCU grace period in the kernel (~14 ms, on no CPU):
        # the network is wired meanwhile.
        plan.append(Planned(ATTACH, CgroupJoin(cid), beside=True))
    if net:
        plan += [Planned(ATTACH, veth.NetnsName(veth.netns_name(name, root), cid=cid)),
                 Planned(ATTACH, veth.Veth(end, net.bridge, address, net.prefixlen, net.gateway, mac,
                                           isolated=not net.icc)),
                 # After the veth, so that its undo (an nftables change, waiting out an RCU grace period) runs
                 # beside the veth's deletion. Nothing is sent from the port before it: the container runs
                 # nothing of its own until the attach phase is done, and eth0 has no IPv6 to speak up with.
                 Planned(ATTACH, portguard.PortGuard(cid, end, mac, address))]
        if spec.ports:
            plan.append(Planned(ATTACH, firewall.ContainerRules(cid, net.bridge, address, list(spec.ports))))
    return plan


def would_run(spec: ContainerSpec, root: str) -> tuple[str, list[Planned]]:
    """(a new id, the plan) of a run of SPEC now, nothing taken: the address and id range are the ones a run
    would lease now. What --explain prints and --print-spec translates."""
    cid = os.urandom(32).hex()
    net = address = None
    if spec.network not in ("none", "host"):
        from runtime.network import ipam, networks

        net = networks.get(root, spec.network)
        address = ipam.next_free(net.bridge, net.subnet)
    id_base = userns.next_free() if spec.userns == "auto" else None
    return cid, recipe(spec, net, root, cid, spec.name or cid[:12], address, id_base)


def create(journal: Journal, spec: ContainerSpec, net, root: str, cid: str, name: str) -> list[Planned]:
    """Make the plan and run its create phase. The address and the id range are chosen, and the steps up to
    their leases run, under the locks that guard them, so that another run, of any state root, chooses
    others."""
    with _host_lock(net), _userns_lock(spec):
        id_base = userns.next_free() if spec.userns == "auto" else None
        plan = recipe(spec, net, root, cid, name, _next_free(net), id_base)
        creating = [p for p in plan if p.phase == CREATE]
        leased = max((i + 1 for i, p in enumerate(creating) if p.step.kind in ("lease", "idrange")), default=0)
        run(journal, creating[:leased], CREATE)
    run(journal, creating[leased:], CREATE)
    return plan


def run(journal: Journal, plan: list[Planned], phase: str, pid: int | None = None) -> None:
    """Journal and run PLAN's steps of PHASE, in order; with PID, for the container whose PID 1 it is. A step
    marked beside runs in a thread meanwhile, and is waited for at the end of the phase."""
    waits = []
    try:
        for planned in plan:
            if planned.phase != phase:
                continue
            step = planned.step.at(pid) if pid is not None else planned.step
            if planned.beside:
                waits.append(journal.run_beside(step))
            else:
                journal.run(step)
    finally:
        failed = []
        for wait in waits:
            try:
                wait()
            except BaseException as e:
                failed.append(e)
    if failed:  # raised only if the phase itself did not: its own exception wins
        raise failed[0]


def find(plan: list[Planned], kind: type) -> Step | None:
    return next((p.step for p in plan if isinstance(p.step, kind)), None)


def hostname(spec: ContainerSpec, cid: str) -> str:
    return spec.hostname or cid[:12]


def binds(spec: ContainerSpec, plan: list[Planned]) -> list[tuple[str, str, bool]]:
    """The bind mounts PID 1 makes, (source, target, readonly): the /etc files, then -v's."""
    return find(plan, dns.EtcFiles).binds() + [(m.source, m.target, m.readonly) for m in spec.mounts]


def inside(spec: ContainerSpec, plan: list[Planned], cid: str) -> list[pid1.Action]:
    """The container side of PLAN: what PID 1 does, in order, on PLAN's layer (pid1.py)."""
    return pid1.recipe(spec, find(plan, Layer).path, binds(spec, plan), hostname(spec, cid))


def guard_devices(spec: ContainerSpec) -> ContainerSpec:
    """Without the devices controller nothing stops a node made with CAP_MKNOD from opening the host's disk."""
    from runtime import cgroups

    if "MKNOD" not in spec.caps or cgroups.guards_devices():
        return spec
    print("pyrun: no cgroup v1 devices controller here (cgroup v2 needs an eBPF program, which pyrun does not "
          "load): dropping CAP_MKNOD", file=sys.stderr)
    return replace(spec, caps=spec.caps - {"MKNOD"})


def _host_lock(net):
    if net is None:
        return contextlib.nullcontext()
    from runtime.network import host

    return host.locked()


def _userns_lock(spec: ContainerSpec):
    return userns.locked() if spec.userns == "auto" else contextlib.nullcontext()


def _next_free(net) -> str | None:
    if net is None:
        return None
    from runtime.network import ipam

    return ipam.next_free(net.bridge, net.subnet)


def all_kinds() -> dict[str, type[Step]]:
    """Every kind of step, its module imported: a journal written before records named their module, or
    naming the module a step has since moved out of, is read back through this (steps.Step.from_record)."""
    from runtime.network import bridge, firewall, hostports, ipam, portguard, veth  # noqa: F401  (their kinds)
    from runtime.oci import bundle, client  # noqa: F401
    from runtime.steps import KINDS

    return dict(KINDS)

