"""Kubernetes manifests for deployments and fleets (`modelserve k8s render`).

Pure renderers (``manifests``): typed workloads in, :class:`~launcher.core.rendered.File`
objects out; they import launcher.core only. What goes into a workload (the engine command `up`
would run, translated for a container; probes; resources) is decided in
``launcher.lifecycle.k8s_plan``; the CLI writes the files.
"""
