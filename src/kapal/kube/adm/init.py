"""`kapal adm init`: kubeadm's init workflow, phase by phase.

    ctx = InitContext(cfg)            # cfg from config.load_init_config
    run_init(ctx)                     # every phase not in cfg.skip_phases, then the join line
    run_phase(ctx, "certs", "apiserver")   # `kapal adm init phase certs apiserver`

Phases print kubeadm's `[phase] …` lines through `ctx.out`; preflight warnings and fatal errors go to
`ctx.err`. A dry run (`cfg.dry_run`) writes every file under a temporary directory instead of /etc/kubernetes
and /var/lib/kubelet, starts nothing, and prints the API writes it would make and the manifests it wrote.
"""

from __future__ import annotations

import shutil
import ssl
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kapal import errors

from . import daemons, images, manifests, tokens
from .apiclient import ApiClient, DryRunClient, wait_for
from .config import InitConfig, cluster_configuration, format_duration
from .constants import (
    BOOTSTRAP_GROUP,
    CONTROL_PLANE_COMPONENTS,
    CONTROL_PLANE_LABEL,
    CONTROL_PLANE_TAINT,
    CONTROLLER_MANAGER_PORT,
    COREDNS,
    ENGINE_DAEMON,
    EXCLUDE_LB_LABEL,
    KUBE_APISERVER,
    KUBE_CONTROLLER_MANAGER,
    KUBE_PROXY,
    KUBE_SCHEDULER,
    KUBEADM_CONFIGMAP,
    KUBELET_CONFIGMAP,
    KUBELET_DAEMON,
    NODES_GROUP,
    SCHEDULER_PORT,
    KubeadmPaths,
    static_pod_path,
)
from .kubelet import engine_argv, flags_env, healthz_url, kubelet_argv, kubelet_configuration
from .preflight import IsPrivilegedUserCheck, init_checks, run_checks

Out = Callable[[str], None]
RBAC = "rbac.authorization.k8s.io/v1"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _stdout(line: str) -> None:
    print(line, flush=True)


@dataclass
class InitContext:
    cfg: InitConfig
    paths: KubeadmPaths = field(default_factory=KubeadmPaths)
    out: Out = _stdout
    err: Out = _stderr
    skip_token_print: bool = False
    started: float = field(default_factory=time.monotonic)
    dry_run_dir: Path | None = None
    host_paths: KubeadmPaths = field(init=False)  # the real paths: what files say and preflight checks
    cert_dir: Path = field(init=False)  # where certificates are written (the dry-run copy in a dry run)
    images_ready: bool = False  # preflight built or found them; kubelet-start need not look again
    _client: ApiClient | None = None
    _install: images.PythonInstall | None = None

    def __post_init__(self) -> None:
        self.host_paths = self.paths
        self.cert_dir = self.cfg.cert_dir
        if self.cfg.dry_run:
            if self.dry_run_dir is None:
                self.dry_run_dir = Path(tempfile.mkdtemp(prefix="kapal-adm-init-dryrun"))
            self.paths = self.host_paths.under(self.dry_run_dir)
            self.cert_dir = self.dry_run_dir / str(self.cfg.cert_dir).lstrip("/")
            if self.cfg.cert_dir.is_dir():
                shutil.copytree(self.cfg.cert_dir, self.cert_dir, dirs_exist_ok=True)

    @property
    def dry_run(self) -> bool:
        return self.cfg.dry_run

    @property
    def install(self) -> images.PythonInstall:
        if self._install is None:
            self._install = images.PythonInstall.current()
        return self._install

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def client(self) -> ApiClient:
        """admin.conf's client; like kubeadm, make sure kubeadm:cluster-admins is bound (with super-admin.conf)."""
        if self._client is not None:
            return self._client
        if self.dry_run:
            self._client = DryRunClient(self.out)
            return self._client
        client = ApiClient(self.paths.admin_conf)
        try:
            client.request("GET", "/api/v1/namespaces/kube-system")
        except errors.Forbidden:
            ApiClient(self.paths.super_admin_conf).create_or_update({
                "apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": "kubeadm:cluster-admins"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                              "name": "kubeadm:cluster-admins"}]})
        self._client = client
        return client


