"""The container image, checked without a Docker engine.

1. Assemble the build context exactly as Docker's client does: the Docker SDK (docker-py) reads
   .dockerignore and tars the repository with its port of Docker's matcher; the tar is unpacked
   into an empty folder.
2. Run the build stage of the Dockerfile in that folder, in a sandbox (bubblewrap) that sees the
   context at the stage's WORKDIR, the Rust toolchain where the rust image keeps it, the cache
   mounts bound to the local cargo cache and target/image (so nothing is downloaded, nor rebuilt
   that is already built), and no network at all. The RUN commands are read from the
   Dockerfile, not repeated here.
3. Run the binary as the final stage runs it: the file the final stage copies, at the path it
   copies it to, as the USER it names, on a read-only root filesystem (the chart sets
   readOnlyRootFilesystem), with its own loopback; the HEALTHCHECK command must exit 0 against
   the started instance and non-zero once it is stopped.
4. With --image NAME: the same run, of the image buildah built (.ci/image_buildah.sh), from its
   own root filesystem and config.

5. With --in-build-stage COMMAND...: run COMMAND in the build stage's environment, with the
   repository itself as the context (read-only) and the same cache mounts, so what it builds
   lands where the image build looks (the perf stage builds its bench and the image's binary
   this way).

Usage: python .ci/image_test.py REPO_ROOT WORK_DIR [--image NAME | --in-build-stage COMMAND...]
"""

import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import docker.utils.build
from dockerfile_parse import DockerfileParser

import skips  # .ci/skips.py, beside this file

ROOT = Path(sys.argv[1]).resolve()
WORK = Path(sys.argv[2]).resolve()
CARGO_HOME = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
RUSTUP_HOME = Path(os.environ.get("RUSTUP_HOME", Path.home() / ".rustup"))
# Under sudo, PATH may be reset to a secure one without the user's cargo.
os.environ["PATH"] = f"{CARGO_HOME / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"

# Where the official rust image keeps cargo and rustup; the Dockerfile's cache mounts and PATH
# refer to these.
IMAGE_CARGO_HOME = "/usr/local/cargo"
IMAGE_RUSTUP_HOME = "/usr/local/rustup"

failures = []

# The platform the image is built for (Docker's TARGETPLATFORM): IMAGE_PLATFORM, or this
# machine's. The sandbox has no network, so the build stage runs its native path only (the
# cross compiler and Rust target of another architecture come from apt and rustup): another
# platform is checked on a machine of that architecture (the ci workflow's arm64 job).
ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}
# ELF e_machine of each architecture's executables.
ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}
PLATFORM = os.environ.get("IMAGE_PLATFORM") or f"linux/{ARCHES.get(os.uname().machine, os.uname().machine)}"
TARGETARCH = PLATFORM.removeprefix("linux/")


def fail(message):
    failures.append(message)
    print("FAIL", message)


def build_context(dest):
    """What `docker build .` sends: docker-py's own reading of .dockerignore and its tar."""
    exclude = None
    ignore_file = ROOT / ".dockerignore"
    if ignore_file.exists():
        # The same reading as docker.api.build.BuildApiMixin.build.
        lines = [line.strip() for line in ignore_file.read_text().splitlines()]
        exclude = [line for line in lines if line and not line.startswith("#")]
    archive = docker.utils.build.tar(str(ROOT), exclude=exclude, dockerfile=(None, None))
    with tarfile.open(fileobj=archive) as tar:
        tar.extractall(dest, filter="tar")
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())


