{{/* Labels every object carries; `component` tells the service from apply. */}}
{{- define "dossierhub.labels" -}}
app.kubernetes.io/name: dossierhub
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "dossierhub.image" -}}
{{ printf "%s:%s" .Values.image.name .Values.image.tag }}
{{- end }}

{{/* The restricted Pod Security Standard for a pod: never root, the runtime's seccomp
profile. No fsGroup: HOME is one volume shared by every pod, and a volume driver that honours
fsGroup would give the whole of it (every dossier's extracts, each its own pod number's) to
this one group, group-writable, at each start. */}}
{{- define "dossierhub.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAs.user }}
runAsGroup: {{ .Values.runAs.group }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* ...and for each container: no new privileges, no capability, a read-only root. */}}
{{- define "dossierhub.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* apply's pod: the one pod of ours that is not restricted, only baseline. It gives each
dossier's files to that dossier's pod number (isolation/unixusers.py secure_dossier) and
HOME's control files and the extracts to the control identity, runAs here, the hub's and the
service's (control_owner): chown needs CAP_CHOWN, the mode of a file it has given away
CAP_FOWNER, and reading and writing the control files it gave away (settings.yaml 0600,
hub/ and audit/ 0700, the extracts' folders 0750, all the control uid's) CAP_DAC_OVERRIDE,
and doing an expired dossier's chores in its workspace folder as its pod number (clearing its
notebooks' outputs, workspaces/workspacechores.py; no bubblewrap in the image)
CAP_SETUID and CAP_SETGID: the chore's process drops them all with root.
Kubernetes hands an added capability to uid 0 only (none reaches a non-root user's effective
set: no ambient capabilities), and dossierhub secures files only when it runs as uid 0, so
apply runs as root with every other capability dropped, no privilege escalation, the
runtime's seccomp profile and a read-only root (docs/operating-on-kubernetes.md, "Pod
security"). No fsGroup, as for every pod on HOME. */}}
{{- define "dossierhub.applyPodSecurityContext" -}}
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "dossierhub.applyContainerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
  add: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* HOME's claim, and the volumes every pod of ours gets. */}}
{{- define "dossierhub.homeVolume" -}}
- name: home
  persistentVolumeClaim:
    claimName: {{ .Values.home.claim }}
- name: tmp
  emptyDir: {}
{{- end }}

{{/* An egress rule to addresses outside the pods the policies select by label (the API
server, PostgreSQL: values.yaml `kubernetesApi`, `database`); nothing when it has none. */}}
{{- define "dossierhub.addressEgress" -}}
{{- if .cidrs }}
- to:
    {{- range .cidrs }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  ports:
    {{- range .ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{/* apply's namespace (values.yaml apply.namespace): never the release's own, whose z2jh hub
may read Secrets and create pods there (docs/operating-on-kubernetes.md, "Namespaces and Pod
Security"). */}}
{{- define "dossierhub.applyNamespace" -}}
{{- $namespace := .Values.apply.namespace | default (printf "%s-apply" .Release.Namespace) }}
{{- if eq $namespace .Release.Namespace }}
{{- fail (printf "apply.namespace is %q, the release's own namespace: apply and the master key need one of their own, where z2jh's hub can read no Secret and start no pod" $namespace) }}
{{- end }}
{{- $namespace }}
{{- end }}

{{/* The hub's API as apply's pod reaches it, from another namespace. */}}
{{- define "dossierhub.applyHubApiUrl" -}}
{{- .Values.apply.hubApiUrl | default (printf "http://hub.%s.svc:%v/hub/api" .Release.Namespace .Values.hub.port) }}
{{- end }}