@dataclass(frozen=True)
class Phase:
    name: str
    short: str
    run: Callable[[InitContext, str | None], None]
    subphases: tuple[str, ...] = ()


# --- preflight ------------------------------------------------------------------------------------------------------

def phase_preflight(ctx: InitContext, _sub: str | None) -> None:
    cfg = ctx.cfg
    run_checks([IsPrivilegedUserCheck()], cfg.ignore_preflight_errors, ctx.err)
    ctx.out("[preflight] Running pre-flight checks")
    run_checks(init_checks(cfg, ctx.host_paths, fix=not ctx.dry_run), cfg.ignore_preflight_errors, ctx.err)
    if ctx.dry_run:
        ctx.out("[preflight] Would build the required images from the installed kapal "
                "(like 'kapal adm config images pull')")
        return
    ctx.out("[preflight] Building the images required for setting up a Kubernetes cluster from the installed kapal")
    ctx.out("[preflight] You can also perform this action beforehand using 'kapal adm config images pull'")
    ensure_engine(ctx)
    images.ensure_images(cfg, ctx.paths.engine_socket, ctx.out)
    ctx.images_ready = True


def engine_answers(socket_path: Path) -> bool:
    from kapal.engine.client import APIError, EngineClient, EngineUnavailable

    try:
        EngineClient(f"unix://{socket_path}").request("GET", "/_ping", timeout=2).close()
        return True
    except (EngineUnavailable, APIError, errors.KapalError, OSError):
        return False


def ensure_engine(ctx: InitContext) -> None:
    """The engine the kubelet drives: one already answering on the socket, or a daemon adm starts (and reset stops)."""
    sock = ctx.paths.engine_socket
    if engine_answers(sock):
        return
    pid = daemons.start(ctx.paths, ENGINE_DAEMON, engine_argv(ctx.install.kapal_command, ctx.paths))
    try:
        wait_for(lambda: engine_answers(sock), 30, 0.05)
    except errors.Temporary:
        raise errors.FailedPrecondition(f"the engine (pid {pid}) did not answer on {sock} within 30s; see "
                                        f"{ctx.paths.logfile(ENGINE_DAEMON)}") from None
    ctx.out(f"[preflight] Started the engine (kapal engine, pid {pid}) on unix://{sock}; its log is "
            f"{ctx.paths.logfile(ENGINE_DAEMON)}")


# --- certs and kubeconfigs ------------------------------------------------------------------------------------------

CERT_SUBPHASES = ("ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca", "front-proxy-client", "sa")
KUBECONFIG_SUBPHASES = ("admin", "super-admin", "kubelet", "controller-manager", "scheduler")


def cluster_pki(cfg: InitConfig):
    from kapal.kube.pki import ClusterPki

    return ClusterPki(node_name=cfg.node_name, advertise_address=cfg.advertise_address, bind_port=cfg.bind_port,
                      service_subnet=cfg.service_subnet, dns_domain=cfg.dns_domain,
                      control_plane_endpoint=cfg.control_plane_endpoint,
                      apiserver_cert_sans=tuple(cfg.api_server.cert_sans), local_etcd=False)


def _only(sub: str | None) -> frozenset[str] | None:
    return None if sub in (None, "all") else frozenset({sub})


def phase_certs(ctx: InitContext, sub: str | None) -> None:
    from kapal.kube.pki import ensure_pki

    ensure_pki(cluster_pki(ctx.cfg), ctx.cert_dir, ctx.out, _only(sub))


