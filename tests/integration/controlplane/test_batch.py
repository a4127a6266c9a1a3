"""Jobs and CronJobs on hollow nodes (pods end on cue with the kapal.dev/hollow-exit annotation): completions
and parallelism, Indexed completion, backoffLimit, activeDeadlineSeconds, TTL after finished; a CronJob that
fires on its schedule (the controller manager's CronJob clock runs 30 times faster here), with
concurrencyPolicy Forbid and history limits; a Job created through the official Python client."""

from __future__ import annotations

import json
import threading

from controlplane_harness import Kubectl, wait_for


def job_yaml(name: str, *, completions: int | None = 4, parallelism: int = 2, exit_after: str = "1",
             restart: str = "Never", extra_spec: str = "") -> str:
    spec = {"parallelism": parallelism, "template": {
        "metadata": {"annotations": {"kapal.dev/hollow-exit": exit_after}},
        "spec": {"restartPolicy": restart, "containers": [{"name": "work", "image": "busybox"}]}}}
    if completions is not None:
        spec["completions"] = completions
    text = json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec})
    if extra_spec:
        obj = json.loads(text)
        obj["spec"].update(json.loads(extra_spec))
        text = json.dumps(obj)
    return text


def test_completions_and_parallelism(kubectl: Kubectl, namespace: str, api):
    from kubernetes import client, watch

    k, ns = kubectl, namespace
    running: dict[str, bool] = {}
    peak = [0]
    stop = threading.Event()

    def observe() -> None:
        w = watch.Watch()
        for ev in w.stream(client.CoreV1Api(api).list_namespaced_pod, ns, timeout_seconds=60):
            pod = ev["object"]
            active = ev["type"] != "DELETED" and pod.status.phase in ("Pending", "Running") and \
                not pod.metadata.deletion_timestamp
            running[pod.metadata.uid] = active
            peak[0] = max(peak[0], sum(running.values()))
            if stop.is_set():
                w.stop()

    t = threading.Thread(target=observe, daemon=True)
    t.start()
    k("-n", ns, "apply", "-f", "-", input=job_yaml("work"))
    k("-n", ns, "wait", "--for=condition=complete", "job/work", "--timeout=60s")
    stop.set()
    job = k.json("-n", ns, "get", "job", "work")
    assert job["status"]["succeeded"] == 4
    assert "failed" not in job["status"]
    assert job["status"]["completionTime"] and job["status"]["startTime"]
    assert [c["type"] for c in job["status"]["conditions"] if c["status"] == "True"] == \
        ["SuccessCriteriaMet", "Complete"]
    pods = k.json("-n", ns, "get", "pods", "-l", "job-name=work")["items"]
    assert len(pods) == 4 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    assert all("batch.kubernetes.io/job-tracking" not in (p["metadata"].get("finalizers") or []) for p in pods)
    assert peak[0] <= 2, f"{peak[0]} pods ran at once with parallelism 2"


