"""localkube: a real local Kubernetes control plane for Cronlet's tests and development.

It runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler from prebuilt binaries
(``tools/build.sh``) on 127.0.0.1, plus a fake kubelet that registers one Ready node and either runs pod
commands as local processes (``execute``) or finishes pods at once by label (``simulate``), and/or a real
node (kubelet, containerd, runc) that runs pods in real containers.

Modules:

* ``binaries``: where the binaries are and the error that says how to build them.
* ``pki``: the cluster's CA and certificates, made with the ``openssl`` CLI.
* ``rest``: a small typed JSON client for the Kubernetes API (the kubelet and readiness checks use it).
* ``procs``: starting and killing server processes.
* ``cluster``: ``Cluster``, the control plane as a context manager.
* ``podspec``: pure functions that read pod specs and build pod status (no I/O).
* ``kubelet``: ``FakeKubelet``, the fake node.
* ``node``: ``RealNode``, a real kubelet and containerd in their own mount namespace, cgroups and bridge.
* ``kafka``: ``KafkaBroker``, a single-node KRaft Kafka broker for the task-event tests (stop, start again).
* ``__main__``: ``python -m localkube up|down|env``.

This package is test and development tooling: the operator must never import it, and it must never
build binaries, download anything or touch a cluster other than the one it started or was handed.
"""