def phase_kubeconfig(ctx: InitContext, sub: str | None) -> None:
    from kapal.kube.pki import ensure_kubeconfigs

    ensure_kubeconfigs(cluster_pki(ctx.cfg), ctx.cert_dir, ctx.paths.kubernetes_dir, ctx.out, _only(sub))


# --- control plane --------------------------------------------------------------------------------------------------

_CONTROL_PLANE_SUB = {"apiserver": KUBE_APISERVER, "controller-manager": KUBE_CONTROLLER_MANAGER,
                      "scheduler": KUBE_SCHEDULER}


def phase_control_plane(ctx: InitContext, sub: str | None) -> None:
    manifests_dir = ctx.paths.manifests_dir
    ctx.out(f'[control-plane] Using manifest folder "{manifests_dir}"')
    external_ca = (ctx.cert_dir / "ca.crt").exists() and not (ctx.cert_dir / "ca.key").exists()
    pods = manifests.control_plane_pods(ctx.cfg, ctx.host_paths, ctx.install, external_ca)
    wanted = CONTROL_PLANE_COMPONENTS if sub in (None, "all") else (_CONTROL_PLANE_SUB[sub],)
    for component in wanted:
        ctx.out(f'[control-plane] Creating static Pod manifest for "{component}"')
        manifests.write_manifest(static_pod_path(manifests_dir, component), pods[component])
    if KUBE_APISERVER in wanted and not ctx.cfg.etcd.external:
        ctx.out(f'[control-plane] The API server keeps the cluster\'s data in SQLite under "{ctx.cfg.datastore_dir}" '
                "(in place of a local etcd)")


# --- kubelet --------------------------------------------------------------------------------------------------------

def phase_kubelet_start(ctx: InitContext, _sub: str | None) -> None:
    from kapal.kube.pki import write_atomic

    paths = ctx.paths
    if not ctx.dry_run:
        daemons.stop(paths, KUBELET_DAEMON)
    paths.kubelet_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ctx.out(f'[kubelet-start] Writing kubelet environment file with flags to file "{paths.kubelet_flags_env}"')
    write_atomic(paths.kubelet_flags_env, flags_env(ctx.cfg).encode(), 0o644)
    ctx.out(f'[kubelet-start] Writing kubelet configuration to file "{paths.kubelet_config_file}"')
    doc = kubelet_configuration(ctx.cfg, ctx.host_paths)
    write_atomic(paths.kubelet_config_file, manifests.to_yaml(doc).encode(), 0o644)
    argv = kubelet_argv(ctx.install.kapal_command, ctx.cfg, ctx.host_paths)
    if ctx.dry_run:
        ctx.out(f"[dryrun] Would start the kubelet: {' '.join(argv)}")
        return
    ensure_engine(ctx)
    if not ctx.images_ready:
        images.ensure_images(ctx.cfg, paths.engine_socket, ctx.out, say_reused=False)
    ctx.out("[kubelet-start] Starting the kubelet")
    pid = daemons.start(paths, KUBELET_DAEMON, argv)
    ctx.out(f"[kubelet-start] The kubelet runs as pid {pid}; its log is {paths.logfile(KUBELET_DAEMON)}")


# --- waiting --------------------------------------------------------------------------------------------------------

def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=_insecure() if url.startswith("https") else None) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def _after(start: float) -> str:
    seconds = time.monotonic() - start
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.1f}s"


FAILURE_HELP = """
Unfortunately, an error has occurred:
\t{error}

This error is likely caused by:
\t- The kubelet is not running
\t- The kubelet is unhealthy due to a misconfiguration of the node in some way (required cgroups disabled)

There is no systemd here: the kubelet and the engine run as daemons started by kapal adm. Look at their logs:
\t- {kubelet_log}
\t- {engine_log}

Additionally, a control plane component may have crashed or exited when started by the container runtime.
To troubleshoot, list all containers of the engine the kubelet drives:
\t- 'kapal -H unix://{socket} ps -a'
\tOnce you have found the failing container, you can inspect its logs with:
\t- 'kapal -H unix://{socket} logs CONTAINERID'
"""


