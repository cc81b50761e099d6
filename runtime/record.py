"""A container's record: what pyrun writes down about a container, and how much of it the kernel still backs.

The record is containers/ID/state.json (state.py keeps the directory), in the shape `docker inspect`
prints: `pyrun inspect` prints it, and `inspect -f '{{.State.Status}}'` templates walk it. This module is
the one place that spells that shape; every other module reads and changes a record through Record.

A record's word about processes is not believed on its own. It names two: the container's PID 1 ("Init")
and the pyrun that watches over it ("Monitor"), each as a pid and the start time /proc/PID/stat gives
it (state.alive). A pid is reused once its process has been reaped, a start time is not, so status()
says "running" only while both are still the processes the record names: a crashed pyrun or a recycled
pid cannot make a dead container look alive.

This module imports only state.py: `pyrun ps` reads every record and must stay quick to start.
"""
import os
import time

from runtime import state
from runtime.errors import PyrunError


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Record:
    """One container's record: DATA is the JSON, read and changed only through these accessors.

    A record exists from the moment its name is reserved; until the container's description is written
    (describe) it holds only the id, the name, "created" and its pyrun, so every reader has a default."""

    def __init__(self, data: dict):
        self.data = data

    @classmethod
    def load(cls, root: str, cid: str) -> "Record":
        """Container CID's record; FileNotFoundError or ValueError if it is gone or being replaced."""
        return cls(state.read_json(state.record_path(root, cid)))

    @classmethod
    def every(cls, root: str) -> list["Record"]:
        return [cls(data) for data in state.all_records(root)]

    @classmethod
    def reserve(cls, root: str, name: str | None) -> "Record":
        """A new container's id and a unique name, its directory and its first record, naming this pyrun.
        Call under state.locked(root)."""
        if name in {r.name for r in cls.every(root)}:
            raise PyrunError("invalid --name", f"{name!r} is already in use by another container; "
                                               "remove it with 'pyrun rm' or choose another name")
        cid = os.urandom(32).hex()
        record = cls({"Id": cid, "Name": name or cid[:12], "State": {"Status": "created"}, "Monitor": state.me()})
        os.makedirs(state.container_dir(root, cid), 0o700)
        try:
            record.save(root)
        except PyrunError:
            os.rmdir(state.container_dir(root, cid))
            raise
        return record

    def save(self, root: str) -> None:
        state.write_json(state.record_path(root, self.id), self.data)

    # What the container is: written once by describe(), read back by spec().

    def describe(self, spec, hostname: str, remove: bool, log_path: str, log_config: dict) -> None:
        """Write down SPEC (a validated ContainerSpec), in Docker's inspect shape; spec() reads it back."""
        ports: dict = {}
        for p in spec.ports:
            ports.setdefault(f"{p.container_port}/{p.proto}", []).append(
                {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
        self.data.update({
            "Created": now(),
            "Path": spec.command[0],
            "Args": list(spec.command[1:]),
            "LogPath": log_path,
            "Config": {"Image": spec.rootfs, "Cmd": list(spec.command), "Env": [f"{k}={v}" for k, v in spec.env],
                       "Hostname": hostname, "WorkingDir": spec.workdir,
                       "Tty": spec.tty, "OpenStdin": spec.interactive, "User": spec.user or "",
                       "StopTimeout": spec.stop_timeout},
            "HostConfig": {"NetworkMode": spec.network, "AutoRemove": remove, "Init": spec.init,
                           "Runtime": spec.runtime,
                           "ReadonlyRootfs": spec.read_only, "Capabilities": sorted(spec.caps),
                           "SecurityOpt": [f"seccomp={spec.seccomp_setting}"], "UsernsMode": spec.userns,
                           "Binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}" for m in spec.mounts],
                           "Memory": spec.resources.memory or 0, "NanoCpus": int((spec.resources.cpus or 0) * 1e9),
                           "PidsLimit": spec.resources.pids_limit or 0,
                           "Sandbox": spec.sandbox, "Timeout": spec.timeout or 0,
                           "Tmpfs": {t.target: t.options() for t in spec.tmpfs},
                           "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in spec.ulimits],
                           "LogConfig": {"Type": "file", "Config": log_config}},
            "NetworkSettings": {"IPAddress": "", "Gateway": "", "MacAddress": "", "Ports": ports},
        })

    def spec(self):
        """The ContainerSpec that describe() wrote down (ports and limits aside): what exec needs."""
        from runtime.cgroups import Resources
        from runtime.spec import BindMount, ContainerSpec, Ulimit, parse_security_opts

        config, host = self.data["Config"], self.data["HostConfig"]
        return ContainerSpec(
            rootfs=config["Image"], command=tuple(config["Cmd"]), name=self.name, hostname=config["Hostname"],
            env=tuple(tuple(e.split("=", 1)) for e in config["Env"]), workdir=config["WorkingDir"],
            mounts=tuple(BindMount(*b.split(":")[:2], b.endswith(":ro")) for b in host["Binds"]),
            network=host["NetworkMode"], resources=Resources(), caps=frozenset(host["Capabilities"]),
            read_only=host["ReadonlyRootfs"], init=host["Init"], interactive=config["OpenStdin"], tty=config["Tty"],
            userns=host.get("UsernsMode", "host"), user=config.get("User") or None,
            stop_timeout=config.get("StopTimeout", 10.0),
            ulimits=tuple(Ulimit(u["Name"], u["Soft"], u["Hard"]) for u in host.get("Ulimits", [])),
            **parse_security_opts(host["SecurityOpt"]))

    @property
    def id(self) -> str:
        return self.data["Id"]

    @property
    def name(self) -> str:
        return self.data.get("Name") or self.data["Id"][:12]

    @property
    def created(self) -> str:
        return self.data.get("Created", "")

    @property
    def log_path(self) -> str:
        return self.data.get("LogPath", "")

    def _config(self) -> dict:
        return self.data.get("Config", {})

    def _host(self) -> dict:
        return self.data.get("HostConfig", {})

    @property
    def image(self) -> str:
        return self._config().get("Image", "")

    @property
    def command(self) -> list[str]:
        return self._config().get("Cmd", [])

    @property
    def hostname(self) -> str:
        return self._config()["Hostname"]

    @property
    def stop_timeout(self) -> float:
        return self._config().get("StopTimeout", 10)

    @property
    def network(self) -> str:
        """The --network it was given: bridge, none, host or a user-defined network's name."""
        return self._host().get("NetworkMode", "")

    @property
    def binds(self) -> list[str]:
        return self._host().get("Binds", [])

    @property
    def auto_remove(self) -> bool:
        return self._host().get("AutoRemove", False)

    @property
    def timeout(self) -> float:
        return self._host().get("Timeout", 0)

    @property
    def memory(self) -> int:
        """--memory in bytes; 0: no limit."""
        return self._host().get("Memory", 0)

    @property
    def log_config(self) -> dict:
        """--log-opt as given (logfile.bounds reads it)."""
        return self._host()["LogConfig"]["Config"]

    def mapped(self, id_map: str) -> None:
        """--userns=auto: the container's ids are the host's from ID_MAP on, "INSIDE HOST COUNT"; podman's
        inspect names them so."""
        self._host()["IDMappings"] = {"UidMap": [id_map], "GidMap": [id_map]}

    # The network, once the container is wired.

    def _net(self) -> dict:
        return self.data.get("NetworkSettings", {})

    def connect(self, net, address: str, mac: str, sandbox_key: str) -> None:
        """Wired to NET (a networks.Network) at ADDRESS, its eth0's MAC and its network namespace's path."""
        self._net().update({"IPAddress": address, "IPPrefixLen": net.prefixlen, "Gateway": net.gateway,
                            "MacAddress": mac, "SandboxKey": sandbox_key})

    @property
    def ip(self) -> str:
        return self._net().get("IPAddress", "")

    @property
    def gateway(self) -> str:
        return self._net().get("Gateway", "")

    @property
    def mac(self) -> str:
        return self._net().get("MacAddress", "")

    def bindings(self) -> list[tuple[str, str, int]]:
        """Each published port as (PORT/PROTO in the container, host address, host port)."""
        return [(port, b["HostIp"], int(b["HostPort"])) for port, binds in self._net().get("Ports", {}).items()
                for b in binds]

    def published(self) -> list[str]:
        """The published ports as `docker ps` shows them: HOST_IP:HOST_PORT->PORT/PROTO."""
        return [f"{ip}:{host_port}->{port}" for port, ip, host_port in self.bindings()]

    # Its life: the record's word, and the kernel's.

    @property
    def said(self) -> str:
        """The status the record was last written with: created, running, exited or dead (see status())."""
        return self.data["State"]["Status"]

    @property
    def exit_code(self) -> int | None:
        return self.data["State"].get("ExitCode")

    @property
    def started_at(self) -> str:
        return self.data["State"].get("StartedAt", "")

    @property
    def finished_at(self) -> str:
        return self.data["State"].get("FinishedAt", "")

    @property
    def pid(self) -> int | None:
        """PID 1's host pid (once running: check status() before trusting it)."""
        return self.data["State"].get("Pid")

    @property
    def init(self) -> dict | None:
        """PID 1 as a process identity, for state.alive."""
        return self.data.get("Init")

    @property
    def monitor(self) -> dict | None:
        """The pyrun that sets the container up, waits for it and tears it down, as a process identity."""
        return self.data.get("Monitor")

    @monitor.setter
    def monitor(self, process: dict) -> None:
        self.data["Monitor"] = process

    def status(self) -> str:
        """created, running, stopping, exited or dead, checked against the processes themselves."""
        said = self.said
        if said in ("exited", "dead"):
            return said
        if not state.alive(self.monitor):
            return "dead"  # its pyrun was killed: `pyrun prune` or the next `pyrun run` cleans up
        if said == "running" and not state.alive(self.init):
            return "stopping"  # PID 1 is gone; the monitor is tearing down
        return said

    def mark_running(self, pid: int) -> None:
        self.data["State"] = {"Status": "running", "Running": True, "Pid": pid, "ExitCode": 0,
                              "OOMKilled": False, "StartedAt": now(), "FinishedAt": ""}
        self.data["Init"] = {"Pid": pid, "StartTime": state.start_time(pid)}

    def mark_exited(self, code: int, oom: bool) -> None:
        self.data["State"].update(Status="exited", Running=False, ExitCode=code, OOMKilled=oom, FinishedAt=now())

    def mark_dead(self) -> None:
        """Its pyrun died without tearing down: nobody saw how it ended."""
        self.data["State"].update(Status="dead", Running=False, FinishedAt=self.finished_at or now())

    def shown(self) -> dict:
        """The record as `pyrun inspect` prints it: Docker's shape, its State checked against the kernel, and
        without pyrun's own process identities."""
        shown = {k: v for k, v in self.data.items() if k not in ("Monitor", "Init")}
        status = self.status()
        shown["State"] = {**self.data["State"], "Status": status, "Running": status == "running"}
        return shown