def stages(dockerfile):
    """[(name, base image, [instruction dicts])] in order; unnamed stages are named by index."""
    result = []
    for ins in dockerfile.structure:
        if ins["instruction"] == "FROM":
            # --platform=$BUILDPLATFORM: the stage runs where the build runs (see PLATFORM).
            words = [w for w in ins["value"].split() if not w.startswith("--platform=")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else str(len(result))
            result.append((name, words[0], []))
        elif result and ins["instruction"] != "COMMENT":
            result[-1][2].append(ins)
    return result


def run_flags(value):
    """Split a RUN value into its --mount targets and the shell command."""
    mounts = []
    rest = value.strip()
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        if flag.startswith("--mount="):
            opts = dict(kv.split("=", 1) for kv in flag[len("--mount="):].split(",") if "=" in kv)
            mounts.append(opts)
    return mounts, rest


def cache_source(target, workdir):
    """Local folder standing in for a cache mount, or None when the test does not know it."""
    known = {
        f"{IMAGE_CARGO_HOME}/registry": CARGO_HOME / "registry",
        f"{IMAGE_CARGO_HOME}/git": CARGO_HOME / "git",
        # The release tree of the image's build environment. The perf stage builds its bench
        # in the same environment (--in-build-stage), so this build finds every dependency
        # compiled: cargo reuses a build only where the paths (the workspace, CARGO_HOME) are
        # the same, and here they are the image's.
        f"{workdir.rstrip('/')}/target": RELEASE_TREE,
    }
    return known.get(target.rstrip("/"))


RELEASE_TREE = ROOT / "target" / "image"


def host_toolchain():
    out = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def sandbox_base():
    """bwrap arguments for a root of Debian's /usr (the host's, read-only) and nothing else."""
    args = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            args += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            args += ["--ro-bind", f"/{link}", f"/{link}"]
    return args


def build_stage(ctx, out, copied, stage_name, base, instructions, run_instead=None):
    """Run the stage's RUN commands in the context; copy the files the final stage takes
    (`copied`, paths in the stage's filesystem) to `out`. With `run_instead` (a list), run that
    instead, in the same environment, with `ctx` read-only, and return its exit code."""
    workdir = "/"
    env = {"PATH": f"{IMAGE_CARGO_HOME}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "CARGO_HOME": IMAGE_CARGO_HOME, "RUSTUP_HOME": IMAGE_RUSTUP_HOME,
           "HOME": "/root", "CARGO_NET_OFFLINE": "true", "CARGO_TERM_COLOR": "never",
           # What BuildKit gives a stage that declares ARG TARGETARCH.
           "TARGETARCH": TARGETARCH}
    binds = []
    commands = []
    for ins in instructions:
        kind, value = ins["instruction"], ins["value"]
        if kind == "WORKDIR":
            workdir = value if value.startswith("/") else os.path.join(workdir, value)
        elif kind == "COPY":
            words = value.split()
            if words != [".", "."]:
                fail(f"stage {stage_name}: COPY {value} is not `COPY . .`; teach this test how to stage it")
                return False
            binds += ["--ro-bind" if run_instead else "--bind", str(ctx), workdir]
        elif kind == "ENV":
            for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', value):
                env[k] = v.strip('"')
        elif kind == "RUN":
            mounts, command = run_flags(value)
            for opts in mounts:
                target = opts.get("target") or opts.get("dst") or opts.get("destination")
                source = cache_source(target, workdir) if opts.get("type") == "cache" else None
                if source is None:
                    fail(f"stage {stage_name}: no local stand-in for RUN --mount {opts}")
                    return False
                source.mkdir(parents=True, exist_ok=True)
                binds += ["--bind", str(source), target]
            commands.append(command)
        elif kind in ("ARG", "LABEL"):
            continue
        else:
            fail(f"stage {stage_name}: {kind} in the build stage is not handled by this test")
            return False

    image_version = re.match(r"rust:(\d+\.\d+\.\d+)", base)
    if image_version and image_version.group(1) != host_toolchain():
        print(f"note: the build stage uses {base}, this machine has rustc {host_toolchain()}", file=sys.stderr)

    script = " && ".join(f"( {c} )" for c in commands)
    # /usr/local is the image's own (cargo and rustup live there), not this machine's.
    args = sandbox_base() + [
        "--tmpfs", "/usr/local",
        "--ro-bind", str(RUSTUP_HOME), IMAGE_RUSTUP_HOME,
        "--ro-bind", str(CARGO_HOME / "bin"), f"{IMAGE_CARGO_HOME}/bin",
        "--ro-bind", "/etc", "/etc",
        "--bind", str(out), "/out",
        *binds, "--chdir", workdir, "--clearenv",
    ]
    for k, v in env.items():
        args += ["--setenv", k, v]
    if run_instead:
        return subprocess.run(args + run_instead).returncode
    print(f"build stage {stage_name} (offline, context at {workdir}): {script}", flush=True)
    command = ["/bin/sh", "-euc", script + ' && cp -a "$@" /out/', "sh", *copied]
    return subprocess.run(args + command).returncode == 0


def exec_form(value):
    value = value.strip()
    return json.loads(value) if value.startswith("[") else ["/bin/sh", "-c", value]


def run_final(out, instructions, build_name):
    user, entrypoint, health, copies = "0:0", None, None, []
    for ins in instructions:
        kind, value = ins["instruction"], ins["value"]
        if kind == "USER":
            user = value.strip()
        elif kind == "ENTRYPOINT":
            entrypoint = exec_form(value)
        elif kind == "HEALTHCHECK":
            health = exec_form(value.split("CMD", 1)[1])
        elif kind == "COPY" and value.startswith(f"--from={build_name} "):
            src, dst = value.split()[1:3]
            copies.append((src, dst))
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or uid == "0":
        fail(f"USER {user}: the image must run as a numeric non-root uid (the chart sets runAsNonRoot)")
    if entrypoint is None or health is None:
        fail("the final stage needs an ENTRYPOINT and a HEALTHCHECK")
        return
    binds = []
    for src, dst in copies:
        binds += ["--ro-bind", str(out / Path(src).name), dst]
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups",
               "--bounding-set=-all", "--no-new-privs", "--"]
    serve = shlex.join(as_user + entrypoint)
    check = shlex.join(as_user + health)
    # One shell in the sandbox starts the service, waits for the health check to pass (the
    # HEALTHCHECK start period is 10 s), checks who runs it and that it cannot write, stops
    # it, and checks the health check then fails.
    script = f"""
{serve} >/tmp/service.log 2>&1 &
pid=$!
ok=""
for _ in $(seq 1 100); do
  if {check} >/dev/null 2>&1; then ok=yes; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$ok" ]; then echo "FAIL healthcheck never passed; service output:"; cat /tmp/service.log; exit 1; fi
{check}; echo "healthcheck against the running instance: exit $?"
runs_as=$(grep '^Uid:' /proc/$pid/status | cut -f2)
echo "service runs as uid $runs_as"
[ "$runs_as" = "{uid}" ] || {{ echo "FAIL service does not run as uid {uid}"; head -n 10 /proc/$pid/status; exit 1; }}
if {shlex.join(as_user + ["touch", "probe"])}; then echo "FAIL the working directory is writable"; exit 1; fi
kill -TERM "$pid"; wait "$pid"; code=$?
echo "service stopped on SIGTERM: exit $code"
[ "$code" = 0 ] || {{ echo "FAIL service exit code $code after SIGTERM"; cat /tmp/service.log; exit 1; }}
if {check} >/dev/null 2>&1; then echo "FAIL healthcheck passed with no instance running"; exit 1; fi
echo "healthcheck with the instance stopped: exit non-zero"
"""
    # The root is read-only (remount-ro), as in the pod; /tmp holds only the test's own log.
    args = sandbox_base() + [
        "--ro-bind", "/etc/passwd", "/etc/passwd", "--ro-bind", "/etc/group", "/etc/group",
        "--tmpfs", "/usr/local", *binds,
        # distroless's /home/nonroot belongs to the user; only the read-only root stops writes.
        "--perms", "0777", "--dir", "/home/nonroot", "--chdir", "/home/nonroot", "--remount-ro", "/",
        "--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
        "--setenv", "SHUTDOWN_DRAIN_SECONDS", "0",
        "/bin/sh", "-uc", script,
    ]
    print(f"run as the image runs it: USER {user}, ENTRYPOINT {entrypoint}, HEALTHCHECK {health}", flush=True)
    if subprocess.run(args).returncode != 0:
        fail("the binary does not run as the image runs it (see above)")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def descendants(pid):
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = []
    for child in (children.read_text().split() if children.exists() else []):
        found += [int(child)] + descendants(int(child))
    return found