def phase_wait_control_plane(ctx: InitContext, _sub: str | None) -> None:
    paths = ctx.paths
    if ctx.dry_run:
        ctx.out("[dryrun] Would wait for the kubelet to boot up the control plane as static Pods")
        for component in CONTROL_PLANE_COMPONENTS:
            path = static_pod_path(paths.manifests_dir, component)
            real = static_pod_path(ctx.host_paths.manifests_dir, component)
            ctx.out(f'[dryrun] Would write file "{real}" with content:')
            ctx.out("\n".join("\t" + line for line in path.read_text().splitlines()))
        return
    ctx.out("[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from "
            f'directory "{paths.manifests_dir}"')
    try:
        _wait_kubelet_and_components(ctx)
        _wait_node_and_pods(ctx)
    except errors.Temporary as e:
        ctx.err(FAILURE_HELP.format(error=e, kubelet_log=paths.logfile(KUBELET_DAEMON),
                                    engine_log=paths.logfile(ENGINE_DAEMON), socket=paths.engine_socket))
        raise errors.FailedPrecondition("couldn't initialize a Kubernetes cluster") from None


def _wait_kubelet_and_components(ctx: InitContext) -> None:
    cfg = ctx.cfg
    timeout = format_duration(cfg.kubelet_timeout)
    url = healthz_url()
    ctx.out(f"[kubelet-check] Waiting for a healthy kubelet at {url}. This can take up to {timeout}")
    start = time.monotonic()
    try:
        wait_for(lambda: _http_ok(url), cfg.kubelet_timeout, 0.05)
    except errors.Temporary:
        raise errors.Temporary(f"The HTTP call equal to 'curl -sSL {url}' failed for {timeout}") from None
    ctx.out(f"[kubelet-check] The kubelet is healthy after {_after(start)}")
    ctx.out("[control-plane-check] Waiting for healthy control plane components. This can take up to "
            f"{format_duration(cfg.control_plane_timeout)}")
    host = f"[{cfg.advertise_address}]" if ":" in cfg.advertise_address else cfg.advertise_address
    checks = {KUBE_APISERVER: f"https://{host}:{cfg.bind_port}/livez",
              KUBE_CONTROLLER_MANAGER: f"https://127.0.0.1:{CONTROLLER_MANAGER_PORT}/healthz",
              KUBE_SCHEDULER: f"https://127.0.0.1:{SCHEDULER_PORT}/livez"}
    for name, check_url in checks.items():
        ctx.out(f"[control-plane-check] Checking {name} at {check_url}")
    start = time.monotonic()
    pending = dict(checks)
    deadline = start + cfg.control_plane_timeout
    while pending:
        for name, check_url in list(pending.items()):
            if _http_ok(check_url):
                ctx.out(f"[control-plane-check] {name} is healthy after {_after(start)}")
                del pending[name]
        if pending and time.monotonic() > deadline:
            raise errors.Temporary(f"control plane components are not healthy after "
                                   f"{format_duration(cfg.control_plane_timeout)}: {', '.join(pending)}")
        if pending:
            time.sleep(0.1)


