"""A client of the Kubernetes API, for the privileged steps that talk to it: the service's
report Jobs (reports/jobs.py) and apply's rollout of the hub (workspaces/hubrollout.py)."""

from __future__ import annotations

from typing import Any

from dossierhub.state.settings import Settings


async def cluster_client(settings: Settings) -> Any:
    """A client of the cluster this runs in (the pod's own account), else of $KUBECONFIG;
    `kubernetes.api_url` overrides the address (as for the hub's spawner)."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        try:
            await config.load_kube_config(client_configuration=configuration)
        except config.ConfigException:
            if settings.kubernetes.api_url is None:
                raise
    if settings.kubernetes.api_url:
        configuration.host = settings.kubernetes.api_url
    return client.ApiClient(configuration)
