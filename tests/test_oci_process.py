"""config.json's process: args, env, cwd, user, capabilities, rlimits, noNewPrivileges, as the program sees them."""
from ocitools import make_bundle, run_bundle


def _run(busybox, tmp_path, script: str, edit=None) -> tuple[int, str, str]:
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["sh", "-c", script], edit)
    return run_bundle(bundle, str(tmp_path), "proc1")


def test_env_is_exactly_the_configs(busybox, tmp_path):
    code, out, _ = _run(busybox, tmp_path, "env | sort",
                        lambda c: c["process"].update(env=["PATH=/bin", "A=1", "B=two words"]))
    assert code == 0
    assert [line for line in out.splitlines() if line not in ("PWD=/", "SHLVL=1")] == ["A=1", "B=two words",
                                                                                    "PATH=/bin"]


def test_cwd_is_created_and_entered(busybox, tmp_path):
    code, out, _ = _run(busybox, tmp_path, "pwd", lambda c: c["process"].update(cwd="/work/here"))
    assert (code, out) == (0, "/work/here\n")


def test_user_uid_gid_and_additional_gids(busybox, tmp_path):
    code, out, err = _run(busybox, tmp_path, "id -u; id -g; id -G; grep Cap /proc/self/status",
                          lambda c: c["process"].update(user={"uid": 1000, "gid": 1001, "additionalGids": [5, 7]}))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:3] == ["1000", "1001", "1001 5 7"]
    caps = dict(line.split(":\t") for line in lines[3:])
    # A user other than root keeps no capability across execve but the ambient ones (none here), as with runc;
    # the bounding set is the config's.
    assert caps["CapEff"] == caps["CapPrm"] == "0000000000000000" and caps["CapBnd"] != caps["CapEff"]


def test_each_capability_set_is_the_configs(busybox, tmp_path):
    def edit(c):
        c["process"]["capabilities"] = {"bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
                                        "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                                        "effective": ["CAP_KILL"],
                                        "inheritable": ["CAP_NET_BIND_SERVICE"],
                                        "ambient": ["CAP_NET_BIND_SERVICE"]}
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
    code, out, err = _run(busybox, tmp_path, "grep Cap /proc/self/status", edit)
    assert code == 0, err
    caps = dict(line.split(":\t") for line in out.splitlines())
    kill, chown, bind = 1 << 5, 1 << 0, 1 << 10
    # After execve as uid 1000: permitted and effective are the ambient set (the kernel's rule for non-root).
    assert int(caps["CapBnd"], 16) == kill | chown | bind
    assert int(caps["CapInh"], 16) == bind
    assert int(caps["CapAmb"], 16) == bind
    assert int(caps["CapPrm"], 16) == bind and int(caps["CapEff"], 16) == bind


def test_rlimits_are_set(busybox, tmp_path):
    code, out, _ = _run(busybox, tmp_path, "ulimit -n; ulimit -Hn",
                        lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 200, "hard": 300}]))
    assert (code, out) == (0, "200\n300\n")


def test_no_new_privileges_follows_the_config(busybox, tmp_path):
    for nnp, shown in ((True, "1"), (False, "0")):
        code, out, _ = _run(busybox, tmp_path, "grep NoNewPrivs /proc/self/status",
                            lambda c: c["process"].update(noNewPrivileges=nnp))
        assert (code, out.split()) == (0, ["NoNewPrivs:", shown])
        import shutil
        shutil.rmtree(tmp_path / "b")


def test_exit_code_is_the_programs(busybox, tmp_path):
    code, _, _ = _run(busybox, tmp_path, "exit 42")
    assert code == 42


def test_an_ambient_capability_that_is_not_inheritable_is_skipped_as_runc_skips_it(busybox, tmp_path):
    """runc's own `runc spec` asks for ambient AUDIT_WRITE, KILL and NET_BIND_SERVICE without making them
    inheritable, which the kernel refuses to raise; runc skips them, and so does pyrun-oci."""
    def edit(c):
        caps = c["process"]["capabilities"]
        caps["ambient"] = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
        caps["inheritable"] = ["CAP_KILL"]
    bundle = make_bundle(str(tmp_path / "b"), busybox, ["grep", "CapAmb", "/proc/self/status"], edit)
    code, out, err = run_bundle(bundle, str(tmp_path), "amb1")
    assert (code, out) == (0, "CapAmb:\t0000000000000020\n"), err  # KILL only: inheritable and permitted