def node_ready(node: dict[str, Any] | None) -> bool:
    for c in ((node or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def _wait_node_and_pods(ctx: InitContext) -> None:
    cfg = ctx.cfg
    client = ctx.client()
    start = time.monotonic()
    try:
        wait_for(lambda: node_ready(client.get(f"/api/v1/nodes/{cfg.node_name}")), cfg.control_plane_timeout, 0.1)
    except errors.Temporary:
        raise errors.Temporary(f'the node "{cfg.node_name}" did not become Ready') from None
    ctx.out(f'[wait-control-plane] The node "{cfg.node_name}" is Ready after {_after(start)} '
            f"({ctx.elapsed():.1f}s since init started)")
    names = [f"{c}-{cfg.node_name}" for c in CONTROL_PLANE_COMPONENTS]

    def running() -> bool:
        for name in names:
            pod = client.get(f"/api/v1/namespaces/kube-system/pods/{name}")
            if not pod or (pod.get("status") or {}).get("phase") != "Running":
                return False
        return True

    start = time.monotonic()
    try:
        wait_for(running, cfg.control_plane_timeout, 0.1)
    except errors.Temporary:
        raise errors.Temporary(f"the control-plane static Pods {', '.join(names)} are not all Running") from None
    ctx.out(f"[wait-control-plane] The static Pods {', '.join(names)} are Running in kube-system after "
            f"{_after(start)}")


# --- configuration, node marks, tokens, add-ons -----------------------------------------------------------------------

def _role_and_binding(client: ApiClient, name: str, configmap: str, groups: list[str]) -> None:
    client.create_or_update({"apiVersion": RBAC, "kind": "Role", "metadata": {"name": name, "namespace": "kube-system"},
                             "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [configmap],
                                        "verbs": ["get"]}]})
    client.create_or_update({"apiVersion": RBAC, "kind": "RoleBinding",
                             "metadata": {"name": name, "namespace": "kube-system"},
                             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                             "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}
                                          for g in groups]})


def phase_upload_config(ctx: InitContext, sub: str | None) -> None:
    cfg, client = ctx.cfg, ctx.client()
    if sub in (None, "all", "kubeadm"):
        ctx.out(f'[upload-config] Storing the configuration used in ConfigMap "{KUBEADM_CONFIGMAP}" in the '
                '"kube-system" Namespace')
        client.create_or_update({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": KUBEADM_CONFIGMAP, "namespace": "kube-system"},
                                 "data": {"ClusterConfiguration": manifests.to_yaml(cluster_configuration(cfg))}})
        _role_and_binding(client, "kubeadm:nodes-kubeadm-config", KUBEADM_CONFIGMAP, [BOOTSTRAP_GROUP, NODES_GROUP])
    if sub in (None, "all", "kubelet"):
        ctx.out(f'[kubelet] Creating a ConfigMap "{KUBELET_CONFIGMAP}" in namespace kube-system with the '
                "configuration for the kubelets in the cluster")
        doc = kubelet_configuration(cfg, ctx.host_paths)
        client.create_or_update({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": KUBELET_CONFIGMAP, "namespace": "kube-system"},
                                 "data": {"kubelet": manifests.to_yaml(doc)}})
        _role_and_binding(client, "kubeadm:kubelet-config", KUBELET_CONFIGMAP, [NODES_GROUP, BOOTSTRAP_GROUP])


def phase_mark_control_plane(ctx: InitContext, _sub: str | None) -> None:
    cfg, client = ctx.cfg, ctx.client()
    labels = [CONTROL_PLANE_LABEL, EXCLUDE_LB_LABEL]
    taints = [dict(CONTROL_PLANE_TAINT)] if cfg.taints is None else cfg.taints
    ctx.out(f"[mark-control-plane] Marking the node {cfg.node_name} as control-plane by adding the labels: "
            f"[{' '.join(labels)}]")
    shown = " ".join(f"{t['key']}{'=' + t['value'] if t.get('value') else ''}:{t['effect']}" for t in taints)
    ctx.out(f"[mark-control-plane] Marking the node {cfg.node_name} as control-plane by adding the taints [{shown}]")
    if ctx.dry_run:
        client.request("PATCH", f"/api/v1/nodes/{cfg.node_name}", {"metadata": {"labels": {k: "" for k in labels}}})
        return
    path = f"/api/v1/nodes/{cfg.node_name}"
    for _ in range(10):
        node = wait_for(lambda: client.get(path), cfg.control_plane_timeout, 0.1)
        meta = node.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), **{k: "" for k in labels}}
        spec = node.setdefault("spec", {})
        have = spec.get("taints") or []
        for t in taints:
            if not any(h.get("key") == t["key"] and h.get("effect") == t["effect"] for h in have):
                have.append(dict(t))
        spec["taints"] = have
        try:
            client.request("PUT", path, node)
            return
        except errors.Conflict:
            continue
    raise errors.Conflict(f"the node {cfg.node_name} kept changing while it was being marked; run the phase again")


