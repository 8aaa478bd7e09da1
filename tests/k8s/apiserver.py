"""The stand-in Kubernetes API server: kmock's in-memory emulator on 127.0.0.1.

Run as `python apiserver.py PORT`; it prints `ready` once it listens and serves until killed.
It runs in a process of its own so that its aiohttp event loop never meets pytest's or the
hub's. kmock stores what it is sent and streams watches; it does no validation, admission,
defaulting or label selection (the test kubelet validates pods, see kubelet.py).
"""

import asyncio
import itertools
import sys
import time
import uuid

import kmock
from aiohttp import web

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
    "batch/v1/jobs": ("Job", True),  # report runs (jobcontroller.py runs them)
    "apps/v1/deployments": ("Deployment", True),  # z2jh's hub, which apply rolls for new roles
}


WRITES = (kmock.action.CREATE, kmock.action.UPDATE)
VERSIONS = itertools.count(1)


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator, also streaming `watch=True` (kubernetes_asyncio's spelling).

    kmock recognises only `watch=true` and answers the other with a list, which the client's
    watch cannot parse. It also fills in, on create, the metadata a real API server does
    (namespace, uid, creationTimestamp, resourceVersion, a Pending status).
    """

    async def __call__(self, raw_request: web.BaseRequest) -> web.StreamResponse:
        if raw_request.method not in ("GET", "HEAD"):
            # every write, for tests that count what a client asked (apiserver.log)
            # and as whom (the stand-in checks no token; a test may check who sent one)
            agent = raw_request.headers.get("User-Agent", "")
            who = raw_request.headers.get("Authorization", "")
            print(
                "WRITE",
                raw_request.method,
                raw_request.path,
                agent,
                who,
                file=sys.stderr,
                flush=True,
            )
        if raw_request.query.get("watch") == "True":
            query = {**raw_request.query, "watch": "true"}
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.with_query(query))
        return await super().__call__(raw_request)

    async def _handle(self, request: kmock.Request) -> web.StreamResponse:
        # what a real API server fills in, and KubeSpawner's reflector reads: the namespace, a
        # resourceVersion on every write, and on create a uid, a timestamp and a Pending status
        if request.action in WRITES and isinstance(request.data, dict):
            metadata = request.data.setdefault("metadata", {})
            metadata["resourceVersion"] = str(next(VERSIONS))
            # a changed spec is a new generation, which a controller's status then observes
            # (a Deployment's rollout is read so)
            if "spec" in request.data:
                metadata["generation"] = self._generation(request) + 1
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            metadata.setdefault("namespace", request.namespace or "default")
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault(
                "creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            )
            if request.data.get("kind") == "Pod":
                request.data.setdefault("status", {"phase": "Pending"})
        return await super()._handle(request)

    def _generation(self, request: kmock.Request) -> int:
        """The stored object's generation (0 before it exists)."""
        if request.action == kmock.action.CREATE:
            return 0
        key = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            return 0
        return int(self._objects[key].get("metadata", {}).get("generation") or 0)


async def serve(port: int) -> None:
    async with Emulator() as emulator:
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
