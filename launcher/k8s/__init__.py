"""Kubernetes (`modelserve k8s render`): the whole of it, nothing written here.

- ``workload``: one deployment planned for a pod: the backend's own ``plan()`` with a context
  that describes the container (``Backend.container()``: image, health path, /dev/shm);
- ``manifests``: pure renderers from typed workloads to :class:`~launcher.core.rendered_file.File`
  objects (Deployment, Service, claim, Secrets, the agent config, kustomization);
- ``kuberay``: a deployment with ``ray:`` as a KubeRay RayCluster or RayService, through the
  multi-node backend's ``node_layout()``, ``kuberay()`` and ``ray_serve_app()``;
- ``render``: a deployment or a fleet (loaded by ``lifecycle.specs.k8s_render``) as manifests,
  and the record `modelserve config NAME` reads. The CLI writes the files.
"""