def phase_bootstrap_token(ctx: InitContext, _sub: str | None) -> None:
    cfg, client = ctx.cfg, ctx.client()
    if not ctx.skip_token_print:
        if len(cfg.bootstrap_tokens) == 1:
            ctx.out(f"[bootstrap-token] Using token: {cfg.bootstrap_tokens[0].token}")
        else:
            ctx.out(f"[bootstrap-token] Using tokens: [{' '.join(t.token for t in cfg.bootstrap_tokens)}]")
    ctx.out("[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles")
    tokens.create_tokens(client, cfg.bootstrap_tokens, fail_if_exists=False)
    tokens.bootstrap_rbac(client, ctx.out)
    tokens.create_cluster_info(client, ctx.paths.admin_conf, ctx.out)
    if not ctx.dry_run:
        tokens.sign_cluster_info(client)


def phase_addon(ctx: InitContext, sub: str | None) -> None:
    from . import addons

    cfg = ctx.cfg
    for component, label, disabled in ((COREDNS, "CoreDNS", cfg.dns_disabled),
                                       (KUBE_PROXY, "kube-proxy", cfg.proxy_disabled)):
        if sub not in (None, "all", {"coredns": COREDNS, "kube-proxy": KUBE_PROXY}.get(sub, sub)):
            continue
        if disabled:
            ctx.out(f"[addons] Skipping the {label} addon: disabled in the ClusterConfiguration")
            continue
        if not images.addon_available(component):
            ctx.out(f"[addons] Skipping the {label} addon: this kapal has no "
                    f"'kapal {'dns' if component == COREDNS else 'proxy'}' yet")
            continue
        addons.apply(ctx, component)
        ctx.out(f"[addons] Applied essential addon: {label}")


def show_join_command(ctx: InitContext) -> None:
    cfg = ctx.cfg
    admin = ctx.host_paths.admin_conf
    ca_hash = tokens.ca_cert_hash(ctx.cert_dir)
    for token in cfg.bootstrap_tokens:
        shown = "<value withheld>" if ctx.skip_token_print else token.token
        ctx.out(SUCCESS.format(admin=admin, join=tokens.join_command(cfg.api_endpoint, shown, ca_hash)))


SUCCESS = """
Your Kubernetes control-plane has initialized successfully!

To start using your cluster, you need to run the following as a regular user:

  mkdir -p $HOME/.kube
  sudo cp -i {admin} $HOME/.kube/config
  sudo chown $(id -u):$(id -g) $HOME/.kube/config

Alternatively, if you are the root user, you can run:

  export KUBECONFIG={admin}

Pods on this node need no pod network add-on: kapal's kubelet puts them on a bridge in the node's pod CIDR.
The control-plane taint keeps ordinary Pods off this node; on a single node, remove it with:
  kubectl taint nodes --all node-role.kubernetes.io/control-plane-

Then you can join any number of worker nodes by running the following on each as root:

{join}"""


