"""Async API client with informers, work queues and leader election (the client-go pattern).

    ApiClient (client.py)        one HTTPS session; verbs; Status failures as kapal.errors (status.py)
    InformerFactory, Informer    list+watch into an Indexer (store.py), handlers that enqueue keys (informer.py)
    WorkQueue, run_worker        dedup, one worker per key, delays, rate-limited retries (workqueue.py)
    LeaderElector                a coordination.k8s.io Lease (leaderelection.py)
    EventRecorder                best-effort Events, repeats counted (events.py)

Import the submodules; this package imports nothing so that `kapal --help` stays light.
"""
