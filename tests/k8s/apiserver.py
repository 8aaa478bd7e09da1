"""The stand-in Kubernetes API server: kmock's in-memory emulator on 127.0.0.1.

Run as `python apiserver.py PORT`; it prints `ready` once it listens and serves until killed.
It runs in a process of its own so that its aiohttp event loop never meets pytest's or the
hub's. kmock stores what it is sent and streams watches; it does no validation, admission,
defaulting or label selection (the test kubelet validates pods, see kubelet.py).
"""

import asyncio
import sys

import kmock

# The kinds KubeSpawner and dossierhub's spawner read, write or watch; kmock answers 404 for a
# list of a kind it has not been told about.
RESOURCES = {
    "v1/pods": ("Pod", True),
    "v1/events": ("Event", True),
    "v1/services": ("Service", True),
    "v1/secrets": ("Secret", True),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "v1/namespaces": ("Namespace", False),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True),
}


async def serve(port: int) -> None:
    async with kmock.KubernetesEmulator() as emulator:
        for key, (kind, namespaced) in RESOURCES.items():
            emulator.resources[key] = kmock.ResourceInfo(
                kind=kind,
                namespaced=namespaced,
                verbs={"list", "watch", "get", "create", "patch", "update", "delete"},
            )
        async with kmock.Server(emulator, port=port):
            print("ready", flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