def test_indexed_job(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    k("-n", ns, "apply", "-f", "-", input=job_yaml("idx", completions=3, parallelism=3,
                                                   extra_spec='{"completionMode": "Indexed"}'))
    k("-n", ns, "wait", "--for=condition=complete", "job/idx", "--timeout=60s")
    job = k.json("-n", ns, "get", "job", "idx")
    assert job["status"]["completedIndexes"] == "0-2"
    pods = k.json("-n", ns, "get", "pods", "-l", "job-name=idx")["items"]
    indexes = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert indexes == ["0", "1", "2"]
    env = pods[0]["spec"]["containers"][0]["env"]
    assert any(e["name"] == "JOB_COMPLETION_INDEX" for e in env)


def test_backoff_limit_and_deadline(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    k("-n", ns, "apply", "-f", "-", input=job_yaml("fails", completions=1, parallelism=1, exit_after="0:1",
                                                   extra_spec='{"backoffLimit": 2}'))
    k("-n", ns, "wait", "--for=condition=failed", "job/fails", "--timeout=60s")
    job = k.json("-n", ns, "get", "job", "fails")
    assert job["status"]["failed"] == 3, "backoffLimit 2 allows two retries"
    failed = {c["type"]: c for c in job["status"]["conditions"]}["Failed"]
    assert failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"

    k("-n", ns, "apply", "-f", "-", input=job_yaml("slow", completions=1, parallelism=1, exit_after="600",
                                                   extra_spec='{"activeDeadlineSeconds": 2}'))
    k("-n", ns, "wait", "--for=condition=failed", "job/slow", "--timeout=60s")
    failed = {c["type"]: c for c in k.json("-n", ns, "get", "job", "slow")["status"]["conditions"]}["Failed"]
    assert failed["reason"] == "DeadlineExceeded"
    wait_for(lambda: not [p for p in k.json("-n", ns, "get", "pods", "-l", "job-name=slow")["items"]
                          if p["status"].get("phase") == "Running"], 20, "the deadline to stop the pod")


def test_ttl_after_finished(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    k("-n", ns, "apply", "-f", "-", input=job_yaml("brief", completions=1, parallelism=1, exit_after="0",
                                                   extra_spec='{"ttlSecondsAfterFinished": 1}'))
    wait_for(lambda: "NotFound" in k("-n", ns, "get", "job", "brief", check=False).stderr, 30,
             "the finished Job to be deleted after its TTL")
    wait_for(lambda: not k.json("-n", ns, "get", "pods", "-l", "job-name=brief")["items"], 30,
             "its pods to go with it")


def test_cronjob_fires_on_schedule(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    k("-n", ns, "create", "cronjob", "tick", "--image=busybox", "--schedule=*/1 * * * *")
    k("-n", ns, "patch", "cronjob", "tick", "--type=merge", "-p", json.dumps({"spec": {
        "successfulJobsHistoryLimit": 2, "timeZone": "Europe/Berlin",
        "jobTemplate": {"spec": {"template": {"metadata": {"annotations": {"kapal.dev/hollow-exit": "0"}}}}}}}))
    # every minute of the CronJob clock is two real seconds: three starts within ten seconds
    wait_for(lambda: len([j for j in k.json("-n", ns, "get", "jobs")["items"]
                          if any(c["type"] == "Complete" for c in j["status"].get("conditions", []))]) >= 2
             and k.json("-n", ns, "get", "cronjob", "tick")["status"].get("lastSuccessfulTime"), 30,
             "the CronJob to run twice")
    jobs = k.json("-n", ns, "get", "jobs")["items"]
    names = sorted(j["metadata"]["name"] for j in jobs)
    minutes = [int(n.rsplit("-", 1)[1]) for n in names]
    assert all(b > a for a, b in zip(minutes, minutes[1:])), names
    last = max(jobs, key=lambda j: j["metadata"]["name"])
    owner = last["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "CronJob" and owner["name"] == "tick" and owner["controller"]
    stamp = last["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert stamp.endswith(("+01:00", "+02:00")), stamp
    wait_for(lambda: len([j for j in k.json("-n", ns, "get", "jobs")["items"]
                          if any(c["type"] == "Complete" for c in j["status"].get("conditions", []))]) == 2
             and len(k.json("-n", ns, "get", "jobs")["items"]) >= 3, 30, "history trimmed to 2 finished Jobs")


def test_cronjob_forbid_concurrency(kubectl: Kubectl, namespace: str):
    k, ns = kubectl, namespace
    k("-n", ns, "create", "cronjob", "long", "--image=busybox", "--schedule=*/1 * * * *")
    k("-n", ns, "patch", "cronjob", "long", "--type=merge", "-p", '{"spec":{"concurrencyPolicy":"Forbid"}}')
    wait_for(lambda: k.json("-n", ns, "get", "jobs")["items"], 30, "the first run")
    wait_for(lambda: any(e["reason"] == "JobAlreadyActive" for e in k.json(
        "-n", ns, "get", "events", "--field-selector", "involvedObject.name=long")["items"]), 30,
        "the next start to be skipped")
    assert len(k.json("-n", ns, "get", "jobs")["items"]) == 1


def test_job_through_the_python_client(namespace: str, api, kubectl: Kubectl):
    from kubernetes import client

    batch = client.BatchV1Api(api)
    body = client.V1Job(
        metadata=client.V1ObjectMeta(name="py"),
        spec=client.V1JobSpec(completions=2, parallelism=2, template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(annotations={"kapal.dev/hollow-exit": "0"}),
            spec=client.V1PodSpec(restart_policy="Never",
                                  containers=[client.V1Container(name="c", image="busybox")]))))
    batch.create_namespaced_job(namespace, body)
    wait_for(lambda: (batch.read_namespaced_job_status("py", namespace).status.succeeded or 0) == 2, 30,
             "the Job to succeed twice")
    job = batch.read_namespaced_job("py", namespace)
    assert any(c.type == "Complete" and c.status == "True" for c in job.status.conditions)