PHASES: tuple[Phase, ...] = (
    Phase("preflight", "Run pre-flight checks", phase_preflight),
    Phase("certs", "Certificate generation", phase_certs, CERT_SUBPHASES),
    Phase("kubeconfig", "Generate all kubeconfig files necessary to establish the control plane and the admin "
                        "kubeconfig file", phase_kubeconfig, KUBECONFIG_SUBPHASES),
    Phase("control-plane", "Generate all static Pod manifest files necessary to establish the control plane",
          phase_control_plane, tuple(_CONTROL_PLANE_SUB)),
    Phase("kubelet-start", "Write kubelet settings and (re)start the kubelet", phase_kubelet_start),
    Phase("wait-control-plane", "Wait for the control plane to start", phase_wait_control_plane),
    Phase("upload-config", "Upload the kubeadm and kubelet configuration to a ConfigMap", phase_upload_config,
          ("kubeadm", "kubelet")),
    Phase("mark-control-plane", "Mark a node as a control-plane", phase_mark_control_plane),
    Phase("bootstrap-token", "Generates bootstrap tokens used to join a node to a cluster", phase_bootstrap_token),
    Phase("addon", "Install required addons for passing conformance tests", phase_addon, ("coredns", "kube-proxy")),
    Phase("show-join-command", "Show the join command for control-plane and worker node",
          lambda ctx, _sub: show_join_command(ctx)),
)
PHASE_NAMES = tuple(p.name for p in PHASES)


def find_phase(name: str) -> Phase:
    aliases = {"bootstraptoken": "bootstrap-token", "controlplane": "control-plane", "addons": "addon"}
    name = aliases.get(name, name)
    for p in PHASES:
        if p.name == name:
            return p
    raise errors.Invalid(f'invalid phase name: "{name}" (phases: {", ".join(PHASE_NAMES)})')


def _skipped(phase: Phase, skip: list[str]) -> tuple[bool, list[str]]:
    """(whole phase skipped, sub-phases skipped) from --skip-phases names like `addon` or `addon/kube-proxy`."""
    whole = phase.name in skip or f"{phase.name}/all" in skip
    subs = [s.split("/", 1)[1] for s in skip if s.startswith(phase.name + "/")]
    return whole, subs


def validate_skip_phases(skip: list[str]) -> None:
    for item in skip:
        name, _, sub = item.partition("/")
        phase = find_phase(name)
        if sub and sub != "all" and sub not in phase.subphases:
            raise errors.Invalid(f'invalid phase name: "{item}"')


def run_phase(ctx: InitContext, name: str, sub: str | None = None) -> None:
    phase = find_phase(name)
    if sub is not None and sub != "all" and sub not in phase.subphases:
        raise errors.Invalid(f'invalid phase name: "{name}/{sub}"'
                             + (f" (sub-phases: {', '.join(phase.subphases)})" if phase.subphases else ""))
    try:
        phase.run(ctx, sub)
    except errors.KapalError as e:
        raise PhaseError(phase.name, e) from e


class PhaseError(errors.KapalError):
    """kubeadm's "error execution phase <name>: …"."""

    def __init__(self, phase: str, cause: errors.KapalError) -> None:
        super().__init__(f"error execution phase {phase}: {cause}")
        self.phase = phase
        self.cause = cause
        self.http_status = cause.http_status


def run_init(ctx: InitContext) -> None:
    cfg = ctx.cfg
    validate_skip_phases(cfg.skip_phases)
    ctx.out(f"[init] Using Kubernetes version: {cfg.kubernetes_version}")
    for phase in PHASES:
        whole, subs = _skipped(phase, cfg.skip_phases)
        if whole:
            continue
        if subs:
            for sub in phase.subphases:
                if sub not in subs:
                    run_phase(ctx, phase.name, sub)
        else:
            run_phase(ctx, phase.name)
    if ctx.dry_run and ctx.dry_run_dir is not None:
        ctx.out(f'[dryrun] Wrote certificates, kubeconfig files and control plane manifests to the '
                f'"{ctx.dry_run_dir}" directory')
        ctx.out("[dryrun] The certificates or kubeconfig files would not be printed due to their sensitive nature")
        ctx.out(f'[dryrun] Please examine the "{ctx.dry_run_dir}" directory for details about what would be written')
        ctx.out("[dryrun] Finished dry-running successfully. Above are the resources that would be created")

