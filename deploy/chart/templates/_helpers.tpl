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
profile. No fsGroup: on a driver that manages ownership the kubelet would re-group every file
of HOME's shared volume (every dossier's extracts and workspace) to it, group-writable. */}}
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

{{/* HOME's claim, and the volumes every pod of ours gets. */}}
{{- define "dossierhub.homeVolume" -}}
- name: home
  persistentVolumeClaim:
    claimName: {{ .Values.home.claim }}
- name: tmp
  emptyDir: {}
{{- end }}