def run_image(name):
    """Run an image buildah built: its own root filesystem, read-only, its config's USER,
    WORKDIR, ENV, ENTRYPOINT and HEALTHCHECK. The user switch happens before the sandbox is
    made (setpriv, then bubblewrap in a user namespace), so the kernel sees the image's uid."""
    config = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", name],
                                       capture_output=True, text=True, check=True).stdout)["Docker"]["config"]
    rootfs = WORK / "image-root"
    container = subprocess.run(["buildah", "from", "--pull=never", name],
                               capture_output=True, text=True, check=True).stdout.strip()
    try:
        mount = subprocess.run(["buildah", "mount", container], capture_output=True, text=True,
                               check=True).stdout.strip()
        subprocess.run(["cp", "-a", mount + "/.", str(rootfs)], check=True)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
    for point in ("proc", "dev"):  # what a container runtime mounts
        (rootfs / point).mkdir(exist_ok=True)
    WORK.chmod(0o755)

    uid, _, gid = config["User"].partition(":")
    port, metrics_port = free_port(), free_port()
    sandbox = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups", "--no-new-privs",
               "bwrap", "--unshare-user", "--uid", uid, "--gid", gid or uid, "--die-with-parent",
               "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev",
               "--chdir", config.get("WorkingDir") or "/", "--clearenv"]
    # An unprivileged user namespace is what lets the sandbox start as the image's uid; some
    # hosts forbid it (Ubuntu 24.04's AppArmor default). Part 1 has checked the same binary as
    # the same uid on a read-only root, so say so and stop here rather than fake the uid.
    probe = subprocess.run(sandbox[:sandbox.index("--chdir")] + config["Entrypoint"] + ["check-config"],
                           capture_output=True, text=True)
    if probe.returncode != 0 and "bwrap:" in probe.stderr:
        skips.record("image:run-built-image", f"this host does not let uid {uid} make a user namespace "
                     f"({probe.stderr.strip()}); on Ubuntu 24.04: sysctl kernel.apparmor_restrict_unprivileged_userns=0")
        return
    # The host's network is shared, so the ports are free ones instead of 8000/9090.
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        sandbox += ["--setenv", key, value]
    sandbox += ["--setenv", "PORT", port, "--setenv", "METRICS_PORT", metrics_port,
                "--setenv", "HOST", "127.0.0.1", "--setenv", "SHUTDOWN_DRAIN_SECONDS", "0"]
    test = config["Healthcheck"]["Test"]
    check = sandbox + (test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]])
    print(f"run image {name}: USER {config['User']}, WORKDIR {config.get('WorkingDir')}, "
          f"ENTRYPOINT {config['Entrypoint']}, HEALTHCHECK {test[1:]}", flush=True)

    log = open(WORK / "image-service.log", "w+")
    server = subprocess.Popen(sandbox + config["Entrypoint"] + (config.get("Cmd") or []),
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + config["Healthcheck"].get("StartPeriod", 10e9) / 1e9
        while subprocess.run(check, capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                fail(f"image {name}: HEALTHCHECK never passed; service output:\n{log.read()}")
                return
            time.sleep(0.2)
        print("image HEALTHCHECK against the running container: exit 0")
        service = [p for p in descendants(server.pid)
                   if Path(f"/proc/{p}/comm").read_text().strip() == "order-service"]
        uids = {Path(f"/proc/{p}/status").read_text().split("Uid:")[1].split()[0] for p in service}
        print(f"image process runs as uid {', '.join(sorted(uids)) or '?'} (as the host sees it)")
        if uids != {uid}:
            fail(f"image {name}: the service runs as uid {uids}, not {uid}")
        for p in service:
            os.kill(p, 15)
        code = server.wait(timeout=30)
        print(f"image stopped on SIGTERM: exit {code}")
        if code != 0:
            fail(f"image {name}: exit code {code} after SIGTERM")
        if subprocess.run(check, capture_output=True).returncode == 0:
            fail(f"image {name}: HEALTHCHECK passed with the container stopped")
        else:
            print("image HEALTHCHECK with the container stopped: exit non-zero")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def linked_packages(binary):
    """Debian packages providing the shared libraries the binary loads."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    packages = set()
    for line in out.splitlines():
        m = re.search(r"(/\S+)", line)
        if not m or "linux-vdso" in line:
            continue
        real = os.path.realpath(m.group(1))
        owner = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", m.group(1)], capture_output=True, text=True)
        packages.add(owner.stdout.split(":")[0] if owner.returncode == 0 else m.group(1))
    return packages


def build_stage_of_dockerfile():
    """(build stage name, files the final stage copies from it, the stage, the final stage's
    instructions), or None after a failure."""
    parsed = DockerfileParser(path=str(ROOT / "Dockerfile"))
    all_stages = stages(parsed)
    final_name, _, final = all_stages[-1]
    sources = {}
    for ins in final:
        m = re.match(r"--from=(\S+)\s+(\S+)\s+(\S+)", ins["value"]) if ins["instruction"] == "COPY" else None
        if m:
            sources.setdefault(m.group(1), []).append(m.group(2))
    if len(sources) != 1:
        fail(f"the final stage copies from {sorted(sources)}; this test follows exactly one build stage")
        return None
    (build_name, copied), = sources.items()
    stage = next((s for s in all_stages if s[0] == build_name), None)
    if stage is None:
        fail(f"no stage named {build_name}")
        return None
    return build_name, copied, stage, final


def run_in_build_stage(command):
    """Run `command` where the build stage runs its RUN commands (the repository read-only as
    the context, the stage's cache mounts, no network) and return its exit code."""
    found = build_stage_of_dockerfile()
    if found is None:
        return 1
    _, copied, stage, _ = found
    WORK.mkdir(parents=True, exist_ok=True)
    return build_stage(ROOT, WORK, copied, *stage, run_instead=command)


def main():
    ctx = WORK / "context"
    out = WORK / "out"
    ctx.mkdir(parents=True)
    out.mkdir()

    files = build_context(ctx)
    print(f"build context: {len(files)} files")
    for forbidden in ("target/", ".git/", ".env", ".tfstate"):
        leaked = [f for f in files if forbidden in f or f.startswith(forbidden)]
        if leaked:
            fail(f"the build context holds {forbidden}: {leaked[:3]}")

    # Every workspace member must be in the context: cargo loads the whole workspace even for -p.
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    for pkg in meta["packages"]:
        manifest = Path(pkg["manifest_path"]).relative_to(ROOT)
        if not (ctx / manifest).exists():
            fail(f"workspace member {pkg['name']} ({manifest.parent}/) is not in the build context: "
                 f"admit it in .dockerignore, or take it out of the workspace")

    host = ARCHES.get(os.uname().machine)
    if TARGETARCH not in ELF_MACHINE or not PLATFORM.startswith("linux/"):
        fail(f"IMAGE_PLATFORM={PLATFORM}: the image is built for linux/amd64 and linux/arm64")
        return
    if TARGETARCH != host:
        fail(f"IMAGE_PLATFORM={PLATFORM} on a linux/{host} machine: the offline build stage builds "
             f"natively only; check {PLATFORM} on a machine of that architecture")
        return
    print(f"platform: {PLATFORM}")

    found = build_stage_of_dockerfile()
    if found is None:
        return
    build_name, copied, stage, final = found

    started = time.monotonic()
    if not build_stage(ctx, out, copied, *stage):
        fail(f"the build stage {build_name} fails in the context Docker would send")
        return
    print(f"build stage: {time.monotonic() - started:.0f} s")

    binary = out / Path(copied[0]).name
    with binary.open("rb") as f:
        header = f.read(20)
    machine = int.from_bytes(header[18:20], "little")
    if header[:4] != b"\x7fELF" or machine != ELF_MACHINE[TARGETARCH]:
        fail(f"the build stage made {binary.name} for ELF machine {machine:#x}, not {PLATFORM}")
        return
    libs = linked_packages(binary)
    # gcr.io/distroless/cc-debian12 ships glibc and the GCC runtime libraries, nothing else.
    extra = libs - {"libc6", "libgcc-s1", "libstdc++6", "libgomp1"}
    print(f"shared libraries from: {', '.join(sorted(libs))}")
    if extra:
        fail(f"the binary needs libraries the distroless cc image does not have: {sorted(extra)}")

    run_final(out, final, build_name)


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[3] == "--in-build-stage":
        # Used by the perf stage: cargo's JSON on stdout, nothing else.
        code = run_in_build_stage(sys.argv[4:])
        for failure in failures:
            print("FAIL", failure, file=sys.stderr)
        sys.exit(code or (1 if failures else 0))
    if len(sys.argv) == 5 and sys.argv[3] == "--image":
        # The real image, built by .ci/image_buildah.sh.
        run_image(sys.argv[4])
    else:
        main()
    print("image: ok" if not failures else f"image: {len(failures)} failures")
    sys.exit(1 if failures else 0)
